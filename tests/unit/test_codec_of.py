"""A request's codec: its `Content-Type` header when it has one, else its first byte."""

from __future__ import annotations

import msgspec
import pytest

from esdb.shared.wire import Codec, codec_of

MAP = msgspec.msgpack.encode({"stream": "a-1", "events": []})


@pytest.mark.parametrize(
    ("headers", "body", "codec"),
    [
        ({"Content-Type": "application/msgpack"}, b'{"x": 1}', Codec.MSGPACK),
        ({"content-type": "application/msgpack"}, MAP, Codec.MSGPACK),
        ({"Content-Type": "application/json"}, MAP, Codec.JSON),  # the header wins
        (None, MAP, Codec.MSGPACK),
        ({"traceparent": "00-1-2-01"}, MAP, Codec.MSGPACK),
        (None, msgspec.msgpack.encode({f"k{i}": i for i in range(20)}), Codec.MSGPACK),  # map16
        (None, b'{"stream": "a-1"}', Codec.JSON),
        (None, b'  \n{"stream": "a-1"}', Codec.JSON),
        (None, b"", Codec.JSON),
        (None, b"\xef\xbb\xbf{}", Codec.JSON),  # a UTF-8 byte order mark is no msgpack map
    ],
)
def test_the_codec_of_a_request(headers: dict[str, str] | None, body: bytes, codec: Codec) -> None:
    assert codec_of(headers, body) is codec


def test_every_json_start_byte_is_told_apart_from_a_msgpack_map() -> None:
    json_starts = b' \t\r\n{["-0123456789tfn'
    assert all(codec_of(None, bytes([b])) is Codec.JSON for b in json_starts)
