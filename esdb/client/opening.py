"""Things the client opens: `await` them, or use them with `async with` (closed on exit)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Generator
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar


class Closable(Protocol):
    """Anything with an async `close`."""

    async def close(self) -> None:
        """Release what it holds."""
        ...


T = TypeVar("T", bound=Closable)


class Opening(ABC, Generic[T]):
    """Something being opened: await it for the opened thing, or use it with `async with`."""

    _entered: T | None = None

    @abstractmethod
    async def _open(self) -> T:
        """Open it."""

    def __await__(self) -> Generator[Any, None, T]:
        return self._open().__await__()

    async def __aenter__(self) -> T:
        self._entered = await self._open()
        return self._entered

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._entered is not None:
            await self._entered.close()


class ClosedOnExit:
    """`async with thing:` closes the thing on exit."""

    async def close(self) -> None:
        """Release what it holds."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
