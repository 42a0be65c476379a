"""The eventsourcing library's DCB API on esdb (`PERSISTENCE_MODULE=esdb.eventsourcing`) against
a real stack: the library's `DCBRecorderTestCase`, and a course-subscription `DCBApplication`
(the library's DCB example, written here against the API the installed version has)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import cast

import pytest
from eventsourcing.dcb.api import DCBEvent, DCBRecorder
from eventsourcing.dcb.application import DCBApplication
from eventsourcing.dcb.domain import EnduringObject, Group
from eventsourcing.dcb.msgpack import Decision, InitialDecision, MessagePackMapper
from eventsourcing.dcb.persistence import DCBInfrastructureFactory
from eventsourcing.dcb.tests import DCBRecorderTestCase
from eventsourcing.domain import event
from eventsourcing.persistence import InfrastructureFactory, IntegrityError
from eventsourcing.utils import Environment, get_topic

from esdb.client import NewEvent
from esdb.eventsourcing import EsdbFactory
from esdb.eventsourcing.dcb import EsdbDCBRecorder
from tests.integration.test_eventsourcing import OnEsdb


class TestEsdbDCBRecorder(OnEsdb, DCBRecorderTestCase):
    def create_recorder(self) -> DCBRecorder:
        recorder = self.new_factory().dcb_recorder()
        assert isinstance(recorder, EsdbDCBRecorder)
        return recorder

    def test_append_read(self) -> None:
        self._test_append_read(self.create_recorder())

    def test_append_subscribe(self) -> None:
        self._test_append_subscribe(self.create_recorder())

    def test_stream_events_of_the_store_are_not_dcb_events(self) -> None:
        factory = self.new_factory()
        factory.datastore.client.append("order-1", [NewEvent("Placed", {})])
        recorder = factory.dcb_recorder()
        assert recorder.append([DCBEvent("T", b"x", ["t"])]) == 2
        response = recorder.read()
        assert [e.position for e in response] == [2]
        assert response.head == 2

    def test_the_module_gives_one_factory_of_each_kind(self) -> None:
        env = Environment(env=self.environment())
        with (
            DCBInfrastructureFactory.construct(env) as dcb,
            InfrastructureFactory.construct(env) as plain,
        ):
            assert type(dcb) is EsdbFactory
            assert type(plain) is EsdbFactory


class Student(EnduringObject[Decision, str]):
    class Registered(InitialDecision):
        student_id: str
        name: str
        max_courses: int

    def __init__(self, name: str, max_courses: int) -> None:
        self.name = name
        self.max_courses = max_courses
        self.course_ids: list[str] = []


class Course(EnduringObject[Decision, str]):
    class Registered(InitialDecision):
        course_id: str
        name: str
        places: int

    class PlacesUpdated(Decision):
        places: int

    def __init__(self, name: str, places: int) -> None:
        self.name = name
        self.places = places
        self.student_ids: list[str] = []

    @event(PlacesUpdated)
    def update_places(self, places: int) -> None:
        self.places = places


class FullyBookedError(Exception):
    pass


class TooManyCoursesError(Exception):
    pass


class AlreadyJoinedError(Exception):
    pass


class StudentJoinedCourse(Decision):
    student_id: str
    course_id: str

    def apply(self, obj: object) -> None:
        if isinstance(obj, Student):
            obj.course_ids.append(self.course_id)
        elif isinstance(obj, Course):
            obj.student_ids.append(self.student_id)


class StudentAndCourse(Group[Decision]):
    def __init__(self, student: Student | None, course: Course | None) -> None:
        assert student is not None and course is not None
        self.student = student
        self.course = course

    def join(self) -> None:
        if self.student.id in self.course.student_ids:
            raise AlreadyJoinedError
        if len(self.course.student_ids) >= self.course.places:
            raise FullyBookedError
        if len(self.student.course_ids) >= self.student.max_courses:
            raise TooManyCoursesError
        self.trigger_event(
            StudentJoinedCourse, student_id=self.student.id, course_id=self.course.id
        )


class Enrolment(DCBApplication):
    env: Mapping[str, str] = {"MAPPER_TOPIC": get_topic(MessagePackMapper)}

    def register_student(self, name: str, max_courses: int) -> str:
        student = Student(name=name, max_courses=max_courses)
        self.repository.save(student)
        return student.id

    def register_course(self, name: str, places: int) -> str:
        course = Course(name=name, places=places)
        self.repository.save(course)
        return course.id

    def update_places(self, course_id: str, places: int) -> None:
        course = cast(Course, self.repository.get(course_id))
        course.update_places(places)
        self.repository.save(course)

    def decide_join(self, student_id: str, course_id: str) -> StudentAndCourse:
        """Read the boundary and decide, without saving (to make decisions race)."""
        group = self.repository.get_group(StudentAndCourse, student_id, course_id)
        group.join()
        return group

    def join_course(self, student_id: str, course_id: str) -> None:
        self.repository.save(self.decide_join(student_id, course_id))

    def students_of(self, course_id: str) -> list[str]:
        course = cast(Course, self.repository.get(course_id))
        students = self.repository.get_many(*course.student_ids)
        return [cast(Student, s).name for s in students if s is not None]


class TestCourseSubscriptions(OnEsdb):
    @pytest.fixture
    def app(self) -> Iterator[Enrolment]:
        app = Enrolment(env=self.environment())
        yield app
        app.close()

    def test_students_join_courses_within_the_rules(self, app: Enrolment) -> None:
        ada = app.register_student("Ada", max_courses=1)
        bob = app.register_student("Bob", max_courses=5)
        maths = app.register_course("Maths", places=1)
        art = app.register_course("Art", places=3)
        app.join_course(ada, maths)
        with pytest.raises(FullyBookedError):
            app.join_course(bob, maths)
        with pytest.raises(TooManyCoursesError):
            app.join_course(ada, art)
        with pytest.raises(AlreadyJoinedError):
            app.join_course(ada, maths)
        app.update_places(maths, 2)
        app.join_course(bob, maths)
        assert app.students_of(maths) == ["Ada", "Bob"]

    def test_a_decision_on_a_stale_boundary_is_refused(self, app: Enrolment) -> None:
        ada = app.register_student("Ada", max_courses=5)
        bob = app.register_student("Bob", max_courses=5)
        maths = app.register_course("Maths", places=1)
        # Both decided against the same state of the course: only the first one saved wins.
        first = app.decide_join(ada, maths)
        second = app.decide_join(bob, maths)
        app.repository.save(first)
        with pytest.raises(IntegrityError):
            app.repository.save(second)
        assert app.students_of(maths) == ["Ada"]

    def test_decisions_on_other_courses_do_not_conflict(self, app: Enrolment) -> None:
        ada = app.register_student("Ada", max_courses=5)
        bob = app.register_student("Bob", max_courses=5)
        maths = app.register_course("Maths", places=1)
        art = app.register_course("Art", places=1)
        first = app.decide_join(ada, maths)
        second = app.decide_join(bob, art)
        app.repository.save(first)
        app.repository.save(second)
        assert (app.students_of(maths), app.students_of(art)) == (["Ada"], ["Bob"])
