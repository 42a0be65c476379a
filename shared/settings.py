"""Typed settings from `ESDB_*` environment variables, validated at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import msgspec

DURABILITY_MODES = ("fsync", "interval", "memory")


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    """Everything a service needs to start."""

    nats_url: str = "nats://127.0.0.1:4222"
    data_dir: Path = Path("./esdb-data")
    node_id: str = "node1"
    durability: str = "fsync"
    replicas: int = 1
    default_store: str = "default"
    timeout_ms: int = 5000
    lease_ttl_s: float = 1.5
    max_event_bytes: int = 1 << 20
    max_events_per_append: int = 10_000
    max_read_limit: int = 10_000
    max_batch_events: int = 20_000
    max_request_bytes: int = 4 << 20
    image_every_entries: int = 10_000
    log_retain_entries: int = 1_000
    log_purge: bool = True
    log_level: str = "INFO"


_ENV_PREFIX = "ESDB_"


def _decode_path(type_: type, value: object) -> object:
    if type_ is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError(f"cannot convert {value!r} to {type_}")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from `ESDB_<FIELD>` variables over the defaults; raises `SettingsError`."""
    env = os.environ if environ is None else environ
    raw: dict[str, object] = {}
    for name in Settings.__struct_fields__:
        value = env.get(_ENV_PREFIX + name.upper())
        if value is not None:
            raw[name] = value
    try:
        settings = msgspec.convert(raw, Settings, strict=False, dec_hook=_decode_path)
    except msgspec.ValidationError as e:
        field = str(e).rsplit("$.", 1)[-1].rstrip("`")
        raise SettingsError(f"{_ENV_PREFIX}{field.upper()}: {e}") from e
    if settings.durability not in DURABILITY_MODES:
        raise SettingsError(
            f"{_ENV_PREFIX}DURABILITY must be one of {', '.join(DURABILITY_MODES)}, "
            f"not {settings.durability!r}"
        )
    if settings.replicas not in (1, 3, 5):
        raise SettingsError(f"{_ENV_PREFIX}REPLICAS must be 1, 3 or 5, not {settings.replicas}")
    return settings


def settings_environ(settings: Settings) -> dict[str, str]:
    """The `ESDB_*` variables that reproduce `settings` in a child process."""
    return {
        _ENV_PREFIX + name.upper(): str(getattr(settings, name))
        for name in Settings.__struct_fields__
    }
