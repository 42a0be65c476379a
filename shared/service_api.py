"""Node-local services answer the API requests the gateway forwards to them the same way."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

import msgspec
from nats.aio.msg import Msg

from esdb.contracts.errors import EsdbError, InternalError, InvalidRequest
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
        codec = codec_of(msg.headers)
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
