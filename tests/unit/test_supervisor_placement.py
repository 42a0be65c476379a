"""Where `esdb up` puts its nodes: loopback by default, or per-node addresses and network
namespaces (the hooks the partition test uses)."""

from __future__ import annotations

from pathlib import Path

import pytest

from esdb.services.supervisor.nats_server import ServerSpec, server_config
from esdb.services.supervisor.stack import Stack, StackOptions, server_specs


def test_servers_listen_on_loopback_by_default() -> None:
    specs = server_specs(3, 4222)

    assert [spec.url for spec in specs] == [
        "nats://127.0.0.1:4222",
        "nats://127.0.0.1:4223",
        "nats://127.0.0.1:4224",
    ]
    config = server_config(specs[0], store_dir=Path("/js"), durability="fsync")
    assert "listen: 127.0.0.1:4222\n" in config
    assert f"  listen: 127.0.0.1:{specs[0].cluster_port}\n" in config


def test_each_server_listens_and_is_routed_to_on_its_own_host() -> None:
    hosts = ("10.213.7.11", "10.213.7.12", "10.213.7.13")
    specs = server_specs(3, 4222, hosts)

    assert [spec.host for spec in specs] == list(hosts)
    assert specs[1].url == "nats://10.213.7.12:4223"
    config = server_config(specs[1], store_dir=Path("/js"), durability="fsync")
    assert "listen: 10.213.7.12:4223\n" in config
    assert f"  listen: 10.213.7.12:{specs[1].cluster_port}\n" in config
    for spec in specs:
        assert f"nats-route://{spec.host}:{spec.cluster_port}" in config


def test_a_single_server_has_no_cluster_block() -> None:
    config = server_config(
        ServerSpec("esdb-node1", 4222, host="10.213.7.11"),
        store_dir=Path("/js"),
        durability="memory",
    )

    assert "listen: 10.213.7.11:4222\n" in config
    assert "cluster" not in config


@pytest.mark.parametrize(
    "options",
    [
        StackOptions(data_dir=Path("/nowhere"), nodes=3, node_hosts=("10.213.7.11",)),
        StackOptions(data_dir=Path("/nowhere"), nodes=3, node_netns=("a", "b")),
        StackOptions(data_dir=Path("/nowhere"), nats_url="nats://x:4222", node_hosts=("h",)),
    ],
)
def test_per_node_placement_needs_one_entry_per_own_server(options: StackOptions) -> None:
    with pytest.raises(SystemExit):
        Stack(options)
