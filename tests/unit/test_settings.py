"""Settings: `ESDB_*` variables over the defaults, and errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from esdb.shared.settings import Settings, SettingsError, load_settings, settings_environ


def test_no_variables_give_the_defaults() -> None:
    assert load_settings({}) == Settings()


def test_variables_override_the_defaults_with_typed_values() -> None:
    settings = load_settings(
        {
            "ESDB_NATS_URL": "nats://10.0.0.5:4333",
            "ESDB_DATA_DIR": "/var/lib/esdb",
            "ESDB_NODE_ID": "node3",
            "ESDB_DURABILITY": "memory",
            "ESDB_REPLICAS": "3",
            "ESDB_LEASE_TTL_S": "1.5",
            "ESDB_MAX_BATCH_EVENTS": "500",
        }
    )

    assert settings == Settings(
        nats_url="nats://10.0.0.5:4333",
        data_dir=Path("/var/lib/esdb"),
        node_id="node3",
        durability="memory",
        replicas=3,
        lease_ttl_s=1.5,
        max_batch_events=500,
    )
    assert isinstance(settings.data_dir, Path)


def test_other_variables_are_ignored() -> None:
    assert load_settings({"ESDB_NO_SUCH_SETTING": "x", "NODE_ID": "elsewhere"}) == Settings()


def test_the_process_environment_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESDB_NODE_ID", "from-env")
    assert load_settings().node_id == "from-env"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ESDB_REPLICAS", "three"),
        ("ESDB_TIMEOUT_MS", "1.5"),
        ("ESDB_LEASE_TTL_S", "soon"),
        ("ESDB_MAX_READ_LIMIT", ""),
    ],
)
def test_a_value_of_the_wrong_type_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{variable}: "):
        load_settings({variable: value})


@pytest.mark.parametrize(
    ("variable", "value"),
    [("ESDB_DURABILITY", "sometimes"), ("ESDB_REPLICAS", "2")],
)
def test_a_value_out_of_range_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable) as raised:
        load_settings({variable: value})
    assert value in str(raised.value)


def test_settings_environ_reproduces_the_settings() -> None:
    settings = Settings(
        data_dir=Path("/tmp/esdb-node2"),
        node_id="node2",
        durability="interval",
        replicas=5,
        lease_ttl_s=0.75,
        max_event_bytes=4096,
    )

    environ = settings_environ(settings)

    assert all(name.startswith("ESDB_") for name in environ)
    assert load_settings(environ) == settings
