"""Typed settings from `ESDB_*` environment variables over an optional TOML config file,
validated at start with errors that name the variable or the file and key."""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec

DURABILITY_MODES = ("fsync", "interval", "memory")
DB_TYPES = ("single", "cluster")
REPLICA_COUNTS = (1, 3, 5)
NATS_URL_SCHEMES = ("nats", "tls", "ws", "wss")
LOG_LEVELS = tuple(logging.getLevelNamesMapping())
LOG_FORMATS = ("text", "json")
# The gateway's rule for store names: node ids and store names are NATS subject tokens.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
STREAM_ID_CEILING = 500
"""The longest stream id LMDB can key: a key holds 511 bytes, a stream key adds 9 to the id."""

ENV_PREFIX = "ESDB_"
CONFIG_VARIABLE = "ESDB_CONFIG"
"""Names the TOML config file; unset or empty means none."""
ALIASES = {"store_id": "default_store"}
"""Other names a setting answers to, as ExESDB spells them (`ESDB_STORE_ID`)."""

DbType = Literal["single", "cluster"]
Source = Literal["default", "file", "env"]


class SettingsError(ValueError):
    """A setting is invalid; the message names the variable, or the config file and key."""


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    """Everything a service needs to start; docs/configuration.md explains each setting."""

    nats_url: str = "nats://127.0.0.1:4222"
    data_dir: Path = Path("./esdb-data")
    node_id: str = "node1"
    host: str = "127.0.0.1"
    join: tuple[str, ...] = ()
    nats_port: int = 4222
    cluster_port: int = 6222
    durability: str = "fsync"
    replicas: int = 1
    default_store: str = "default"
    store_description: str = ""
    store_tags: tuple[str, ...] = ()
    timeout_ms: int = 5000
    lease_ttl_s: float = 1.5
    reader_idle_ms: int = 10_000
    writer_idle_ms: int = 10_000
    max_event_bytes: int = 1 << 20
    max_events_per_append: int = 10_000
    max_read_limit: int = 10_000
    max_batch_events: int = 20_000
    max_request_bytes: int = 4 << 20
    max_stream_bytes: int = STREAM_ID_CEILING
    max_timeout_ms: int = 60_000
    image_every_entries: int = 10_000
    log_retain_entries: int = 1_000
    log_purge: bool = True
    scavenge_interval_s: int = 3600
    lmdb_map_bytes: int = 64 << 30
    tls_ca_file: str = ""
    system_user_file: str = ""
    log_level: str = "INFO"
    log_format: str = "text"
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    http_url_file: str = ""
    otlp_endpoint: str = ""
    ui: bool = True
    ui_host: str = "127.0.0.1"
    ui_port: int = 2113

    @property
    def db_type(self) -> DbType:
        """`single` with one replica, else `cluster`: the replica count decides."""
        return "single" if self.replicas == 1 else "cluster"


def advertised_host(settings: Settings) -> str:
    """`host:port` where this node's clients connect, as the cluster lists it: the host name
    of the machine where the node listens on every address."""
    host = socket.gethostname() if settings.host in ("0.0.0.0", "::") else settings.host
    return f"{host}:{settings.nats_port}"


_FIELDS = {info.name: info.type for info in msgspec.structs.fields(Settings)}


def _setting_names() -> tuple[str, ...]:
    names = list(_FIELDS)
    # db_type is an input too, but a view of `replicas`, so the two never disagree.
    names.insert(names.index("replicas"), "db_type")
    return tuple(names)


SETTING_NAMES = _setting_names()
"""Every setting, in the order `esdb config` and the docs list them."""


def variable(name: str) -> str:
    """The environment variable of setting `name`."""
    return ENV_PREFIX + name.upper()


def env_text(value: object) -> str:
    """`value` as its environment variable spells it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


@dataclass(frozen=True)
class Configuration:
    """The effective settings and where each came from."""

    settings: Settings
    sources: Mapping[str, Source]
    config_file: Path | None = None

    def value(self, name: str) -> Any:
        """The typed value of setting `name` (one of `SETTING_NAMES`)."""
        return getattr(self.settings, name)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from `ESDB_<NAME>` variables over the config file named by `ESDB_CONFIG` over
    the defaults; raises `SettingsError`."""
    return load_configuration(environ).settings


def load_configuration(
    environ: Mapping[str, str] | None = None, *, config_file: Path | None = None
) -> Configuration:
    """Like `load_settings`, with each setting's source; `config_file` overrides
    `ESDB_CONFIG`. Raises `SettingsError` naming every invalid setting."""
    env = os.environ if environ is None else environ
    layers: list[_Layer] = []
    if config_file is not None:
        layers.append(_file_layer(config_file, f"config file {config_file}"))
    elif env.get(CONFIG_VARIABLE):
        config_file = Path(env[CONFIG_VARIABLE])
        layers.append(_file_layer(config_file, f"{CONFIG_VARIABLE}={config_file}"))
    layers.append(_env_layer(env))

    values: dict[str, Any] = {}
    sources: dict[str, Source] = dict.fromkeys(SETTING_NAMES, "default")
    problems: list[str] = []
    for layer in layers:
        problems += layer.problems
        typed = layer.typed()
        problems += typed.problems
        if "db_type" in typed.values:
            db_type = typed.values.pop("db_type")
            typed.values.setdefault("replicas", _replicas_of(db_type, values.get("replicas")))
        for name, value in typed.values.items():
            values[name] = value
            sources[name] = layer.source
    if problems:
        raise SettingsError("; ".join(problems))
    sources["db_type"] = sources["replicas"]
    return Configuration(settings=Settings(**values), sources=sources, config_file=config_file)


def settings_environ(settings: Settings) -> dict[str, str]:
    """The `ESDB_*` variables that reproduce `settings` in a child process, whatever other
    `ESDB_*` variables it inherits: aliases agree, and no config file is read again."""
    environ = {variable(name): env_text(getattr(settings, name)) for name in SETTING_NAMES}
    for alias, name in ALIASES.items():
        environ[variable(alias)] = environ[variable(name)]
    environ[CONFIG_VARIABLE] = ""
    return environ


# ---- reading one source ----


@dataclass
class _Typed:
    values: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


@dataclass
class _Layer:
    """The raw settings one source gives, by setting name, with the label errors use."""

    source: Source
    raw: dict[str, tuple[str, object]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def typed(self) -> _Typed:
        typed = _Typed()
        for name, (label, raw) in self.raw.items():
            try:
                value = _convert(name, raw, strict=self.source != "env")
            except msgspec.ValidationError as e:
                typed.problems.append(f"{label}: {e}")
                continue
            problem = _CHECKS.get(name, _no_check)(value)
            if problem is not None:
                typed.problems.append(f"{label}: {problem}")
            else:
                typed.values[name] = value
        if "db_type" in typed.values and "replicas" in typed.values:
            db_type, replicas = typed.values["db_type"], typed.values["replicas"]
            if _replicas_of(db_type, replicas) != replicas:
                typed.problems.append(
                    f"{self.raw['db_type'][0]}: {db_type} contradicts "
                    f"{self.raw['replicas'][0]} = {replicas} "
                    "(single runs 1 replica, cluster 3 or 5)"
                )
        return typed

    def put(self, name: str, label: str, raw: object) -> None:
        """Take `raw` for setting `name` (or an alias of it), unless it contradicts."""
        canonical = ALIASES.get(name, name)
        if canonical in self.raw and self.raw[canonical][1] != raw:
            other = self.raw[canonical][0]
            self.problems.append(
                f"{label} and {other} differ ({raw!r}, {self.raw[canonical][1]!r})"
            )
            return
        self.raw[canonical] = (label, raw)


def _env_layer(env: Mapping[str, str]) -> _Layer:
    layer = _Layer("env")
    for name in (*SETTING_NAMES, *ALIASES):
        raw = env.get(variable(name))
        if raw is not None:
            layer.put(name, variable(name), raw)
    return layer


def _file_layer(path: Path, named_by: str) -> _Layer:
    try:
        with path.open("rb") as file:
            table = tomllib.load(file)
    except OSError as e:
        raise SettingsError(f"{named_by}: {e.strerror or e}") from e
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"{named_by}: not valid TOML: {e}") from e
    layer = _Layer("file")
    for key, raw in table.items():
        label = f"{key} in {path}"
        if key in SETTING_NAMES or key in ALIASES:
            layer.put(key, label, raw)
        else:
            layer.problems.append(f"{label}: not a setting (see docs/configuration.md)")
    return layer


def _convert(name: str, raw: object, *, strict: bool) -> Any:
    if name == "db_type":
        return msgspec.convert(raw, str, strict=strict)
    if name in ("store_tags", "join") and isinstance(raw, str) and not strict:
        raw = [tag.strip() for tag in raw.split(",") if tag.strip()]
    return msgspec.convert(raw, _FIELDS[name], strict=strict, dec_hook=_decode_path)


def _decode_path(type_: type, value: object) -> object:
    if type_ is Path:
        if not isinstance(value, str):
            raise TypeError(f"Expected `str`, got `{type(value).__name__}`")
        if not value:
            raise ValueError("must not be empty")
        return Path(value)
    raise NotImplementedError(f"cannot convert {value!r} to {type_}")


def _replicas_of(db_type: DbType, replicas: int | None) -> int:
    """The replica count `db_type` means, keeping a cluster's own size when it has one."""
    if db_type == "single":
        return 1
    return replicas if replicas in REPLICA_COUNTS[1:] else REPLICA_COUNTS[1]


# ---- range checks: a problem, or None ----


def _no_check(value: Any) -> str | None:
    return None


def _one_of(choices: tuple[object, ...]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value in choices:
            return None
        return f"must be one of {', '.join(map(str, choices))}, not {value!r}"

    return check


def _positive(value: float) -> str | None:
    return None if value > 0 and math.isfinite(value) else f"must be above 0, not {value}"


def _stream_id_bytes(value: int) -> str | None:
    if 1 <= value <= STREAM_ID_CEILING:
        return None
    return f"must be 1 to {STREAM_ID_CEILING} (an LMDB key holds the id), not {value}"


def _not_negative(value: int) -> str | None:
    return None if value >= 0 else f"must be 0 or more, not {value}"


def _map_size(value: int) -> str | None:
    if 1 << 20 <= value <= 1 << 46:
        return None
    return f"must be from 1 MiB to 64 TiB (bytes), not {value}"


def _readable_file(value: str) -> str | None:
    if not value or Path(value).is_file():
        return None
    return f"{value!r} is not a file"


def _in_a_directory(value: str) -> str | None:
    if not value or Path(value).parent.is_dir():
        return None
    return f"{value!r} is not in an existing directory"


def _name(value: str) -> str | None:
    if NAME.fullmatch(value):
        return None
    return f"must be 1-64 letters, digits, '_' or '-', not starting with '_' or '-', not {value!r}"


def _nats_urls(value: str) -> str | None:
    for url in value.split(","):
        try:
            parts = urlsplit(url)
            # urlsplit drops surrounding spaces; the NATS client would not.
            valid = (
                url.split() == [url] and parts.scheme in NATS_URL_SCHEMES and bool(parts.hostname)
            )
            _ = parts.port  # raises ValueError for a port that is not one
        except ValueError:
            valid = False
        if not valid:
            schemes = "|".join(NATS_URL_SCHEMES)
            return f"{url!r} is not a NATS URL ({schemes}://host[:port], comma-separated)"
    return None


def _log_level(value: str) -> str | None:
    if value.upper() in LOG_LEVELS:
        return None
    return f"must be one of {', '.join(LOG_LEVELS)}, not {value!r}"


def _port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else f"must be a TCP port 0-65535 (0: none), not {value}"


def _host(value: str) -> str | None:
    if value and value == value.strip() and " " not in value and "/" not in value:
        return None
    return f"must be a host name or address to listen on, not {value!r}"


def _http_url(value: str) -> str | None:
    if not value:
        return None
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError for a port that is not one
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        valid = False
    return None if valid else f"{value!r} is not an http(s)://host[:port] URL"


def _members(value: tuple[str, ...]) -> str | None:
    for member in value:
        host, _, port = member.rpartition(":") if ":" in member else (member, "", "")
        if _host(host) is not None or (port and not (port.isdigit() and 0 < int(port) < 65536)):
            return f"each member must be ADDR or ADDR:PORT (a host name or address), not {member!r}"
    return None


def _tags(value: tuple[str, ...]) -> str | None:
    for tag in value:
        if not tag or tag != tag.strip() or "," in tag:
            return f"a tag must be non-empty, without commas or surrounding spaces, not {tag!r}"
    return None


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "nats_url": _nats_urls,
    "node_id": _name,
    "host": _host,
    "join": _members,
    "nats_port": _port,
    "cluster_port": _port,
    "durability": _one_of(DURABILITY_MODES),
    "db_type": _one_of(DB_TYPES),
    "replicas": _one_of(REPLICA_COUNTS),
    "default_store": _name,
    "store_tags": _tags,
    "timeout_ms": _positive,
    "lease_ttl_s": _positive,
    "reader_idle_ms": _positive,
    "writer_idle_ms": _positive,
    "max_event_bytes": _positive,
    "max_events_per_append": _positive,
    "max_read_limit": _positive,
    "max_batch_events": _positive,
    "max_request_bytes": _positive,
    "max_stream_bytes": _stream_id_bytes,
    "max_timeout_ms": _positive,
    "image_every_entries": _positive,
    "log_retain_entries": _not_negative,
    "scavenge_interval_s": _not_negative,
    "lmdb_map_bytes": _map_size,
    "tls_ca_file": _readable_file,
    "system_user_file": _readable_file,
    "log_level": _log_level,
    "log_format": _one_of(LOG_FORMATS),
    "metrics_host": _host,
    "metrics_port": _port,
    "http_url_file": _in_a_directory,
    "otlp_endpoint": _http_url,
    "ui_host": _host,
    "ui_port": _port,
}
