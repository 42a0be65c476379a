"""The shape a restore write must have, checked where it comes in (the gateway, naming the
field) and again by the writer leader, which never trusts its inbox: a bad entry in the log
would stop every node."""

from __future__ import annotations

from esdb.contracts.commands import StoreRestore
from esdb.contracts.dcb import DCB_STREAM
from esdb.contracts.errors import InvalidRequest
from esdb.shared.storage.records import STREAM_ACTIVE, STREAM_DELETED, STREAM_TOMBSTONED

STREAM_STATES = (STREAM_ACTIVE, STREAM_DELETED, STREAM_TOMBSTONED)


def check_restore_shape(restore: StoreRestore) -> None:
    """Reject what apply could not take (the writer never trusts its inbox): unique 16-byte
    event ids, versions that apply can follow, known states, tags only on `$dcb`'s events
    (the DCB index holds that stream alone). A stream may come several times (an
    interleaved export's runs, each after the one before)."""
    ids = [e.event_id for s in restore.streams for e in s.events]
    if len(set(ids)) != len(ids) or any(len(i) != 16 for i in ids):
        raise InvalidRequest("event ids must be unique 16-byte UUIDs", field="streams")
    for index, item in enumerate(restore.streams):
        where = f"streams[{index}]"
        if item.expected_version < -1:
            raise InvalidRequest(
                "expected_version must be -1 (no stream) or a version",
                field=f"{where}.expected_version",
            )
        if item.events and item.first_version <= item.expected_version:
            raise InvalidRequest(
                f"first_version {item.first_version} must be above expected_version "
                f"{item.expected_version}",
                field=f"{where}.first_version",
            )
        last = item.first_version + len(item.events) - 1 if item.events else item.expected_version
        if item.version is not None and item.version < max(last, item.expected_version, -1):
            raise InvalidRequest(
                f"version {item.version} is below the stream's last event ({last})",
                field=f"{where}.version",
            )
        if item.stream != DCB_STREAM:
            for number, event in enumerate(item.events):
                if event.tags:
                    raise InvalidRequest(
                        f"only events of {DCB_STREAM} carry tags",
                        field=f"{where}.events[{number}].tags",
                    )
        if item.state is not None and item.state not in STREAM_STATES:
            raise InvalidRequest(
                f"state must be one of {', '.join(STREAM_STATES)}", field=f"{where}.state"
            )
