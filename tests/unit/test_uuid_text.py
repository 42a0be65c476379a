"""`uuid_text` is `str(uuid.UUID(bytes=...))`, only cheaper."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from esdb.shared.wire import uuid_text


@given(st.binary(min_size=16, max_size=16))
def test_it_is_the_uuid_module_s_text(raw: bytes) -> None:
    assert uuid_text(raw) == str(uuid.UUID(bytes=raw))


@pytest.mark.parametrize("size", [0, 15, 17])
def test_anything_but_16_bytes_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        uuid_text(b"\x01" * size)
