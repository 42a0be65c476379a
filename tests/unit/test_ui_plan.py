"""`esdb up` and the web UI: one `ui` process per `esdb up`, on `--ui-host:--ui-port` (or the
`ESDB_UI*` settings), none with `--no-ui`, and a taken port refused before anything starts."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

import pytest

from esdb.cli.main import build_parser, up_options
from esdb.services.supervisor.preflight import check_ui_port_free
from esdb.services.supervisor.stack import DEFAULT_UI_PORT, Stack, StackOptions


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(["up", *argv])


def _ui_env(stack: Stack) -> dict[str, str]:
    (ui,) = [child for child in stack.services if child.name == "ui"]
    assert ui.argv[-1] == "esdb.services.ui"
    return ui.env


def test_esdb_up_serves_the_ui_on_2113_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ESDB_UI", "ESDB_UI_HOST", "ESDB_UI_PORT"):
        monkeypatch.delenv(name, raising=False)
    options = up_options(_parse([]))
    assert (options.ui, options.ui_host, options.ui_port) == (True, "127.0.0.1", DEFAULT_UI_PORT)
    assert DEFAULT_UI_PORT == 2113


def test_the_flags_and_settings_of_the_ui(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESDB_UI_PORT", "3000")
    monkeypatch.setenv("ESDB_UI_HOST", "0.0.0.0")
    options = up_options(_parse([]))
    assert (options.ui, options.ui_host, options.ui_port) == (True, "0.0.0.0", 3000)
    options = up_options(_parse(["--ui-port", "0", "--ui-host", "::1"]))
    assert (options.ui_host, options.ui_port) == ("::1", 0)
    assert not up_options(_parse(["--no-ui"])).ui
    monkeypatch.setenv("ESDB_UI", "false")
    assert not up_options(_parse([])).ui


def test_one_ui_per_esdb_up_beside_the_gateway(tmp_path: Path) -> None:
    stack = Stack(StackOptions(data_dir=tmp_path, nodes=3, ui_port=4100, ui_host="0.0.0.0"))
    env = _ui_env(stack)
    assert (env["ESDB_UI_PORT"], env["ESDB_UI_HOST"]) == ("4100", "0.0.0.0")
    # Like the gateway, it knows every node's server.
    assert env["ESDB_NATS_URL"].count("nats://") == 3
    assert env["ESDB_HTTP_URL_FILE"].endswith("/run/ui.http")
    names = [child.name for child in stack.services]
    assert names[-2:] == ["gateway", "ui"]  # stopped first, in reverse


def test_a_node_of_a_cluster_across_machines_serves_it_too(tmp_path: Path) -> None:
    stack = Stack(
        StackOptions(data_dir=tmp_path, node_id="node2", host="10.0.0.2", join=("10.0.0.1",))
    )
    assert _ui_env(stack)["ESDB_NATS_URL"] == "nats://10.0.0.2:4222"


def test_no_ui(tmp_path: Path) -> None:
    stack = Stack(StackOptions(data_dir=tmp_path, ui=False))
    assert "ui" not in [child.name for child in stack.services]
    assert stack.ui_url_file is None


def test_a_taken_ui_port_is_refused() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit, match=f"127.0.0.1:{port} .the web UI's port. is already"):
            check_ui_port_free("127.0.0.1", port)
