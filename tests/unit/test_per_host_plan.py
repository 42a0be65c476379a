"""`esdb up --node-id --host --join`: one node of a cluster across machines, planned by the
same per-node code as `--nodes N`; and where its flags come from."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

import pytest

from esdb.cli.main import build_parser, up_options
from esdb.services.supervisor.join import route_addresses, split_member
from esdb.services.supervisor.nats_server import server_config
from esdb.services.supervisor.preflight import member_urls
from esdb.services.supervisor.stack import CLUSTER_REPLICAS, Stack, StackOptions


def _per_host(tmp_path: Path, **overrides: object) -> StackOptions:
    options: dict[str, object] = {
        "data_dir": tmp_path,
        "node_id": "node2",
        "host": "10.0.0.2",
        "join": ("10.0.0.1", "10.0.0.2", "10.0.0.3:7000"),
        "cluster_port": 6222,
        "nats_port": 4222,
    }
    options.update(overrides)
    return StackOptions(**options)  # type: ignore[arg-type]


def test_a_member_is_an_address_with_an_optional_route_port() -> None:
    assert split_member("10.0.0.1", 6222) == ("10.0.0.1", 6222)
    assert split_member("10.0.0.1:7000", 6222) == ("10.0.0.1", 7000)
    assert split_member("[fd00::1]:7000", 6222) == ("fd00::1", 7000)
    assert split_member("[fd00::1]", 6222) == ("fd00::1", 6222)


def test_routes_name_each_member_once() -> None:
    routes = route_addresses(("10.0.0.1", "10.0.0.2", "10.0.0.1:6222", "10.0.0.3:7000"), 6222)

    assert routes == ("10.0.0.1:6222", "10.0.0.2:6222", "10.0.0.3:7000")


def test_a_dns_name_stands_for_every_address_it_resolves_to() -> None:
    routes = route_addresses(("localhost",), 6222)

    assert "127.0.0.1:6222" in routes
    assert all(route.endswith(":6222") for route in routes)


def test_a_name_that_does_not_resolve_yet_is_left_to_nats_server() -> None:
    assert route_addresses(("no-such-member.invalid",), 6222) == ("no-such-member.invalid:6222",)


def test_one_node_with_its_own_server_routed_to_the_members(tmp_path: Path) -> None:
    stack = Stack(_per_host(tmp_path))

    assert [plan.node_id for plan in stack.nodes] == ["node2"]
    spec = stack.specs[0]
    assert (spec.name, spec.host, spec.port, spec.cluster_port) == (
        "esdb-node2",
        "10.0.0.2",
        4222,
        6222,
    )
    assert spec.routes == ("10.0.0.1:6222", "10.0.0.2:6222", "10.0.0.3:7000")
    assert stack.url == "nats://10.0.0.2:4222"
    assert member_urls(spec) == (
        "nats://10.0.0.1:4222",
        "nats://10.0.0.2:4222",
        "nats://10.0.0.3:4222",
    )
    config = server_config(spec, store_dir=tmp_path / "js", durability="fsync")
    assert "  advertise: 10.0.0.2:6222\n" in config
    assert "nats-route://10.0.0.1:6222, nats-route://10.0.0.2:6222, " in config
    names = sorted(child.name for child in stack.services)
    assert names == sorted(
        [f"{s}-node2" for s in ("writer", "reader", "emitter", "subscription", "snapshot")]
        + ["scavenger-node2", "projection-node2", "gateway", "ui"]
    )
    writer = next(child for child in stack.services if child.name == "writer-node2")
    assert writer.env["ESDB_NODE_ID"] == "node2"
    assert writer.env["ESDB_REPLICAS"] == str(CLUSTER_REPLICAS)
    assert writer.env["ESDB_NATS_URL"] == "nats://10.0.0.2:4222"
    assert writer.env["ESDB_DATA_DIR"] == str(tmp_path.resolve() / "node2")


def test_a_node_listening_everywhere_connects_its_services_over_loopback(tmp_path: Path) -> None:
    stack = Stack(_per_host(tmp_path, host="0.0.0.0", join=("esdb-node1",)))

    assert stack.nodes[0].url == "nats://127.0.0.1:4222"
    assert stack.url == f"nats://{socket.gethostname()}:4222"
    config = server_config(stack.specs[0], store_dir=tmp_path / "js", durability="fsync")
    assert "advertise" not in config
    assert "listen: 0.0.0.0:6222" in config


def test_an_existing_nats_cluster_runs_only_the_node_s_services(tmp_path: Path) -> None:
    stack = Stack(
        StackOptions(data_dir=tmp_path, node_id="edge", nats_url="nats://n1:4222", replicas=3)
    )

    assert stack.servers == []
    writer = next(child for child in stack.services if child.name == "writer-edge")
    assert writer.env["ESDB_REPLICAS"] == "3"
    assert writer.env["ESDB_NATS_URL"] == "nats://n1:4222"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"nodes": 3}, "--nodes N is the one-machine shortcut"),
        ({"replicas": 2}, "--replicas must be one of"),
        ({"auth": True}, "--auth is not supported across machines"),
        ({"node_id": None}, "--join needs --node-id"),
        ({"nats_url": "nats://x:4222"}, "with --nats-url your own servers route each other"),
    ],
)
def test_contradictory_options_are_refused(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(SystemExit, match=message):
        Stack(_per_host(tmp_path, **overrides))


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(["up", *argv])


def test_every_flag_falls_back_to_its_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "ESDB_NODE_ID": "node7",
        "ESDB_HOST": "10.1.0.7",
        "ESDB_JOIN": "10.1.0.1, 10.1.0.2:7000",
        "ESDB_NATS_PORT": "4300",
        "ESDB_CLUSTER_PORT": "6300",
        "ESDB_REPLICAS": "5",
        "ESDB_DATA_DIR": "/var/lib/esdb",
        "ESDB_DURABILITY": "interval",
    }.items():
        monkeypatch.setenv(name, value)

    options = up_options(_parse([]))

    assert options.node_id == "node7"
    assert options.host == "10.1.0.7"
    assert options.join == ("10.1.0.1", "10.1.0.2:7000")
    assert (options.nats_port, options.cluster_port, options.replicas) == (4300, 6300, 5)
    assert options.data_dir == Path("/var/lib/esdb")
    assert options.durability == "interval"


def test_a_flag_wins_over_its_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESDB_NODE_ID", "node7")
    monkeypatch.setenv("ESDB_JOIN", "10.1.0.1")

    options = up_options(_parse(["--node-id", "node8", "--join", "a,b:7000", "--replicas", "3"]))

    assert (options.node_id, options.join, options.replicas) == ("node8", ("a", "b:7000"), 3)


def test_plain_esdb_up_keeps_its_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ESDB_NODE_ID", "ESDB_JOIN", "ESDB_REPLICAS", "ESDB_DATA_DIR", "ESDB_NATS_URL"):
        monkeypatch.delenv(name, raising=False)

    options = up_options(_parse([]))

    assert not options.per_host
    assert (options.nodes, options.replica_count, options.nats_url) == (1, 1, None)
    assert options.data_dir == Path("./esdb-data")
