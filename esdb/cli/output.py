"""How commands print: readable lines and tables by default, JSON lines with `--json`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import msgspec

from esdb.client import RecordedEvent
from esdb.contracts.api import JSON_CONTENT_TYPE, EventOut

_json = msgspec.json.Encoder()


def event_line(event: RecordedEvent) -> str:
    """`position  stream@version  type  data` for one event."""
    return f"{event.position:>6}  {event.stream_id}@{event.version}  {event.event_type}  " + (
        payload_text(event.data, event.content_type)
    )


def payload_text(payload: bytes, content_type: str) -> str:
    """JSON payloads as their text, others as a size and content type."""
    if content_type == JSON_CONTENT_TYPE:
        return payload.decode("utf-8", errors="replace")
    return f"<{len(payload)} bytes {content_type}>"


def event_json(event: RecordedEvent) -> str:
    """One event as the JSON API returns it: JSON payloads inline, others base64."""
    return json_line(
        EventOut(
            event_id=event.event_id,
            stream_id=event.stream_id,
            version=event.version,
            position=event.position,
            event_type=event.event_type,
            data=_wire_payload(event.data, event.content_type),
            metadata=_wire_payload(event.metadata, event.content_type),
            content_type=event.content_type,
            created=event.created,
        )
    )


def _wire_payload(payload: bytes, content_type: str) -> msgspec.Raw | bytes | None:
    if not payload:
        return None
    return msgspec.Raw(payload) if content_type == JSON_CONTENT_TYPE else payload


def json_line(value: object) -> str:
    """`value` as one line of JSON."""
    return _json.encode(value).decode()


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Rows under headers, in columns padded to fit."""
    cells = [list(headers), *([str(cell) for cell in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def note(text: str) -> None:
    """A remark for the person at the terminal (stderr, so piped output stays clean)."""
    print(text, file=sys.stderr)
