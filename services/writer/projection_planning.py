"""Leader-side check of a projection commit: it lands only where the projection stands.

A commit names the epoch, definition revision and checkpoint it started from. Two runners of
one projection (an old leader's and a new one's, for a moment) may both send one; only the
first to be planned on top of that checkpoint lands, the other is refused, so no batch is
applied twice. A runner still going after its projection was disabled, updated or reset (a
new revision) cannot commit either: a definition change takes effect at its log entry."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from esdb.contracts.commands import WriteOutcome, WriteRequest
from esdb.contracts.errors import EsdbError, WrongExpectedVersion
from esdb.contracts.log import LogOp, ProjectionCommitOp
from esdb.contracts.projections import stored_projection_decoder
from esdb.shared.storage import item_keys

if TYPE_CHECKING:
    from esdb.services.writer.planning import Planner


def plan_projection_commit(
    planner: Planner, request: WriteRequest
) -> tuple[list[LogOp], WriteOutcome]:
    """The commit's emitted appends then the commit itself, or an error and no ops."""
    commit = request.projection
    assert commit is not None
    try:
        overlay = planner.overlay(request.store)
        at = overlay.projections.get(commit.name) or _stored_at(planner, request.store, commit)
        if at != (commit.epoch, commit.revision, commit.from_checkpoint):
            raise WrongExpectedVersion(
                f"projection {commit.name!r} is not at the commit's starting checkpoint "
                "(moved on, or redefined since)",
                projection=commit.name,
                actual_version=at[2],
                expected_version=commit.from_checkpoint,
            )
    except EsdbError as error:
        return [], WriteOutcome(error=error.to_body())
    ops: list[LogOp] = []
    outcome = WriteOutcome(results=[])
    if request.appends:
        ops, outcome = planner.plan(msgspec.structs.replace(request, projection=None))
        if outcome.error is not None:
            return [], outcome
    overlay.projections[commit.name] = (commit.epoch, commit.revision, commit.checkpoint)
    ops.append(commit)
    return ops, outcome


def _stored_at(planner: Planner, store: str, commit: ProjectionCommitOp) -> tuple[int, int, int]:
    key = item_keys.projection_key(commit.name)
    raw = planner.store(store).get_item(item_keys.PROJECTIONS, key)
    if raw is None:
        return (-1, -1, -1)  # deleted: no commit fits
    stored = stored_projection_decoder.decode(raw)
    return (stored.epoch, stored.revision, stored.checkpoint)
