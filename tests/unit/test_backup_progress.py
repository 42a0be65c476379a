"""The progress line of long commands, and when backup refuses a log that cannot catch up."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import msgspec
import pytest

from esdb.cli.progress import Progress, clock_text, quantity, render
from esdb.shared.storage.backup import (
    FORMAT,
    BackupError,
    Manifest,
    StoreCopy,
    check_log_covers,
    decode_manifest,
    encode_manifest,
)


def test_a_line_shows_bar_count_rate_and_time_left() -> None:
    assert render("import", count=2500, elapsed=2.0, total=10_000) == (
        "import  [######..................]  25%  2,500/10,000 events  1,250 events/s  ETA 0:06"
    )


def test_a_total_in_other_units_drives_the_bar_but_not_the_count() -> None:
    line = render("export", count=900, elapsed=1.0, total=2000, done=1000)
    assert line.startswith("export  [############............]  50%  900 events  900 events/s")


def test_without_a_total_the_line_counts_and_shows_time_taken() -> None:
    assert render("import", count=75, elapsed=65.0) == "import  75 events  1 events/s  1:05"


def test_bytes_read_as_sizes() -> None:
    assert quantity(512, "bytes") == "512 B"
    assert quantity(3 << 20, "bytes") == "3.0 MiB"
    assert quantity(5 << 40, "bytes") == "5120.0 GiB"
    assert clock_text(3725) == "1:02:05"
    line = render("backup copy", count=1 << 20, elapsed=1.0, total=4 << 20, unit="bytes")
    assert "1.0 MiB/4.0 MiB  1.0 MiB/s" in line


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_draws_only_on_a_terminal_and_at_most_every_tenth_of_a_second() -> None:
    now = [0.0]
    piped = io.StringIO()
    with Progress("import", total=10, stream=piped, clock=lambda: now[0]) as bar:
        bar.advance(5)
    assert piped.getvalue() == ""

    terminal = _Tty()
    with Progress("import", total=10, stream=terminal, clock=lambda: now[0]) as bar:
        bar.advance(1)
        bar.advance(1)  # within 0.1 s of the last draw: not drawn
        now[0] += 0.2
        bar.advance(8)
    frames = terminal.getvalue().split("\r")[1:]
    assert len(frames) == 3  # two draws and the final one
    assert "10/10 events" in frames[-1] and terminal.getvalue().endswith("\n")


def test_phases_each_get_their_own_line() -> None:
    terminal = _Tty()
    with Progress("backup", unit="bytes", stream=terminal, clock=lambda: 1.0) as bar:
        bar.phase("copy", 100)
        bar.advance(100)
        bar.phase("compress", 50)
        bar.advance(50)
    lines = terminal.getvalue().split("\n")
    assert lines[-1] == ""
    assert [line.split("\r")[-1].split("  ")[0] for line in lines[:-1]] == [
        "backup copy",
        "backup compress",
    ]


def test_a_backup_needs_every_log_entry_after_its_sequence() -> None:
    check_log_covers(100, first=1, last=150)
    check_log_covers(100, first=101, last=150)  # purged up to what the backup holds
    check_log_covers(100, first=101, last=100)  # nothing written since
    check_log_covers(0, first=0, last=0)


def test_a_purged_log_is_refused_with_what_to_do_instead() -> None:
    with pytest.raises(BackupError, match=r"entries 101\.\.119 were purged.*image \(log seq"):
        check_log_covers(100, first=120, last=200, image=150)
    with pytest.raises(BackupError, match="No image covers the gap"):
        check_log_covers(100, first=120, last=200, image=110)
    with pytest.raises(BackupError, match="another cluster or the log was lost"):
        check_log_covers(100, first=0, last=0)


def _manifest(**changes: object) -> Manifest:
    manifest = Manifest(
        format=FORMAT,
        format_version=1,
        esdb_version="0.1.0",
        created=datetime(2025, 1, 1, tzinfo=UTC),
        node="node1",
        sequence=9,
        log_hash="ab",
        stores=[
            StoreCopy(name="_system", applied_sequence=9, last_position=0, bytes=1, sha256="x")
        ],
    )
    return msgspec.structs.replace(manifest, **changes)


def test_a_manifest_round_trips_and_a_foreign_or_newer_one_is_refused() -> None:
    manifest = _manifest()
    assert decode_manifest(encode_manifest(manifest), "m") == manifest
    for bad, reason in [
        (_manifest(format="other"), "not an esdb backup manifest"),
        (_manifest(format_version=2), "format version 2"),
        (_manifest(stores=[]), "no _system store"),
    ]:
        with pytest.raises(BackupError, match=reason):
            decode_manifest(encode_manifest(bad), "m")
    with pytest.raises(BackupError, match="not an esdb backup manifest"):
        decode_manifest(b"{}", "m")
