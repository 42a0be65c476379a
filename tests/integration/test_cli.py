"""The `esdb` command line against a real stack, run as a user would: a subprocess."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from esdb.services.supervisor.nats_server import free_port
from tests.stack import Stack

ESDB = str(Path(sys.executable).parent / "esdb")


def _name(prefix: str = "cli") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def esdb(
    stack: Stack, *args: str, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run `esdb ARGS` with ESDB_URL pointing at the stack."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ESDB_")}
    environment |= {"ESDB_URL": stack.url, **env}
    return subprocess.run(
        [ESDB, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )


def ok(stack: Stack, *args: str, stdin: str | None = None) -> str:
    """Run `esdb ARGS`, expect exit 0 and return its stdout."""
    done = esdb(stack, *args, stdin=stdin)
    assert done.returncode == 0, done.stderr
    return done.stdout


def json_lines(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines()]


def test_append_then_read_prints_one_line_per_event(stack: Stack) -> None:
    stream = _name("order-")
    placed = json.loads(
        ok(
            stack,
            "append",
            stream,
            "Placed",
            '{"id": 1}',
            "--expected-version",
            "no_stream",
            "--json",
        )
    )
    assert (placed["first_version"], placed["last_version"]) == (0, 0)
    said = ok(stack, "append", stream, "Paid", '{"amount": 9.5}', "--metadata", '{"by": "cli"}')
    assert (
        said.strip() == f"appended 1 event to {stream}@1 (position {placed['last_position'] + 1})"
    )

    lines = ok(stack, "read", stream).splitlines()
    position = placed["last_position"]
    assert [line.split() for line in lines] == [
        [str(position), f"{stream}@0", "Placed", '{"id":1}'],
        [str(position + 1), f"{stream}@1", "Paid", '{"amount":9.5}'],
    ]
    events = json_lines(ok(stack, "read", stream, "--json"))
    assert [e["data"] for e in events] == [{"id": 1}, {"amount": 9.5}]
    assert events[1]["metadata"] == {"by": "cli"}
    assert [e["position"] for e in events] == [position, position + 1]


def test_append_reads_events_from_stdin_in_one_append(stack: Stack) -> None:
    stream = _name()
    blob = bytes([0, 1, 2, 255])
    event_id = str(uuid.uuid4())
    lines = [
        {"type": "Line", "data": {"n": 1}, "event_id": event_id},
        {
            "type": "Blob",
            "data": base64.b64encode(blob).decode(),
            "content_type": "application/octet-stream",
        },
    ]
    said = ok(stack, "append", stream, "-", stdin="\n".join(json.dumps(x) for x in lines) + "\n")
    assert said.startswith(f"appended 2 events to {stream}@0..1 ")
    ok(stack, "append", stream, "Tick", "-", stdin='{"n": 2}\n\n{"n": 3}\n')

    events = json_lines(ok(stack, "read", stream, "--json"))
    assert [(e["version"], e["event_type"]) for e in events] == [
        (0, "Line"),
        (1, "Blob"),
        (2, "Tick"),
        (3, "Tick"),
    ]
    assert events[0]["event_id"] == event_id
    assert base64.b64decode(events[1]["data"]) == blob
    assert [e["data"] for e in events[2:]] == [{"n": 2}, {"n": 3}]
    readable = ok(stack, "read", stream, "--from", "1", "--limit", "1")
    assert readable.split()[1:] == [
        f"{stream}@1",
        "Blob",
        "<4",
        "bytes",
        "application/octet-stream>",
    ]


def test_read_backward_with_a_limit_says_where_to_continue(stack: Stack) -> None:
    stream = _name()
    ok(stack, "append", stream, "Tick", "-", stdin="".join(f'{{"n": {n}}}\n' for n in range(5)))
    done = esdb(stack, "read", stream, "--backward", "--limit", "2")
    assert done.returncode == 0, done.stderr
    assert [line.split()[1] for line in done.stdout.splitlines()] == [f"{stream}@4", f"{stream}@3"]
    assert "--from 2" in done.stderr
    rest = ok(stack, "read", stream, "--backward", "--from", "2", "--limit", "0")
    assert [line.split()[1] for line in rest.splitlines()] == [f"{stream}@{v}" for v in (2, 1, 0)]


def test_read_all_with_filters(stack: Stack) -> None:
    category = _name("cat")
    ok(stack, "append", f"{category}-1", "OrderPlaced", '{"n": 1}')
    ok(stack, "append", f"{category}-1", "OrderPaid", '{"n": 2}')
    ok(stack, "append", f"{category}-2", "OrderPlaced", '{"n": 3}')

    by_type = json_lines(
        ok(stack, "read", "--all", "--category", category, "--type", "OrderPlaced", "--json")
    )
    assert [(e["stream_id"], e["data"]) for e in by_type] == [
        (f"{category}-1", {"n": 1}),
        (f"{category}-2", {"n": 3}),
    ]
    by_prefix = ok(stack, "read", "--all", "--stream-prefix", category, "--type-prefix", "OrderPa")
    assert [line.split()[1:] for line in by_prefix.splitlines()] == [
        [f"{category}-1@1", "OrderPaid", '{"n":2}']
    ]
    newest = json_lines(
        ok(
            stack,
            "read",
            "--all",
            "--stream-prefix",
            category,
            "--backward",
            "--limit",
            "1",
            "--json",
        )
    )
    assert [e["data"] for e in newest] == [{"n": 3}]


def test_streams_lists_names_versions_and_states(stack: Stack) -> None:
    prefix = _name("ls") + "-"
    ok(stack, "append", prefix + "a", "Tick")
    ok(stack, "append", prefix + "b", "Tick", "-", stdin="1\n2\n")
    listed = json_lines(ok(stack, "streams", "--after", prefix, "--limit", "2", "--json"))
    assert listed == [
        {"stream": prefix + "a", "version": 0, "state": "active", "metadata": {}},
        {"stream": prefix + "b", "version": 1, "state": "active", "metadata": {}},
    ]
    table = ok(stack, "streams", "--after", prefix, "--limit", "2").splitlines()
    assert table[0].split() == ["STREAM", "VERSION", "STATE", "METADATA"]
    assert [row.split() for row in table[1:]] == [
        [prefix + "a", "0", "active"],
        [prefix + "b", "1", "active"],
    ]
    info = json.loads(ok(stack, "info", prefix + "b", "--json"))
    assert (info["version"], info["state"]) == (1, "active")


def test_status_shows_the_leader_and_health(stack: Stack) -> None:
    lines = ok(stack, "status").splitlines()
    assert lines[0].split() == [
        "NODE",
        "HOST",
        "ROLE",
        "STATE",
        "APPLIED",
        "LOG",
        "LAST",
        "LAG",
        "LOG",
        "HASH",
        "SEES",
        "UP",
        "STORES",
    ]
    nodes = lines[1 : lines.index("")]
    leader_rows = [row.split() for row in nodes if row.split()[2:3] == ["leader"]]
    assert len(leader_rows) == 1
    node, host, _, state, applied, _, lag, _, _, stores = leader_rows[0]
    assert host == stack.url.removeprefix("nats://")
    assert state == "ok"
    assert int(applied) >= 1
    assert int(lag) >= 0
    assert "default" in stores.split(",")
    assert f"leader: {node}" in lines
    assert any(line.startswith("health: ok") for line in lines)
    status = json.loads(ok(stack, "status", "--json"))
    assert status["health"]["status"] == "ok"
    assert status["cluster"]["leader"] == node


def test_status_with_the_data_dir_lists_every_process_and_its_readiness(stack: Stack) -> None:
    lines = ok(stack, "status", "--data-dir", str(stack.data_dir)).splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["PROCESS"])
    assert lines[start].split() == ["PROCESS", "PID", "HTTP", "READY"]
    rows = {row.split()[0]: row.split() for row in lines[start + 1 :] if row.strip()}
    assert rows["gateway"][1] == str(stack.pid("gateway"))
    assert rows["gateway"][2] == stack.http_url("gateway")
    assert rows["gateway"][3] == "ready"
    assert rows["writer-node1"][3] == "ready"
    assert rows["nats-server-node1"][2:] == ["-", "-"]
    listed = json.loads(ok(stack, "status", "--json", "--data-dir", str(stack.data_dir)))
    assert {"name": "gateway", "pid": str(stack.pid("gateway")), "http": stack.http_url(
        "gateway"
    ), "ready": "ready"} in listed["processes"]  # fmt: skip


def test_errors_print_their_code_and_exit_1(stack: Stack) -> None:
    stream = _name()
    ok(stack, "append", stream, "Tick", "{}")
    stale = esdb(stack, "append", stream, "Tick", "{}", "--expected-version", "no_stream")
    assert stale.returncode == 1
    assert stale.stderr.startswith("error: wrong_expected_version: ")
    assert stale.stdout == ""

    missing = esdb(stack, "read", _name())
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: stream_not_found: ")

    bad_json = esdb(stack, "append", stream, "Tick", "{not json")
    assert bad_json.returncode == 1
    assert bad_json.stderr.startswith("error: invalid_request: DATA_JSON is not valid JSON")

    no_store = esdb(stack, "streams", ESDB_STORE=_name("nostore"))
    assert no_store.returncode == 1
    assert no_store.stderr.startswith("error: not_found: ")

    lookahead = esdb(stack, "read", "--all", "--stream-regex", "^(?!order)")
    assert lookahead.returncode == 1
    assert lookahead.stderr.startswith("error: invalid_request: bad regex (RE2 syntax): ")
    assert lookahead.stderr.rstrip().endswith("(field filter.stream_regex)")

    assert json_lines(ok(stack, "read", stream, "--json"))[0]["version"] == 0
    assert len(ok(stack, "read", stream).splitlines()) == 1


def test_connection_refused_is_a_clear_error(stack: Stack) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    done = esdb(stack, "status", "--url", url)
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: unavailable: cannot connect to NATS at {url}")
    assert "Traceback" not in done.stderr


def test_usage_errors_exit_2_and_client_commands_do_not_load_the_bench(stack: Stack) -> None:
    done = esdb(stack, "read", "x", "--no-such-option")
    assert done.returncode == 2
    assert "unrecognized arguments: --no-such-option" in done.stderr
    probe = (
        "import sys; from esdb.cli.main import main; code = main(['status']); "
        "print(code, 'esdb.benchmarks.cli' in sys.modules)"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env={**os.environ, "ESDB_URL": stack.url},
        timeout=60,
        check=False,
    )
    assert loaded.stdout.splitlines()[-1] == "0 False", loaded.stderr


def test_subscriptions_are_managed_from_the_command_line(stack: Stack) -> None:
    name, category = _name("grp"), _name("cat")
    ok(stack, "subscriptions", "create", name, "--category", category, "--max-retries", "0")
    listed = json_lines(ok(stack, "subscriptions", "list", "--json"))
    assert name in [group["subscription"] for group in listed]
    info = json_lines(ok(stack, "subscriptions", "info", name, "--json"))[0]
    assert info["selector"] == {"category": category} and info["max_retries"] == 0
    assert "NAME" in ok(stack, "subscriptions", "info", name)  # the readable table
    failed = esdb(stack, "subscriptions", "create", name, "--all")
    assert failed.returncode == 1 and "already_exists" in failed.stderr
    assert ok(stack, "subscriptions", "parked", name) == ""
    replay = esdb(stack, "subscriptions", "replay", name)
    assert replay.returncode == 0 and "replaying 0" in replay.stderr
    ok(stack, "subscriptions", "delete", name)
    gone = esdb(stack, "subscriptions", "info", name)
    assert gone.returncode == 1 and "not_found" in gone.stderr


def test_up_refuses_a_data_dir_another_stack_runs_on(stack: Stack) -> None:
    done = esdb(stack, "up", "--data-dir", str(stack.data_dir), "--nats-port", str(free_port()))
    assert done.returncode != 0
    assert f"{stack.data_dir} is in use by another esdb up (pid {stack.process.pid})" in (
        done.stderr
    )
    # The running stack was not touched: it still answers.
    ok(stack, "status")


def test_up_refuses_a_port_in_use(stack: Stack, tmp_path: Path) -> None:
    port = stack.url.rsplit(":", 1)[1]
    done = esdb(stack, "up", "--data-dir", str(tmp_path / "other"), "--nats-port", port)
    assert done.returncode != 0
    assert f"127.0.0.1:{port} (--nats-port of esdb-node1) is already in use" in done.stderr
    ok(stack, "status")


async def test_up_on_a_nats_url_without_jetstream_or_unreachable_fails_at_once(
    stack: Stack, plain_nats_url: str, tmp_path: Path
) -> None:
    # Before the services start: no waiting out the ready timeout in their retries.
    done = esdb(stack, "up", "--data-dir", str(tmp_path / "a"), "--nats-url", plain_nats_url)
    assert done.returncode != 0
    assert f"{plain_nats_url} has no JetStream" in done.stderr
    dead = f"nats://127.0.0.1:{free_port()}"
    done = esdb(stack, "up", "--data-dir", str(tmp_path / "b"), "--nats-url", dead)
    assert done.returncode != 0
    assert f"cannot connect to {dead}" in done.stderr


def test_cluster_commands_say_why_a_single_node_cannot_do_them(stack: Stack) -> None:
    step_down = esdb(stack, "cluster", "step-down")
    assert step_down.returncode == 1
    assert "no other node is up to take over" in step_down.stderr
    more = esdb(stack, "cluster", "replicas", "3")
    assert more.returncode == 1
    assert "error: unavailable: JetStream refused 3 replicas" in more.stderr
    assert "nothing to change" in ok(stack, "cluster", "replicas", "1")
    even = esdb(stack, "cluster", "replicas", "2")
    assert even.returncode == 1
    assert "error: invalid_request: replicas must be one of 1, 3, 5" in even.stderr
    unknown = esdb(stack, "cluster", "remove", "node9")
    assert unknown.returncode == 1
    assert "error: not_found: the cluster has no member 'node9'" in unknown.stderr
    itself = esdb(stack, "cluster", "remove", "node1")
    assert itself.returncode == 1
    assert "node 'node1' is running" in itself.stderr
    # The node still serves writes after all of that.
    ok(stack, "append", _name("after-"), "Happened", "{}")


def test_projections_are_managed_from_the_command_line(stack: Stack, tmp_path: Path) -> None:
    stream, name = _name("cli-proj-"), _name("counter")
    ok(stack, "append", stream, "Hit", "{}")
    query = tmp_path / f"{name}.js"
    query.write_text(f"fromStream('{stream}').when({{$init: () => 0, Hit: (s) => s + 1}})\n")
    created = json_lines(ok(stack, "projections", "create", str(query), "--json"))[0]
    assert (created["name"], created["status"]) == (name, "running")
    deadline = time.monotonic() + 60
    # Each `esdb` run takes a process start, which paces the polling by itself.
    while ok(stack, "projections", "state", name).strip() != "1":
        assert time.monotonic() < deadline, "the projection did not count the event"
    assert ok(stack, "projections", "result", name).strip() == "1"
    listed = json_lines(ok(stack, "projections", "list", "--json"))
    assert name in [p["name"] for p in listed]
    shown = ok(stack, "projections", "show", name)
    assert "STATUS" in shown and f"fromStream('{stream}')" in shown
    assert json_lines(ok(stack, "projections", "disable", name, "--json"))[0]["status"] == "stopped"
    assert json_lines(ok(stack, "projections", "enable", name, "--json"))[0]["status"] == "running"
    ok(stack, "projections", "reset", name)
    failed = esdb(stack, "projections", "create", str(query))
    assert failed.returncode == 1 and "already_exists" in failed.stderr
    ok(stack, "projections", "delete", name)
    gone = esdb(stack, "projections", "show", name)
    assert gone.returncode == 1 and "not_found" in gone.stderr
