"""Taskfile.yml: the tasks the design names exist, go-task (from the dev extras) accepts the
file, and every command it would run names a tool the dev install provides and an `esdb`
subcommand that exists. No task is run: `task --dry` prints what it would do."""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from esdb.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
TASKFILE = ROOT / "Taskfile.yml"
VENV_TOOLS = {"esdb", "pytest", "ruff", "mypy", "pip"}  # installed by `pip install -e '.[dev]'`


def _task_binary() -> str:
    found = shutil.which("task", path=str(Path(sys.executable).parent)) or shutil.which("task")
    assert found, "go-task is missing: it comes with the dev extras (go-task-bin)"
    return found


def _task(*args: str) -> subprocess.CompletedProcess[str]:
    """Run go-task without colour: it colours its output whenever `CI` is set, as on CI."""
    return subprocess.run(
        [_task_binary(), "--color=false", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )


def _esdb_subcommands() -> set[str]:
    (subparsers,) = (
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    return set(subparsers.choices)


def _tasks() -> dict[str, dict[str, object]]:
    tasks: dict[str, dict[str, object]] = yaml.safe_load(TASKFILE.read_text())["tasks"]
    return tasks


def test_the_design_s_tasks_exist_with_descriptions() -> None:
    tasks = _tasks()
    assert {"up", "down", "test", "bench", "lint"} <= set(tasks)
    listed = _task("--list").stdout
    for name, task in tasks.items():
        assert task.get("desc"), f"task {name} has no description"
        assert f"* {name}:" in listed


@pytest.mark.parametrize("name", ["up", "test", "bench", "lint"])
def test_each_command_names_an_installed_tool_and_a_real_subcommand(name: str) -> None:
    dry = _task("--dry", name)
    commands = [
        line.split(f"[{name}] ", 1)[1] for line in dry.stderr.splitlines() if f"[{name}] " in line
    ]
    assert commands, dry.stderr
    subcommands = _esdb_subcommands()
    for command in commands:
        words = shlex.split(command)
        tool = Path(words[0])
        assert tool.parent == Path(".venv/bin") and tool.name in VENV_TOOLS, command
        if tool.name == "esdb":
            assert words[1] in subcommands, command
