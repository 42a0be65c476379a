"""Settings: `ESDB_*` variables over a config file over the defaults, errors that name the
variable or the file and key, and `esdb config`."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import pytest

from esdb.cli.main import main
from esdb.shared.settings import (
    SETTING_NAMES,
    Settings,
    SettingsError,
    load_configuration,
    load_settings,
    settings_environ,
)


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


# ---- the settings ExESDB has: db type, store id, description and tags, idle times ----


def test_the_new_settings_have_defaults() -> None:
    settings = Settings()
    assert settings.db_type == "single"
    assert (settings.store_description, settings.store_tags) == ("", ())
    assert (settings.reader_idle_ms, settings.writer_idle_ms) == (10_000, 10_000)


def test_the_new_settings_come_from_variables_typed() -> None:
    settings = load_settings(
        {
            "ESDB_STORE_DESCRIPTION": "Orders of the EU shop",
            "ESDB_STORE_TAGS": " production, eu,,",
            "ESDB_READER_IDLE_MS": "2500",
            "ESDB_WRITER_IDLE_MS": "7500",
        }
    )
    assert settings.store_description == "Orders of the EU shop"
    assert settings.store_tags == ("production", "eu")
    assert (settings.reader_idle_ms, settings.writer_idle_ms) == (2500, 7500)
    assert load_settings({"ESDB_STORE_TAGS": ""}).store_tags == ()


@pytest.mark.parametrize(
    ("environ", "replicas"),
    [
        ({"ESDB_DB_TYPE": "single"}, 1),
        ({"ESDB_DB_TYPE": "cluster"}, 3),
        ({"ESDB_DB_TYPE": "cluster", "ESDB_REPLICAS": "5"}, 5),
        ({"ESDB_REPLICAS": "3"}, 3),
    ],
)
def test_the_db_type_and_the_replica_count_are_one_setting(
    environ: dict[str, str], replicas: int
) -> None:
    settings = load_settings(environ)
    assert settings.replicas == replicas
    assert settings.db_type == ("single" if replicas == 1 else "cluster")


@pytest.mark.parametrize(
    "environ",
    [
        {"ESDB_DB_TYPE": "single", "ESDB_REPLICAS": "3"},
        {"ESDB_DB_TYPE": "cluster", "ESDB_REPLICAS": "1"},
    ],
)
def test_a_db_type_that_contradicts_the_replicas_names_both(environ: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match=r"^ESDB_DB_TYPE: .* contradicts ESDB_REPLICAS"):
        load_settings(environ)


def test_store_id_is_the_default_store() -> None:
    assert load_settings({"ESDB_STORE_ID": "orders"}).default_store == "orders"
    same = {"ESDB_STORE_ID": "orders", "ESDB_DEFAULT_STORE": "orders"}
    assert load_settings(same).default_store == "orders"
    with pytest.raises(SettingsError, match="ESDB_STORE_ID and ESDB_DEFAULT_STORE differ"):
        load_settings({"ESDB_STORE_ID": "orders", "ESDB_DEFAULT_STORE": "default"})


# ---- every setting is checked, and the error names its variable ----

INVALID = {
    "nats_url": [
        "",
        "127.0.0.1:4222",
        "http://host:4222",
        "nats://host:99999",
        "nats://a, nats://b",
    ],
    "data_dir": [""],
    "node_id": ["", "node 1", "node.1", "-node", "n" * 65],
    "host": ["", " 10.0.0.1", "nats://10.0.0.1"],
    "join": ["host:99999", "a b", ":6222", "h:x", "h:0"],
    "nats_port": ["-1", "65536", "x"],
    "cluster_port": ["70000", "route"],
    "durability": ["sometimes"],
    "db_type": ["both", "Single"],
    "replicas": ["2", "0", "three"],
    "default_store": ["", "my.store", "_private"],
    "store_description": [],  # any text is a description
    "store_tags": [],  # any comma-separated list is tags
    "timeout_ms": ["0", "-5", "1.5"],
    "lease_ttl_s": ["0", "-1", "nan", "inf", "soon"],
    "reader_idle_ms": ["0", "x"],
    "writer_idle_ms": ["-1", ""],
    "max_event_bytes": ["0"],
    "max_events_per_append": ["0"],
    "max_read_limit": ["0", ""],
    "max_batch_events": ["0"],
    "max_request_bytes": ["-1"],
    "max_stream_bytes": ["0", "501"],
    "max_timeout_ms": ["0"],
    "image_every_entries": ["0"],
    "log_retain_entries": ["-1"],
    "scavenge_interval_s": ["-1", "often"],
    "lmdb_map_bytes": ["1000", str(1 << 47), "big"],
    "tls_ca_file": ["/no/such/ca.pem"],
    "system_user_file": ["/no/such/system-user"],
    "log_purge": ["maybe", "yes"],
    "log_level": ["LOUD", ""],
    "log_format": ["yaml", "JSON", ""],
    "metrics_host": ["", " 127.0.0.1", "http://localhost"],
    "metrics_port": ["-1", "65536", "http"],
    "http_url_file": ["/no/such/dir/gateway.http"],
    "otlp_endpoint": ["collector:4318", "grpc://collector:4317", "http://", "http://h:port"],
    "ui": ["maybe", "on"],
    "ui_host": ["", " 127.0.0.1", "http://localhost"],
    "ui_port": ["-1", "65536", "web"],
}


def test_every_setting_has_its_invalid_values_listed() -> None:
    assert set(INVALID) == set(SETTING_NAMES)


@pytest.mark.parametrize(
    ("variable", "value"),
    [(f"ESDB_{name.upper()}", value) for name, values in INVALID.items() for value in values],
)
def test_an_invalid_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{variable}: "):
        load_settings({variable: value})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ESDB_NATS_URL", "nats://a:4222,tls://b:4222,ws://c,wss://user:pw@d:443"),
        ("ESDB_NODE_ID", "n" * 64),
        ("ESDB_LOG_LEVEL", "debug"),
        ("ESDB_LOG_PURGE", "0"),
        ("ESDB_LOG_RETAIN_ENTRIES", "0"),
        ("ESDB_STORE_DESCRIPTION", ""),
        ("ESDB_METRICS_PORT", "0"),
        ("ESDB_METRICS_PORT", "65535"),
        ("ESDB_METRICS_HOST", "0.0.0.0"),
        ("ESDB_METRICS_HOST", "::"),
        ("ESDB_OTLP_ENDPOINT", ""),
        ("ESDB_OTLP_ENDPOINT", "https://otel.example:4318/"),
        ("ESDB_UI", "false"),
        ("ESDB_UI_PORT", "0"),
        ("ESDB_UI_HOST", "0.0.0.0"),
    ],
)
def test_valid_edge_values_are_accepted(variable: str, value: str) -> None:
    load_settings({variable: value})


def test_every_invalid_setting_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({"ESDB_TIMEOUT_MS": "0", "ESDB_NODE_ID": "a b", "ESDB_REPLICAS": "2"})
    assert all(v in str(raised.value) for v in ("ESDB_TIMEOUT_MS", "ESDB_NODE_ID", "ESDB_REPLICAS"))


# ---- the config file, under the variables ----


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "esdb.toml"
    path.write_text(text)
    return path


def test_the_config_file_named_by_esdb_config_sets_what_variables_do_not(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        'node_id = "node2"\ndata_dir = "/var/lib/esdb"\ntimeout_ms = 8000\nlease_ttl_s = 2\n'
        'store_id = "orders"\nstore_tags = ["production", "eu"]\ndb_type = "cluster"\n'
        "log_purge = false\n",
    )

    configuration = load_configuration({"ESDB_CONFIG": str(path), "ESDB_TIMEOUT_MS": "9000"})

    assert configuration.settings == Settings(
        node_id="node2",
        data_dir=Path("/var/lib/esdb"),
        timeout_ms=9000,
        lease_ttl_s=2.0,
        default_store="orders",
        store_tags=("production", "eu"),
        replicas=3,
        log_purge=False,
    )
    assert configuration.config_file == path
    sources = configuration.sources
    assert (sources["node_id"], sources["timeout_ms"], sources["nats_url"]) == (
        "file",
        "env",
        "default",
    )
    assert sources["db_type"] == sources["replicas"] == "file"


def test_a_variable_overrides_the_files_db_type(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'db_type = "cluster"\nreplicas = 5\n')
    configuration = load_configuration({"ESDB_CONFIG": str(path), "ESDB_DB_TYPE": "single"})
    assert configuration.settings.replicas == 1
    assert configuration.sources["replicas"] == configuration.sources["db_type"] == "env"
    # A cluster keeps the size the file gave it.
    assert load_settings({"ESDB_CONFIG": str(path), "ESDB_DB_TYPE": "cluster"}).replicas == 5


def test_the_config_argument_overrides_esdb_config(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'node_id = "from-file"\n')
    environ = {"ESDB_CONFIG": str(tmp_path / "other.toml")}
    assert load_configuration(environ, config_file=path).settings.node_id == "from-file"


def test_an_empty_esdb_config_means_no_file() -> None:
    assert load_configuration({"ESDB_CONFIG": ""}).config_file is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("timeout_ms = 0\n", r"timeout_ms in .*esdb\.toml: must be above 0"),
        ('timeout_ms = "5000"\n', r"timeout_ms in .*esdb\.toml: Expected `int`, got `str`"),
        ("data_dir = 5\n", r"data_dir in .*esdb\.toml: Expected `str`, got `int`"),
        ('store_tags = "a,b"\n', r"store_tags in .*esdb\.toml: Expected `array`"),
        ('store_tags = ["a", " b"]\n', r"store_tags in .*esdb\.toml: a tag must be"),
        ("timeout = 5\n", r"timeout in .*esdb\.toml: not a setting"),
        ("[writer]\nnode_id = 'x'\n", r"writer in .*esdb\.toml: not a setting"),
        ('db_type = "single"\nreplicas = 3\n', r"db_type in .*: single contradicts replicas in"),
        ('store_id = "a"\ndefault_store = "b"\n', r"default_store in .* and store_id in .* differ"),
        ("timeout_ms = \n", r"^ESDB_CONFIG=.*esdb\.toml: not valid TOML"),
    ],
)
def test_an_invalid_config_file_value_names_the_key_and_file(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write_config(tmp_path, text)
    with pytest.raises(SettingsError, match=message):
        load_settings({"ESDB_CONFIG": str(path)})


def test_a_missing_config_file_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(
        SettingsError, match=f"^ESDB_CONFIG={re.escape(str(missing))}: No such file"
    ):
        load_settings({"ESDB_CONFIG": str(missing)})
    with pytest.raises(
        SettingsError, match=f"^config file {re.escape(str(missing))}: No such file"
    ):
        load_configuration({}, config_file=missing)


# ---- child processes ----


def test_settings_environ_carries_the_new_settings() -> None:
    settings = Settings(
        replicas=3,
        default_store="orders",
        store_description="Orders, EU",
        store_tags=("production", "eu"),
        reader_idle_ms=1,
        log_purge=False,
    )
    environ = settings_environ(settings)
    assert environ["ESDB_DB_TYPE"] == "cluster"
    assert environ["ESDB_STORE_TAGS"] == "production,eu"
    assert load_settings(environ) == settings


def test_a_child_ignores_what_it_inherits_that_its_settings_contradict(tmp_path: Path) -> None:
    settings = Settings(replicas=1, default_store="orders")
    inherited = {
        "ESDB_DB_TYPE": "cluster",
        "ESDB_STORE_ID": "elsewhere",
        "ESDB_CONFIG": str(tmp_path / "gone.toml"),
    }
    assert load_settings({**inherited, **settings_environ(settings)}) == settings


# ---- esdb config ----


def test_esdb_config_prints_each_setting_with_its_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, 'store_description = "Orders of the EU shop"\nreplicas = 3\n')
    for name in [name for name in os.environ if name.startswith("ESDB_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("ESDB_NODE_ID", "node2")

    assert main(["config", "--config", str(path)]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"# config file: {path}"
    assert len(lines[1:]) == len(SETTING_NAMES)
    assert "ESDB_NODE_ID=node2  # env" in lines
    assert "ESDB_STORE_DESCRIPTION='Orders of the EU shop'  # file" in lines
    assert "ESDB_DB_TYPE=cluster  # file" in lines
    assert "ESDB_TIMEOUT_MS=5000  # default" in lines
    # The lines are shell assignments that reproduce the settings.
    environ = {
        name: shlex.split(value)[0]
        for name, value in (line.split("  # ")[0].split("=", 1) for line in lines[1:])
    }
    assert (
        load_settings(environ)
        == load_configuration({"ESDB_NODE_ID": "node2"}, config_file=path).settings
    )


def test_esdb_config_json_has_typed_values(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [name for name in os.environ if name.startswith("ESDB_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("ESDB_STORE_TAGS", "a,b")

    assert main(["config", "--json"]) == 0

    printed = json.loads(capsys.readouterr().out)
    assert printed["config_file"] is None
    assert list(printed["settings"]) == list(SETTING_NAMES)
    assert printed["settings"]["store_tags"] == {
        "variable": "ESDB_STORE_TAGS",
        "value": ["a", "b"],
        "source": "env",
    }
    assert printed["settings"]["replicas"]["value"] == 1
    assert printed["settings"]["data_dir"]["value"] == "esdb-data"


def test_esdb_config_exits_2_naming_an_invalid_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ESDB_REPLICAS", "2")
    assert main(["config"]) == 2
    assert "ESDB_REPLICAS" in capsys.readouterr().err


# ---- docs/configuration.md ----


def test_the_docs_list_every_setting() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    rows = re.findall(r"^\| `(ESDB_[A-Z_]+)`", docs, flags=re.MULTILINE)
    assert rows == [f"ESDB_{name.upper()}" for name in SETTING_NAMES] + ["ESDB_CONFIG"]
