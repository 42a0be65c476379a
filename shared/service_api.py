"""Node-local services answer the API requests the gateway forwards to them the same way."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Protocol, TypeVar

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from esdb.contracts.errors import EsdbError, InternalError, InvalidRequest
from esdb.contracts.subjects import service_queue, service_subject
from esdb.shared.nats_connection import concurrently, unsubscribe
from esdb.shared.wire import Codec, codec_of, decode_request, encode, encode_error

log = logging.getLogger(__name__)
R = TypeVar("R")

Answer = Callable[[str, bytes, Codec], Awaitable[msgspec.Struct]]
"""(store, request body, codec) -> result."""


def typed(request_type: type[R], answer: Callable[[str, R, Codec], Awaitable[Any]]) -> Answer:
    """An `Answer` that decodes the body as `request_type` first."""

    async def decoded(store: str, data: bytes, codec: Codec) -> msgspec.Struct:
        result: msgspec.Struct = await answer(
            store, decode_request(data, request_type, codec), codec
        )
        return result

    return decoded


def api_handler(
    service: str, routes: Mapping[str, Answer]
) -> Callable[[Msg], Coroutine[Any, Any, None]]:
    """A callback for `esdb.internal.<service>.<store>.<operation>`: answers in the request's
    codec; every failure becomes a typed error reply."""

    async def handle(msg: Msg) -> None:
        codec = codec_of(msg.headers, msg.data)
        tokens = msg.subject.split(".")
        store, operation = tokens[-2], tokens[-1]
        try:
            answer = routes.get(operation)
            if answer is None:
                raise InvalidRequest(f"unknown operation {operation!r}", field="operation")
            reply = encode(await answer(store, msg.data, codec), codec)
        except EsdbError as e:
            reply = encode_error(e, codec)
        except Exception:
            log.exception("%s request %s failed", service, msg.subject)
            reply = encode_error(InternalError(f"internal error; see the {service} log"), codec)
        if msg.reply:
            await msg.respond(reply)

    return handle


Receive = Callable[[str, bytes, Mapping[str, str]], Awaitable[None]]
"""(subject, body, headers) of a message that is not a request."""


class Endpoint(Protocol):
    """A node-local service's subjects, open while it is active."""

    async def open(
        self, routes: Mapping[str, Answer], listeners: Mapping[str, Receive] | None = None
    ) -> None:
        """Answer `routes` on the service's API subjects, and pass each message on a
        listener's subject to it."""

    async def close(self) -> None:
        """Stop taking requests and messages."""


class NatsEndpoint:
    """The service's API on `esdb.internal.<service>.<store>.<operation>` (its queue group,
    each request in a task of its own), and plain subscriptions for the listeners."""

    def __init__(self, nc: NatsClient, service: str, name: str) -> None:
        self._nc = nc
        self._service = service
        self._name = name
        self._subs: list[Subscription] = []

    async def open(
        self, routes: Mapping[str, Answer], listeners: Mapping[str, Receive] | None = None
    ) -> None:
        """Subscribe the API and the listeners."""
        self._subs.append(
            await self._nc.subscribe(
                service_subject(self._service, "*", "*"),
                queue=service_queue(self._service),
                cb=concurrently(api_handler(self._name, routes)),
            )
        )
        for subject, receive in (listeners or {}).items():
            self._subs.append(await self._nc.subscribe(subject, cb=_plain(receive)))

    async def close(self) -> None:
        """Unsubscribe everything."""
        subs, self._subs = self._subs, []
        await unsubscribe(*subs)


def _plain(receive: Receive) -> Callable[[Msg], Awaitable[None]]:
    async def callback(msg: Msg) -> None:
        await receive(msg.subject, msg.data, msg.headers or {})

    return callback
