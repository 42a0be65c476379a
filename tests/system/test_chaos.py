"""Two rounds of the randomized fault run, so the script itself stays working in CI."""

from __future__ import annotations

from pathlib import Path

from tests.system.chaos import main


def test_chaos_script_runs_and_verifies(tmp_path: Path) -> None:
    assert main(["--rounds", "2", "--seed", "7", "--data-dir", str(tmp_path / "chaos")]) == 0
