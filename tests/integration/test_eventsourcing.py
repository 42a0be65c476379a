"""`PERSISTENCE_MODULE=esdb.eventsourcing` against a real stack: the eventsourcing library's
own recorder test cases, its example application, and the dog school from its docs.

Every test gets a fresh store (the library's cases expect an empty recorder), removed after
the test; the library's test case classes are used through their module, so that pytest does
not collect the abstract ones themselves.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar
from uuid import UUID

import pytest
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    DataError,
    InfrastructureFactory,
    IntegrityError,
    OperationalError,
    ProcessRecorder,
    StoredEvent,
    Tracking,
    TrackingRecorder,
)
from eventsourcing.system import ProcessApplication, SingleThreadedRunner, System
from eventsourcing.tests import application as app_cases
from eventsourcing.tests import persistence as cases
from eventsourcing.tests import projection as projection_cases
from eventsourcing.utils import Environment, get_topic

from esdb.benchmarks.es_app import Dog
from esdb.client import NewEvent, NotFoundError, SyncClient
from esdb.eventsourcing import EsdbFactory
from esdb.eventsourcing.recorders import (
    EsdbAggregateRecorder,
    EsdbApplicationRecorder,
    EsdbProcessRecorder,
    EsdbTrackingRecorder,
)
from esdb.eventsourcing.snapshots import EsdbSnapshotRecorder
from tests.stack import Stack

MODULE = "esdb.eventsourcing"
DEADLINE_S = 20.0


def _store() -> str:
    return f"es-{uuid.uuid4().hex[:12]}"


def _remove_stores(url: str, stores: list[str]) -> None:
    with SyncClient.connect(url) as client:
        for store in stores:
            with contextlib.suppress(NotFoundError):
                client.remove_store(store)


class OnEsdb:
    """Mixed into the library's test cases: `self.url` is the session's stack, `self.store`
    a store of this test's own, and `new_factory()` an `EsdbFactory` on it (closed after)."""

    url: str
    store: str

    @pytest.fixture(autouse=True)
    def _fresh_store(self, stack: Stack) -> Iterator[None]:
        self.url = stack.url
        self.store = _store()
        self._factories: list[EsdbFactory] = []
        self._stores = [self.store]
        yield
        for factory in self._factories:
            factory.close()
        _remove_stores(self.url, self._stores)

    def environment(self, **more: str) -> dict[str, str]:
        """The environment of an application (or factory) on this test's store."""
        return {
            "PERSISTENCE_MODULE": MODULE,
            "ESDB_URL": self.url,
            "ESDB_STORE": self.store,
            **more,
        }

    def new_factory(self) -> EsdbFactory:
        """A new factory on this test's store."""
        factory = EsdbFactory(Environment(env=self.environment()))
        self._factories.append(factory)
        return factory

    def another_store(self) -> str:
        """One more fresh store, removed after the test too."""
        store = _store()
        self._stores.append(store)
        return store


class TestAggregateRecorder(OnEsdb, cases.AggregateRecorderTestCase):
    def create_recorder(self) -> AggregateRecorder:
        return self.new_factory().aggregate_recorder()


class TestSnapshotRecorder(OnEsdb, cases.AggregateRecorderTestCase):
    """Snapshots live in the snapshot service; they pass the same case as events."""

    def create_recorder(self) -> AggregateRecorder:
        recorder = self.new_factory().aggregate_recorder(purpose="snapshots")
        assert isinstance(recorder, EsdbSnapshotRecorder)
        return recorder


class TestApplicationRecorder(OnEsdb, cases.ApplicationRecorderTestCase[ApplicationRecorder]):
    def create_recorder(self) -> ApplicationRecorder:
        return self.new_factory().application_recorder()

    def test_insert_subscribe(self) -> None:
        self.optional_test_insert_subscribe()

    def test_select_notifications_from_zero_or_below(self) -> None:
        recorder = self.create_recorder()
        recorder.insert_events([_stored(uuid.uuid4(), 1, "topic1")])
        recorder.insert_events([_stored(str(uuid.uuid4()), 1, "topic2")])
        self.assertEqual(len(recorder.select_notifications(0, 10)), 2)
        self.assertEqual(len(recorder.select_notifications(-1, 10)), 2)
        # String ids come back as strings, UUIDs as UUIDs.
        ids = [n.originator_id for n in recorder.select_notifications(None, 10)]
        self.assertEqual([type(i) for i in ids], [UUID, str])

    def test_events_of_several_aggregates_in_one_insert(self) -> None:
        recorder = self.create_recorder()
        first, second = uuid.uuid4(), uuid.uuid4()
        ids = recorder.insert_events(
            [_stored(first, 1, "a"), _stored(second, 1, "b"), _stored(first, 2, "c")]
        )
        # One atomic append: each aggregate's events are consecutive positions.
        self.assertEqual(ids, [1, 3, 2])
        notifications = recorder.select_notifications(None, 10)
        self.assertEqual([n.topic for n in notifications], ["a", "c", "b"])

    def test_a_cold_recorder_places_versions_by_the_stream(self) -> None:
        originator_id = uuid.uuid4()
        self.create_recorder().insert_events([_stored(originator_id, 1, "a")])
        # A new factory has learnt nothing about the stream yet.
        recorder = self.create_recorder()
        with self.assertRaises(IntegrityError):
            recorder.insert_events([_stored(originator_id, 1, "again")])
        with self.assertRaises(IntegrityError):
            recorder.insert_events([_stored(originator_id, 3, "gap")])
        self.assertEqual(recorder.insert_events([_stored(originator_id, 2, "b")]), [2])
        self.assertEqual(
            [e.originator_version for e in recorder.select_events(originator_id, gt=1)], [2]
        )

    def test_topics_are_event_types_and_states_json_when_they_are(self) -> None:
        recorder = self.create_recorder()
        originator_id = uuid.uuid4()
        recorder.insert_events(
            [
                _stored(originator_id, 1, "app:Dog.Registered", b'{"name":"Fido"}'),
                _stored(originator_id, 2, "app:Dog.TrickAdded", b"\x00\xffcipher"),
            ]
        )
        with SyncClient.connect(self.url, store=self.store) as client:
            events = client.read_stream(str(originator_id)).events
        self.assertEqual(
            [(e.event_type, e.content_type) for e in events],
            [
                ("app:Dog.Registered", "application/json"),
                ("app:Dog.TrickAdded", "application/octet-stream"),
            ],
        )
        self.assertEqual(events[0].json(), {"name": "Fido"})
        self.assertEqual(events[1].metadata_json()["originator_version"], 2)


class TestTrackingRecorder(OnEsdb, cases.TrackingRecorderTestCase):
    def create_recorder(self) -> TrackingRecorder:
        return self.new_factory().tracking_recorder()

    def test_concurrent_writers_of_one_record(self) -> None:
        # Two processes that both think they are first: one wins, one gets IntegrityError.
        first, second = self.create_recorder(), self.create_recorder()
        first.insert_tracking(Tracking("upstream", 1))
        second.insert_tracking(Tracking("upstream", 2))  # second had never read the stream
        with self.assertRaises(IntegrityError):
            first.insert_tracking(Tracking("upstream", 2))  # first's view of it is stale
        first.insert_tracking(Tracking("upstream", 3))
        self.assertEqual(second.max_tracking_id("upstream"), 3)


class TestProcessRecorder(OnEsdb, cases.ProcessRecorderTestCase):
    def create_recorder(self) -> ProcessRecorder:
        return self.new_factory().process_recorder()

    def test_tracking_records_are_not_notifications(self) -> None:
        recorder = self.create_recorder()
        originator_id = uuid.uuid4()
        ids = recorder.insert_events(
            [_stored(originator_id, 1, "topic1")], tracking=Tracking("upstream", 7)
        )
        recorder.insert_events([], tracking=Tracking("upstream", 8))
        self.assertEqual(ids, [1])
        notifications = recorder.select_notifications(None, 10)
        self.assertEqual([n.id for n in notifications], [1])
        self.assertEqual(recorder.max_notification_id(), 1)
        with recorder.subscribe() as subscription:
            self.assertEqual(next(subscription).id, 1)
            recorder.insert_events([_stored(originator_id, 2, "topic2")])
            # Position 2 is the tracking record of 8: skipped.
            self.assertEqual(next(subscription).id, 4)

    def test_events_and_tracking_are_written_together_or_not_at_all(self) -> None:
        recorder = self.create_recorder()
        originator_id = uuid.uuid4()
        recorder.insert_events([_stored(originator_id, 1, "a")], tracking=Tracking("up", 1))
        with self.assertRaises(IntegrityError):
            # The event conflicts: the tracking record is not written either.
            recorder.insert_events([_stored(originator_id, 1, "b")], tracking=Tracking("up", 2))
        self.assertEqual(recorder.max_tracking_id("up"), 1)
        with self.assertRaises(IntegrityError):
            # The tracking record conflicts: the event is not written either.
            recorder.insert_events([_stored(originator_id, 2, "b")], tracking=Tracking("up", 1))
        self.assertEqual(len(recorder.select_events(originator_id)), 1)


class TestNonInterleavingNotificationIDs(OnEsdb, cases.NonInterleavingNotificationIDsBaseCase):
    def create_recorder(self) -> ApplicationRecorder:
        return self.new_factory().application_recorder()


class TestInfrastructureFactory(OnEsdb, cases.InfrastructureFactoryTestCase[EsdbFactory]):
    def setUp(self) -> None:
        self.env = Environment("TestCase", self.environment())
        super().setUp()

    def expected_factory_class(self) -> type[EsdbFactory]:
        return EsdbFactory

    def expected_aggregate_recorder_class(self) -> type[AggregateRecorder]:
        return EsdbAggregateRecorder

    def expected_application_recorder_class(self) -> type[ApplicationRecorder]:
        return EsdbApplicationRecorder

    def expected_tracking_recorder_class(self) -> type[TrackingRecorder]:
        return EsdbTrackingRecorder

    class TrackingRecorderSubclass(EsdbTrackingRecorder):
        pass

    def tracking_recorder_subclass(self) -> type[TrackingRecorder]:
        return self.TrackingRecorderSubclass

    def expected_process_recorder_class(self) -> type[ProcessRecorder]:
        return EsdbProcessRecorder

    def test_the_store_is_created_and_named_by_the_application_by_default(self) -> None:
        store = self.another_store()
        env = Environment(store, {"ESDB_URL": self.url})
        factory = EsdbFactory(env)
        self._factories.append(factory)
        self.assertEqual(factory.store, store)
        with SyncClient.connect(self.url) as client:
            self.assertIn(store, [info.store for info in client.list_stores()])
        # A prefixed variable wins, as with the library's other modules.
        other = self.another_store()
        env = Environment("Named", {"ESDB_URL": self.url, "NAMED_ESDB_STORE": other})
        factory = EsdbFactory(env)
        self._factories.append(factory)
        self.assertEqual(factory.store, other)

    def test_a_bad_url_is_an_environment_error(self) -> None:
        with self.assertRaises(OSError):
            EsdbFactory(Environment(env={"ESDB_URL": "esdb://host?stor=x"}))
        with self.assertRaises(OSError):
            EsdbFactory(Environment(env={"ESDB_URL": self.url, "ESDB_SNAPSHOT_KEEP_LAST": "0"}))


class TestExampleApplication(OnEsdb, app_cases.ExampleApplicationTestCase):
    """The library's bank accounts example, with snapshots, configured by the process
    environment as the library's docs do it."""

    expected_factory_topic = get_topic(EsdbFactory)

    @pytest.fixture(autouse=True)
    def _environment(self, _fresh_store: None, monkeypatch: pytest.MonkeyPatch) -> None:
        for name, value in self.environment().items():
            monkeypatch.setenv(name, value)


class TestEventSourcedProjection(OnEsdb, projection_cases.EventSourcedProjectionTestCase):
    """The library's event-sourced projection: a subscription to one application (in one
    store) and a process recorder (in another) writing counters and tracking together."""

    env: ClassVar[dict[str, str]] = {}

    @pytest.fixture(autouse=True)
    def _two_stores(self, _fresh_store: None, monkeypatch: pytest.MonkeyPatch) -> None:
        env = {
            "PERSISTENCE_MODULE": MODULE,
            "ESDB_URL": self.url,
            "APPLICATION_ESDB_STORE": self.store,
            "COUNTERS_ESDB_STORE": self.another_store(),
        }
        monkeypatch.setattr(type(self), "env", env)


# The dog school of the eventsourcing library's docs (its `Dog` is the bench's), and a process
# application following it.


class DogSchool(Application[UUID]):
    is_snapshotting_enabled = True

    def register_dog(self, name: str) -> UUID:
        dog = Dog(name)
        self.save(dog)
        return dog.id

    def add_trick(self, dog_id: UUID, trick: str) -> None:
        dog: Dog = self.repository.get(dog_id)
        dog.add_trick(trick)
        self.save(dog)

    def get_dog(self, dog_id: UUID) -> dict[str, Any]:
        dog: Dog = self.repository.get(dog_id)
        return {"name": dog.name, "tricks": tuple(dog.tricks)}


class Counter(Aggregate):
    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0

    @staticmethod
    def create_id(name: str) -> UUID:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"/counters/{name}")

    @event("Incremented")
    def increment(self) -> None:
        self.count += 1


class TrickCounters(ProcessApplication[UUID]):
    def policy(self, domain_event: Any, processing_event: Any) -> None:
        if isinstance(domain_event, Dog.TrickAdded):  # type: ignore[attr-defined]
            try:
                counter: Counter = self.repository.get(Counter.create_id(domain_event.trick))
            except AggregateNotFoundError:
                counter = Counter(domain_event.trick)
            counter.increment()
            processing_event.collect_events(counter)

    def get_count(self, trick: str) -> int:
        try:
            counter: Counter = self.repository.get(Counter.create_id(trick))
        except AggregateNotFoundError:
            return 0
        return counter.count


class TestDocsExamples(OnEsdb):
    def test_dog_school(self) -> None:
        school = DogSchool(env=self.environment())
        try:
            dog_id = school.register_dog("Fido")
            school.add_trick(dog_id, "roll over")
            school.add_trick(dog_id, "fetch ball")
            assert school.get_dog(dog_id) == {"name": "Fido", "tricks": ("roll over", "fetch ball")}

            notifications = school.notification_log.select(start=1, limit=10)
            assert [n.id for n in notifications] == [1, 2, 3]
            assert [n.originator_id for n in notifications] == [dog_id] * 3

            school.take_snapshot(dog_id)
            school.add_trick(dog_id, "play dead")
            assert school.get_dog(dog_id)["tricks"][-1] == "play dead"
            assert school.snapshots is not None
            assert [s.originator_version for s in school.snapshots.get(dog_id)] == [3]
        finally:
            school.close()

        # Another process sees the same dog, from the snapshot and the event after it.
        again = DogSchool(env=self.environment())
        try:
            assert again.get_dog(dog_id)["tricks"] == (
                "roll over",
                "fetch ball",
                "play dead",
            )
        finally:
            again.close()

        # The events are plain esdb events: one stream per dog, the topic as the type.
        with SyncClient.connect(self.url, store=self.store) as client:
            events = client.read_stream(str(dog_id)).events
            assert [e.event_type.rsplit(".", 1)[-1] for e in events] == [
                "Registered",
                "TrickAdded",
                "TrickAdded",
                "TrickAdded",
            ]
            assert events[1].json()["trick"] == "roll over"
            assert client.read_snapshot("snapshots", str(dog_id)).version == 3

    def test_a_system_of_two_applications_each_in_its_own_store(self) -> None:
        system = System(pipes=[[DogSchool, TrickCounters]])
        env = self.environment(
            DOGSCHOOL_ESDB_STORE=self.store, TRICKCOUNTERS_ESDB_STORE=self.another_store()
        )
        runner = SingleThreadedRunner[UUID](system, env=env)
        runner.start()
        try:
            school = runner.get(DogSchool)
            counters = runner.get(TrickCounters)
            fido = school.register_dog("Fido")
            rex = school.register_dog("Rex")
            school.add_trick(fido, "roll over")
            school.add_trick(rex, "roll over")
            school.add_trick(rex, "fetch ball")
            assert counters.get_count("roll over") == 2
            assert counters.get_count("fetch ball") == 1
            # Each counter event was written with the tracking record of the trick it
            # counts: the last one tracks the school's fifth event.
            assert counters.recorder.max_tracking_id(DogSchool.name) == 5
        finally:
            runner.stop()

    def test_a_subscription_to_a_topic(self) -> None:
        recorder = self.new_factory().application_recorder()
        dog = uuid.uuid4()
        recorder.insert_events([_stored(dog, 1, "Registered"), _stored(dog, 2, "TrickAdded")])
        with recorder.subscribe(topics=["TrickAdded"]) as subscription:
            assert next(subscription).id == 2
            recorder.insert_events([_stored(dog, 3, "Renamed"), _stored(dog, 4, "TrickAdded")])
            assert next(subscription).id == 4
        # Several topics: all events come, those of other topics are dropped here.
        with recorder.subscribe(gt=1, topics=["Renamed", "TrickAdded"]) as subscription:
            assert [next(subscription).id for _ in range(3)] == [2, 3, 4]
            recorder.insert_events([_stored(dog, 5, "Sold"), _stored(dog, 6, "Renamed")])
            assert next(subscription).topic == "Renamed"

    def test_closing_ends_the_calls_of_other_threads(self) -> None:
        factory = self.new_factory()
        recorder = factory.application_recorder()
        recorder.insert_events([_stored(uuid.uuid4(), 1, "Registered")])
        started = threading.Event()
        errors: list[BaseException] = []

        def read_until_closed() -> None:
            try:
                while True:
                    recorder.select_notifications(None, 10)
                    started.set()
            except BaseException as e:
                errors.append(e)

        reader = threading.Thread(target=read_until_closed, daemon=True)
        reader.start()
        assert started.wait(DEADLINE_S)
        subscription = recorder.subscribe()
        factory.close()
        reader.join(DEADLINE_S)
        # Neither the reader nor the subscription is left waiting on a stopped loop.
        assert not reader.is_alive()
        assert [type(e) for e in errors] == [OperationalError]
        assert list(subscription) == []
        with pytest.raises(OperationalError):
            recorder.max_notification_id()

    def test_an_application_never_closed_lets_the_process_exit(self) -> None:
        # The library closes it when it is collected, at the interpreter's exit, when the
        # client's loop thread can no longer run: closing must not wait for it.
        script = (
            "from esdb.benchmarks.es_app import DogSchool\n"
            f"school = DogSchool(env={self.environment()!r})\n"
            "school.register_dog('Rex')\n"
            "assert school.recorder.max_notification_id() == 4\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=DEADLINE_S
        )
        assert done.returncode == 0, done.stderr
        assert "Exception ignored" not in done.stderr

    def test_the_module_is_found_by_its_name(self) -> None:
        factory = InfrastructureFactory.construct(Environment(env=self.environment()))
        self._factories.append(factory)  # type: ignore[arg-type]
        assert type(factory) is EsdbFactory
        with SyncClient.connect(self.url, store=self.store) as client:
            client.append("not-an-aggregate", [NewEvent("Other", {})])
        # Events that the library did not write are no notifications, and no aggregate.
        recorder = factory.application_recorder()
        dog = uuid.uuid4()
        recorder.insert_events([_stored(dog, 1, "Registered")])
        assert [n.originator_id for n in recorder.select_notifications(None, 10)] == [dog]
        with pytest.raises(DataError):
            recorder.select_events("not-an-aggregate")


def _stored(
    originator_id: UUID | str, version: int, topic: str, state: bytes = b"{}"
) -> StoredEvent:
    return StoredEvent(
        originator_id=originator_id, originator_version=version, topic=topic, state=state
    )
