"""How the gateway's core reaches the rest of the system; NATS implements them in
`handlers.py`, tests in memory."""

from __future__ import annotations

from collections.abc import Awaitable, Callable


class Unheard(Exception):
    """Nobody received the request (NATS: no responders), so it may be sent again."""


class Unanswered(Exception):
    """No reply came in time."""


Ask = Callable[[str, bytes, float, dict[str, str] | None], Awaitable[bytes]]
"""Request-reply: (subject, payload, timeout, headers) → the reply; raises `Unheard` or
`Unanswered`."""

Publish = Callable[[str, bytes], Awaitable[None]]
"""Send a message (a reply to an inbox) without waiting for an answer."""
