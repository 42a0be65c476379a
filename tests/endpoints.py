"""A node-local service's endpoint without NATS: what it serves, and requests sent to it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from esdb.shared.service_api import Answer, Receive
from esdb.shared.wire import Codec, encode


class MemoryEndpoint:
    """Records what a service opens; `request` calls a route as the service's handler would."""

    def __init__(self) -> None:
        self.routes: dict[str, Answer] | None = None
        self.listeners: dict[str, Receive] = {}
        self.opened = 0

    @property
    def is_open(self) -> bool:
        """Whether the service takes requests now."""
        return self.routes is not None

    async def open(
        self, routes: Mapping[str, Answer], listeners: Mapping[str, Receive] | None = None
    ) -> None:
        """Take requests for `routes`, and messages for `listeners`."""
        self.routes = dict(routes)
        self.listeners = dict(listeners or {})
        self.opened += 1

    async def close(self) -> None:
        """Take nothing more."""
        self.routes = None
        self.listeners = {}

    async def request(self, store: str, operation: str, body: dict[str, Any]) -> Any:
        """Send `body` (JSON) to `operation` on `store`; the reply as plain values."""
        if self.routes is None:
            raise AssertionError("nobody serves: NATS would answer no responders")
        result = await self.routes[operation](store, encode(body, Codec.JSON), Codec.JSON)
        return json.loads(encode(result, Codec.JSON))
