"""An exact import's projections: each `projection` record restored through
`_sys.projection_restore`, its checkpoint at the target's position of the last imported event
at or before the source's (the events after it are the ones it had not processed), its
states and counts as they were."""

from __future__ import annotations

from dataclasses import dataclass

from esdb.cli.export_format import ProjectionLine
from esdb.cli.restore_import import PositionMap
from esdb.client import AlreadyExists, Client
from esdb.contracts.restore import ProjectionRestoreRequest


@dataclass
class ProjectionReport:
    """Projections restored, and ones the target already had."""

    restored: int = 0
    skipped: int = 0


def projection_request(
    line: ProjectionLine, positions: PositionMap, after_all: int
) -> ProjectionRestoreRequest:
    """The restore of one projection record in the target's positions (`after_all`: the
    position after the target's last imported event)."""
    fault = line.fault_position
    return ProjectionRestoreRequest(
        store="",  # the client's
        name=line.name,
        query=line.query,
        emit_enabled=line.emit_enabled,
        enabled=line.enabled,
        epoch=line.epoch,
        checkpoint=positions.at_or_below(line.position),
        events_processed=line.events_processed,
        events_emitted=line.events_emitted,
        reason=line.reason,
        fault_position=0 if fault is None else positions.at_or_above(fault, after_all),
        partitions=line.partitions,
    )


async def restore_projections(
    client: Client, lines: list[ProjectionLine], positions: PositionMap, after_all: int
) -> ProjectionReport:
    """Restore each projection; one the target has already (a re-run) is left as it is."""
    report = ProjectionReport()
    for line in lines:
        try:
            await client.restore_projection(projection_request(line, positions, after_all))
        except AlreadyExists:
            report.skipped += 1
        else:
            report.restored += 1
    return report
