"""`Factory`: the eventsourcing library's infrastructure factory for esdb, configured from the
application's environment like the library's own persistence modules."""

from __future__ import annotations

import re
from typing import TypeVar

from eventsourcing.dcb.api import DCBRecorder
from eventsourcing.dcb.persistence import DCBInfrastructureFactory
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    InfrastructureFactory,
    ProcessRecorder,
)
from eventsourcing.utils import Environment, EnvType, resolve_topic

from esdb.client import (
    DEFAULT_URL,
    AlreadyExistsError,
    EsdbError,
    parse_connection_string,
)
from esdb.eventsourcing.datastore import EsdbDatastore
from esdb.eventsourcing.dcb import EsdbDCBRecorder
from esdb.eventsourcing.errors import persistence_error
from esdb.eventsourcing.recorders import (
    EsdbAggregateRecorder,
    EsdbApplicationRecorder,
    EsdbProcessRecorder,
    EsdbTrackingRecorder,
)
from esdb.eventsourcing.snapshots import EsdbSnapshotRecorder

T = TypeVar("T")

DEFAULT_STORE = "default"
_NOT_IN_STORE_NAMES = re.compile(r"[^A-Za-z0-9_-]")


class EsdbFactory(
    InfrastructureFactory[EsdbTrackingRecorder], DCBInfrastructureFactory[EsdbTrackingRecorder]
):
    """Recorders on one esdb store, sharing one connection; also the library's DCB factory
    (`dcb_recorder`, for a `DCBApplication`).

    Environment (each also read with the application's name as a prefix, e.g.
    `DOGSCHOOL_ESDB_STORE`): `ESDB_URL`, a NATS URL or `esdb://` connection string (default
    `nats://127.0.0.1:4222`); `ESDB_STORE`, the store, created when missing (default: the
    connection string's `store`, else the application's name); `ESDB_SNAPSHOT_KEEP_LAST`,
    how many snapshots to keep per aggregate (default: all)."""

    ESDB_URL = "ESDB_URL"
    ESDB_STORE = "ESDB_STORE"
    ESDB_SNAPSHOT_KEEP_LAST = "ESDB_SNAPSHOT_KEEP_LAST"

    aggregate_recorder_class = EsdbAggregateRecorder
    application_recorder_class = EsdbApplicationRecorder
    tracking_recorder_class = EsdbTrackingRecorder
    process_recorder_class = EsdbProcessRecorder

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        url = self.env.get(self.ESDB_URL) or DEFAULT_URL
        try:
            in_url = parse_connection_string(url).store
        except ValueError as e:
            msg = f"{self.ESDB_URL} is not usable: {e}"
            raise OSError(msg) from e
        store = self.env.get(self.ESDB_STORE) or in_url or store_name(self.env.name)
        self.snapshot_keep_last = self._keep_last()
        try:
            self.datastore = EsdbDatastore.connect(url, store)
        except EsdbError as e:
            raise persistence_error(e) from e
        try:
            self.datastore.client.create_store(store)
        except AlreadyExistsError:
            pass
        except EsdbError as e:
            self.datastore.close()
            raise persistence_error(e) from e

    def _keep_last(self) -> int | None:
        value = (self.env.get(self.ESDB_SNAPSHOT_KEEP_LAST) or "").strip()
        if not value:
            return None
        if not value.isdigit() or int(value) < 1:
            msg = f"{self.ESDB_SNAPSHOT_KEEP_LAST}={value!r} is not a whole number >= 1"
            raise OSError(msg)
        return int(value)

    @property
    def store(self) -> str:
        """The store this factory's recorders use."""
        return self.datastore.store

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        """Events in streams for `"events"`; for any other purpose (the library's is
        `"snapshots"`), records in the snapshot service under that name."""
        if purpose == "events":
            return self.aggregate_recorder_class(self.datastore)
        return EsdbSnapshotRecorder(
            self.datastore, source=purpose, keep_last=self.snapshot_keep_last
        )

    def application_recorder(self) -> ApplicationRecorder:
        cls: type[EsdbApplicationRecorder] = self.application_recorder_class
        topic = self.env.get(self.APPLICATION_RECORDER_TOPIC)
        if topic:
            cls = _subclass(resolve_topic(topic), EsdbApplicationRecorder)
        return cls(self.datastore)

    def tracking_recorder(
        self, tracking_recorder_class: type[EsdbTrackingRecorder] | None = None
    ) -> EsdbTrackingRecorder:
        cls = tracking_recorder_class
        if cls is None:
            topic = self.env.get(self.TRACKING_RECORDER_TOPIC)
            cls = resolve_topic(topic) if topic else self.tracking_recorder_class
        return _subclass(cls, EsdbTrackingRecorder)(self.datastore)

    def process_recorder(self) -> ProcessRecorder:
        cls: type[EsdbProcessRecorder] = self.process_recorder_class
        topic = self.env.get(self.PROCESS_RECORDER_TOPIC)
        if topic:
            cls = _subclass(resolve_topic(topic), EsdbProcessRecorder)
        return cls(self.datastore)

    def dcb_recorder(self) -> DCBRecorder:
        """The store's DCB events (tagged, in its `$dcb` stream; docs/dcb.md)."""
        return EsdbDCBRecorder(self.datastore)

    def close(self) -> None:
        """Close the connection: the recorders and their subscriptions stop working."""
        self.datastore.close()


def store_name(application_name: str) -> str:
    """The store of an application that names none: its name, made a valid store name."""
    name = _NOT_IN_STORE_NAMES.sub("_", application_name)[:64].lstrip("_-")
    return name or DEFAULT_STORE


def _subclass(cls: object, base: type[T]) -> type[T]:
    if not (isinstance(cls, type) and issubclass(cls, base)):
        msg = f"{cls!r} is not a subclass of {base.__name__}"
        raise TypeError(msg)
    return cls
