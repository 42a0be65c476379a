"""`esdb config`: the effective configuration, each setting with where it came from."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from esdb.cli.output import json_line
from esdb.shared.settings import (
    CONFIG_VARIABLE,
    SETTING_NAMES,
    Configuration,
    SettingsError,
    env_text,
    load_configuration,
    variable,
)


def add_command(commands: Any) -> None:
    """Add `esdb config` to the `esdb` subcommands."""
    config = commands.add_parser(
        "config",
        help="print the effective configuration and where each setting came from",
        description=(
            "Print every setting as `ESDB_NAME=value  # source`, where the source is "
            "default, file or env: ESDB_* variables override the TOML config file, which "
            "overrides the defaults. Exit status 2 when a setting is invalid. See "
            "docs/configuration.md."
        ),
    )
    config.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"the TOML config file (default: the file ${CONFIG_VARIABLE} names, if any)",
    )
    config.add_argument("--json", action="store_true", help="print one JSON object")


def show_config(args: argparse.Namespace) -> int:
    """`esdb config`: 0, or 2 (and the problems on stderr) when the configuration is invalid."""
    try:
        configuration = load_configuration(config_file=args.config)
    except SettingsError as e:
        print(f"esdb config: invalid configuration: {e}", file=sys.stderr)
        return 2
    print(config_json(configuration) if args.json else config_lines(configuration))
    return 0


def config_lines(configuration: Configuration) -> str:
    """One `ESDB_NAME=value  # source` line per setting, values quoted for a shell."""
    config_file = configuration.config_file
    lines = [] if config_file is None else [f"# config file: {config_file}"]
    for name in SETTING_NAMES:
        value = shlex.quote(env_text(configuration.value(name)))
        lines.append(f"{variable(name)}={value}  # {configuration.sources[name]}")
    return "\n".join(lines)


def config_json(configuration: Configuration) -> str:
    """The configuration as one JSON object: the file, and each setting's variable, typed
    value and source."""
    settings = {
        name: {
            "variable": variable(name),
            "value": _json_value(configuration.value(name)),
            "source": configuration.sources[name],
        }
        for name in SETTING_NAMES
    }
    config_file = configuration.config_file
    return json_line(
        {"config_file": None if config_file is None else str(config_file), "settings": settings}
    )


def _json_value(value: object) -> object:
    return str(value) if isinstance(value, Path) else value
