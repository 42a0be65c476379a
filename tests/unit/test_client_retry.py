"""Retries of `unavailable` and `timeout`: the policy, the loop, and a client over a fake NATS
connection that sends the very same append (same event ids) again."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import nats.errors
import pytest

from esdb.client import (
    Client,
    IdempotencyConflictError,
    NewEvent,
    RequestTimeoutError,
    RetryPolicy,
    UnavailableError,
    WrongExpectedVersionError,
)
from esdb.client.connection import Connection
from esdb.client.retry import retrying
from esdb.contracts.api import AppendResult
from esdb.contracts.errors import ErrorBody, ErrorReply, EsdbError
from esdb.contracts.subscriptions import SubscriptionInfo

NO_WAIT = RetryPolicy(max_retries=5, deadline=60.0, initial_backoff=0.0, jitter=0.0)


# ---- the policy ----


def test_backoff_grows_by_the_multiplier_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_backoff=0.1, multiplier=2.0, max_backoff=0.5, jitter=0.0)
    assert [policy.backoff(n, 0.0) for n in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]


def test_jitter_shortens_a_wait_by_up_to_its_fraction() -> None:
    policy = RetryPolicy(initial_backoff=1.0, max_backoff=1.0, jitter=0.5)
    assert policy.backoff(0, 0.0) == 1.0
    assert policy.backoff(0, 0.999) == pytest.approx(0.5005)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"max_retries": -1}, "max_retries"),
        ({"deadline": -1.0}, "deadline"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"jitter": 2.0}, "jitter"),
    ],
)
def test_a_bad_policy_names_its_setting(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        RetryPolicy(**options)


def test_never_turns_retries_off() -> None:
    assert not RetryPolicy.never().enabled
    assert RetryPolicy().enabled


# ---- the loop, on a fake clock ----


@dataclass
class FakeTime:
    now: float = 0.0
    waits: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def failing(*errors: EsdbError, result: str = "ok") -> Callable[[], Any]:
    """An attempt that raises `errors` in turn, then returns `result`."""
    pending = list(errors)
    calls: list[int] = []

    async def attempt() -> str:
        calls.append(1)
        if pending:
            raise pending.pop(0)
        return result

    attempt.calls = calls  # type: ignore[attr-defined]
    return attempt


async def run(attempt: Callable[[], Any], policy: RetryPolicy, time: FakeTime, **kw: Any) -> Any:
    return await retrying(
        attempt,
        policy,
        may_retry=kw.pop("may_retry", lambda e: True),
        clock=time.clock,
        sleep=time.sleep,
        fraction=lambda: 0.0,
    )


async def test_unavailable_and_timeout_are_retried_until_they_pass() -> None:
    time = FakeTime()
    attempt = failing(UnavailableError("no leader"), RequestTimeoutError("slow"))
    policy = RetryPolicy(initial_backoff=0.1, jitter=0.0)
    assert await run(attempt, policy, time) == "ok"
    assert time.waits == [0.1, 0.2]


async def test_other_errors_are_raised_at_once() -> None:
    time = FakeTime()
    attempt = failing(WrongExpectedVersionError("elsewhere", actual_version=3))
    with pytest.raises(WrongExpectedVersionError) as raised:
        await run(attempt, RetryPolicy(), time)
    assert raised.value.actual_version == 3
    assert time.waits == []


async def test_retries_stop_at_max_retries_and_say_how_many_tries() -> None:
    time = FakeTime()
    attempt = failing(*[UnavailableError("down", url="u")] * 10)
    with pytest.raises(UnavailableError) as raised:
        await run(attempt, RetryPolicy(max_retries=3, initial_backoff=0.01, jitter=0), time)
    assert len(attempt.calls) == 4  # type: ignore[attr-defined]
    assert raised.value.details == {"url": "u", "tries": 4}
    assert "(4 tries in" in raised.value.message


async def test_no_retry_starts_after_the_deadline() -> None:
    time = FakeTime()
    attempt = failing(*[RequestTimeoutError("slow")] * 10)
    policy = RetryPolicy(max_retries=100, deadline=1.0, initial_backoff=0.3, jitter=0)
    with pytest.raises(RequestTimeoutError):
        await run(attempt, policy, time)
    assert time.waits == [0.3, 0.6]  # a third wait (1.2 s) would end past the deadline
    assert time.now <= 1.0


async def test_may_retry_vetoes_a_retry() -> None:
    time = FakeTime()
    attempt = failing(RequestTimeoutError("slow"))
    with pytest.raises(RequestTimeoutError):
        await run(attempt, NO_WAIT, time, may_retry=lambda e: False)
    assert len(attempt.calls) == 1  # type: ignore[attr-defined]


# ---- a client over a fake NATS connection ----


@dataclass
class Reply:
    data: bytes


@dataclass
class FakeNats:
    """Answers requests from a script: each entry is an exception to raise or a reply body."""

    script: list[BaseException | bytes]
    sent: list[tuple[str, bytes]] = field(default_factory=list)
    is_closed: bool = False
    is_draining: bool = False

    async def request(
        self, subject: str, payload: bytes, timeout: float, headers: dict[str, str] | None = None
    ) -> Reply:
        self.sent.append((subject, payload))
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return Reply(step)


APPENDED = msgspec.msgpack.encode(
    AppendResult(first_version=0, last_version=1, first_position=7, last_position=8)
)


def error_reply(code: str, **details: Any) -> bytes:
    return msgspec.msgpack.encode(ErrorReply(ErrorBody(code, "from the server", details)))


def client_over(nc: FakeNats, retry: RetryPolicy = NO_WAIT) -> Client:
    return Client(Connection(nc, "nats://fake", 1.0, retry=retry), "default")  # type: ignore[arg-type]


def sent_events(payload: bytes) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = msgspec.msgpack.decode(payload)["events"]
    return events


async def test_a_timed_out_append_is_sent_again_with_the_same_event_ids() -> None:
    nc = FakeNats([nats.errors.TimeoutError(), nats.errors.NoRespondersError(), APPENDED])
    given = str(uuid.uuid4())
    result = await client_over(nc).append(
        "order-1", [NewEvent("Placed", {"n": 1}), NewEvent("Paid", {}, event_id=given)]
    )
    assert result.last_position == 8
    assert len(nc.sent) == 3
    assert nc.sent[0] == nc.sent[1] == nc.sent[2]  # the very same bytes, every time
    stamped, kept = sent_events(nc.sent[0][1])
    assert uuid.UUID(stamped["event_id"]).version == 7
    assert kept["event_id"] == given


async def test_a_server_unavailable_reply_is_retried_for_an_append() -> None:
    nc = FakeNats([error_reply("unavailable"), error_reply("timeout"), APPENDED])
    await client_over(nc).append("order-1", [NewEvent("Placed", {})])
    assert len({payload for _, payload in nc.sent}) == 1


async def test_an_idempotency_conflict_is_not_retried() -> None:
    nc = FakeNats([error_reply("idempotency_conflict", stored=1)])
    with pytest.raises(IdempotencyConflictError):
        await client_over(nc).append("order-1", [NewEvent("Placed", {})])
    assert len(nc.sent) == 1


async def test_without_retries_ids_are_left_to_the_server_and_errors_raised_at_once() -> None:
    nc = FakeNats([nats.errors.TimeoutError()])
    client = client_over(nc, RetryPolicy.never())
    with pytest.raises(RequestTimeoutError, match="may still have landed"):
        await client.append("order-1", [NewEvent("Placed", {})])
    assert "event_id" not in sent_events(nc.sent[0][1])[0]


async def test_a_write_that_is_not_idempotent_is_retried_only_if_never_delivered() -> None:
    info = msgspec.msgpack.encode(
        msgspec.convert(
            {
                "subscription": "billing",
                "subject": "esdb.subs.default.billing",
                "selector": {"all": True},
                "start_position": 1,
                "message_timeout_ms": 30000,
                "max_retries": 10,
                "max_in_flight": 100,
                "checkpoint": 0,
                "last_position": 0,
                "lag": 0,
                "in_flight": 0,
                "parked": 0,
                "consumers": [],
            },
            SubscriptionInfo,
        )
    )
    nc = FakeNats([nats.errors.NoRespondersError(), info])
    assert (await client_over(nc).create_subscription("billing", all=True)).subscription == (
        "billing"
    )
    assert len(nc.sent) == 2

    timed_out = FakeNats([nats.errors.TimeoutError(), info])
    with pytest.raises(RequestTimeoutError):
        await client_over(timed_out).create_subscription("billing", all=True)
    assert len(timed_out.sent) == 1


async def test_a_request_is_retried_after_a_timeout_only_when_marked_idempotent() -> None:
    decoder = msgspec.msgpack.Decoder(AppendResult)
    unmarked = FakeNats([nats.errors.TimeoutError(), APPENDED])
    connection = Connection(unmarked, "nats://fake", 1.0, retry=NO_WAIT)  # type: ignore[arg-type]
    with pytest.raises(RequestTimeoutError):
        await connection.request("esdb.api.default.op", {}, decoder)
    marked = FakeNats([nats.errors.TimeoutError(), APPENDED])
    connection = Connection(marked, "nats://fake", 1.0, retry=NO_WAIT)  # type: ignore[arg-type]
    assert (await connection.request("esdb.api.default.op", {}, decoder, idempotent=True)) == (
        decoder.decode(APPENDED)
    )


async def test_reads_are_retried() -> None:
    page = msgspec.msgpack.encode({"events": [], "next": None, "last_version": -1})
    nc = FakeNats([error_reply("unavailable"), nats.errors.TimeoutError(), page])
    assert (await client_over(nc).read_stream("order-1")).last_version == -1
    assert len(nc.sent) == 3


@pytest.mark.parametrize("state", ["is_closed", "is_draining"])
async def test_a_closing_connection_fails_at_once_and_is_not_retried(state: str) -> None:
    nc = FakeNats([nats.errors.ConnectionClosedError()], **{state: True})
    with pytest.raises(UnavailableError, match="closing"):
        await client_over(nc).read_stream("order-1")
    assert nc.sent == []  # no request that would wait out its timeout
