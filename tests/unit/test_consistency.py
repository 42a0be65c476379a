"""The node monitor's membership view and the consistency checker."""

from __future__ import annotations

from esdb.contracts.api import NodeStatus
from esdb.contracts.log import AppendOp, LogEntry, StampedEvent, decode_entry, encode_entry
from esdb.services.gateway.consistency import consistency_problems
from esdb.services.writer.apply import chain_hash
from esdb.services.writer.monitor import HEARTBEAT_EVERY_S, MISSES_FOR_DOWN, Membership


def _node(node_id: str, **changes: object) -> NodeStatus:
    fields: dict[str, object] = {
        "node_id": node_id,
        "role": "follower",
        "applied_sequence": 32,
        "log_last_sequence": 32,
        "lag": 0,
        "stores": ["default"],
        "checkpoints": {16: "aa", 32: "bb"},
        "lease_holder": "node1",
        "members": {"node1": True, "node2": True},
    }
    fields.update(changes)
    return NodeStatus(**fields)  # type: ignore[arg-type]


def test_a_node_is_down_after_three_missed_heartbeats() -> None:
    now = [0.0]
    membership = Membership(clock=lambda: now[0])
    membership.saw("node1")
    membership.saw("node2")
    now[0] = HEARTBEAT_EVERY_S * MISSES_FOR_DOWN - 0.1
    membership.saw("node2")
    assert membership.view() == {"node1": True, "node2": True}
    now[0] = HEARTBEAT_EVERY_S * MISSES_FOR_DOWN + 0.1
    assert membership.view() == {"node1": False, "node2": True}


def test_agreeing_nodes_have_no_problems() -> None:
    nodes = [_node("node1", role="leader"), _node("node2", checkpoints={32: "bb", 48: "cc"})]
    assert consistency_problems(nodes) == []


def test_each_disagreement_is_reported() -> None:
    nodes = [
        _node("node1", role="leader"),
        _node(
            "node2",
            role="leader",
            lease_holder="node2",
            members={"node2": True},
            checkpoints={32: "XX"},
        ),
    ]
    problems = " | ".join(consistency_problems(nodes))
    assert "several nodes act as leader" in problems
    assert "lease holder" in problems
    assert "membership" in problems
    assert "hashes differ at sequence 32" in problems


def test_the_log_hash_covers_sequence_history_and_bytes() -> None:
    entry = LogEntry(
        ops=[
            AppendOp(
                "default",
                "s-1",
                0,
                1,
                [StampedEvent(b"\x01" * 16, "T", b"{}", b"", "application/json", 7)],
            )
        ],
        leader="node1",
    )
    raw = encode_entry(entry)
    assert encode_entry(decode_entry(raw)) == raw, "replay reproduces the leader's bytes"
    assert chain_hash(b"", 1, raw) != chain_hash(b"", 2, raw)
    assert chain_hash(b"x", 1, raw) != chain_hash(b"", 1, raw)
    assert chain_hash(b"", 1, raw) != chain_hash(b"", 1, raw + b"\x00")
