"""The servers' subject mappings: public writes to the writer leader, reads to the readers."""

from __future__ import annotations

from esdb.contracts.subjects import (
    READ_OPERATIONS,
    WRITE_OPERATIONS,
    api_mappings,
    api_subject,
    public_subject,
    read_subject,
    write_subject,
)


def test_every_write_and_read_is_mapped_and_nothing_else() -> None:
    mappings = api_mappings()
    assert set(mappings) == {api_subject("*", op) for op in WRITE_OPERATIONS | READ_OPERATIONS}
    for op in WRITE_OPERATIONS:
        assert mappings[api_subject("*", op)] == write_subject("{{wildcard(1)}}", op)
    for op in READ_OPERATIONS:
        assert mappings[api_subject("*", op)] == read_subject("{{wildcard(1)}}", op)
    assert not WRITE_OPERATIONS & READ_OPERATIONS


def test_a_mapped_subject_names_the_public_one_it_came_from() -> None:
    assert public_subject(read_subject("orders", "read_all")) == api_subject("orders", "read_all")
    assert public_subject(write_subject("orders", "append")) == api_subject("orders", "append")
    assert public_subject("esdb.events.orders.x") == "esdb.events.orders.x"
