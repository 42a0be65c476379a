"""Apply's part of DCB: index the events of an append to the `$dcb` stream."""

from __future__ import annotations

from esdb.contracts.log import AppendOp
from esdb.shared.storage.port import StoreTransaction


def index_dcb_append(txn: StoreTransaction, op: AppendOp) -> None:
    """Index each event of `op` (already stored) by type and tags, in the same transaction."""
    for offset, event in enumerate(op.events):
        txn.index_dcb(op.first_position + offset, event.type, event.tags)
