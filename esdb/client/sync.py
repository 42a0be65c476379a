"""`SyncClient` (also `esdb.client.sync.Client`): the client's operations as blocking calls,
with the same names and arguments, for code that has no event loop.

Request-reply calls (appends, reads, snapshots, ...) run in the calling thread, over blocking
NATS connections of the client's own (see `blocking`): handing them to an event loop thread
cost several times the request itself. Everything else runs on an event loop in a background
thread with the async `Client` on it: async iterators (`iter_stream`, `iter_all`, ...) become
plain iterators, and subscriptions (`subscribe`, `consume`, `watch`, `subscribe_to_all`, ...)
come back open, as plain iterators with `close()`, usable in a `with` block. It may be used
from several threads at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import ssl
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, Self, TypeVar, overload

from esdb.client.blocking import DRAIN_S, BlockingConnection, drive
from esdb.client.client import Client as AsyncClient
from esdb.client.connection import DEFAULT_URL, Connection
from esdb.client.kurrent_names import AckItem
from esdb.client.retry import RetryPolicy
from esdb.contracts.errors import Unavailable

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class ClientClosed(Unavailable, RuntimeError):
    """A call on a `SyncClient` that is closed or closing (also a `RuntimeError`)."""


class LoopThread:
    """An event loop running in a daemon thread; `run` waits for a coroutine on it.

    Several threads may call at once. Once closing begins (`refuse_calls`, or `stop`), other
    threads' calls fail at once with `Unavailable`, calls in flight get a bounded time to
    finish, and any still pending when the loop stops fail too: no caller waits forever."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="esdb-client-loop", daemon=True)
        self._lock = threading.Lock()
        self._calls = threading.Condition(self._lock)  # for `refuse_calls` to wait on
        self._in_flight = 0
        self._closer: int | None = None
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, awaitable: Awaitable[T]) -> T:
        """Wait for `awaitable` on the loop; its result or exception is ours. Interrupted
        (Ctrl-C), it is cancelled there too."""
        try:
            self._enter()
        except RuntimeError:
            close = getattr(awaitable, "close", None)
            if close is not None:
                close()  # a coroutine that will never run
            raise
        try:
            future = asyncio.run_coroutine_threadsafe(_awaited(awaitable), self.loop)
            try:
                return future.result()
            except concurrent.futures.CancelledError as e:
                if self._closer is None:
                    raise
                raise ClientClosed("the SyncClient closed while this call was waiting") from e
            except BaseException:
                future.cancel()
                raise
        finally:
            self._leave()

    def run_here(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine`, which never suspends (its I/O blocks), in the calling thread;
        counted as a call in flight, refused once closing began, as `run`'s calls are."""
        try:
            self._enter()
        except RuntimeError:
            coroutine.close()
            raise
        try:
            return drive(coroutine)
        finally:
            self._leave()

    def _enter(self) -> None:
        with self._lock:
            self._check_usable()
            self._in_flight += 1

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1
            if self._closer is not None:
                self._calls.notify_all()

    def call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call `function` on the loop, awaiting what it returns if that is awaitable; async
        iterators come back as blocking ones."""

        self._check_usable()

        async def called() -> Any:
            result = function(*args, **kwargs)
            if inspect.isawaitable(result) and not hasattr(result, "__anext__"):
                result = await result
            return result

        return _blocking(self, self.run(called()))

    def _check_usable(self) -> None:
        if threading.get_ident() == self._thread.ident:
            raise RuntimeError("a SyncClient cannot be called from its own event loop")
        if self.loop.is_closed():
            raise ClientClosed("the SyncClient is closed")
        if sys.is_finalizing():
            # The loop's daemon thread no longer runs: a call handed to it would never end.
            raise ClientClosed("the interpreter is exiting")
        if self._closer is not None and self._closer != threading.get_ident():
            raise ClientClosed("the SyncClient is closing")

    def refuse_calls(self, drain_s: float = DRAIN_S) -> None:
        """From now on only this thread may call; wait (bounded) for others' calls."""
        with self._calls:
            self._closer = threading.get_ident()
            self._calls.wait_for(lambda: self._in_flight <= 0, timeout=drain_s)

    def stop(self) -> None:
        """Refuse new calls, let those in flight finish (bounded), fail what is left, finish
        open async generators, stop the loop and wait for its thread."""
        if self.loop.is_closed():
            return
        if self._closer is None:
            self.refuse_calls()
        if self.loop.is_running():
            self.run(_cancel_others())
            self.run(self.loop.shutdown_asyncgens())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
        self.loop.close()


async def _cancel_others() -> None:
    """Cancel every task on the loop but this one, so their callers stop waiting."""
    current = asyncio.current_task()
    pending = [task for task in asyncio.all_tasks() if task is not current]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


class _Source(Protocol[T_co]):
    """An async iterator that can be closed: a subscription, a consumer, a watch."""

    def __anext__(self) -> Awaitable[T_co]: ...

    async def close(self) -> None: ...


class BlockingIterator(Generic[T]):
    """An async iterator of the client's loop as a plain iterator; `close()` (or leaving a
    `with` block) ends it early."""

    def __init__(self, runner: LoopThread, source: AsyncIterator[T] | _Source[T]) -> None:
        self._runner = runner
        self._source = source
        self._done = False

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        try:
            return self._runner.run(anext(self._source))  # type: ignore[arg-type]
        except StopAsyncIteration:
            self._done = True
            raise StopIteration from None

    def close(self) -> None:
        """Stop iterating and release what the iterator holds."""
        if self._done:
            return
        self._done = True
        closing = getattr(self._source, "close", None) or getattr(self._source, "aclose", None)
        if closing is not None and not self._runner.loop.is_closed():
            self._runner.call(closing)

    def stop(self) -> None:
        """kurrentdbclient's name for `close`."""
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._source, name)
        if callable(value):
            return lambda *args, **kwargs: self._runner.call(value, *args, **kwargs)
        return value


class BlockingConsumer(BlockingIterator[T]):
    """A consumer of a persistent subscription: iterate, then `ack` or `nack` each event."""

    def ack(self, *items: AckItem) -> None:
        """Settle delivered events (the events, their ids or positions)."""
        for item in items:
            self._runner.call(self._source.ack, item)  # type: ignore[union-attr]

    def nack(self, *items: AckItem, action: str = "retry", reason: str = "") -> None:
        """Report failed events: `retry`, `park`, `skip` or `stop`."""
        for item in items:
            self._runner.call(
                self._source.nack,  # type: ignore[union-attr]
                item,
                action=action,
                reason=reason,
            )

    def flush(self) -> None:
        """Wait until every ack and nack so far has reached the group."""
        self._runner.call(self._source.flush)  # type: ignore[union-attr]


def _blocking(runner: LoopThread, value: Any) -> Any:
    if hasattr(value, "ack") and hasattr(value, "__anext__"):
        return BlockingConsumer(runner, value)
    if hasattr(value, "__anext__"):
        return BlockingIterator(runner, value)
    return value


class _Call(Generic[P, R]):
    """A `Client` coroutine method as a blocking method of `SyncClient`: run on the loop,
    or, for a request-reply method (`here`), in the calling thread over the client's
    blocking connections when it has them (see `blocking`)."""

    def __init__(
        self, method: Callable[Concatenate[AsyncClient, P], Awaitable[R]], *, here: bool = False
    ) -> None:
        self._method = method
        self._here = here
        self.__doc__ = method.__doc__

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Self: ...

    @overload
    def __get__(self, instance: SyncClient, owner: type[Any]) -> Callable[P, R]: ...

    def __get__(self, instance: SyncClient | None, owner: type[Any]) -> Any:
        if instance is None:
            return self
        if self._here and instance._direct is not None:
            return _bound_here(instance, instance._direct, self._method)
        return _bound(instance, self._method)


class _Iterate(Generic[P, T]):
    """A `Client` async-iterator method as a `SyncClient` method returning an iterator."""

    def __init__(self, method: Callable[Concatenate[AsyncClient, P], AsyncIterator[T]]) -> None:
        self._method = method
        self.__doc__ = method.__doc__

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Self: ...

    @overload
    def __get__(
        self, instance: SyncClient, owner: type[Any]
    ) -> Callable[P, BlockingIterator[T]]: ...

    def __get__(self, instance: SyncClient | None, owner: type[Any]) -> Any:
        if instance is None:
            return self
        return _bound(instance, self._method)


class _Open(Generic[P, T]):
    """A `Client` method opening a subscription as a `SyncClient` method returning it open,
    as an iterator."""

    def __init__(self, method: Callable[Concatenate[AsyncClient, P], Awaitable[_Source[T]]]):
        self._method = method
        self.__doc__ = method.__doc__

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Self: ...

    @overload
    def __get__(
        self, instance: SyncClient, owner: type[Any]
    ) -> Callable[P, BlockingIterator[T]]: ...

    def __get__(self, instance: SyncClient | None, owner: type[Any]) -> Any:
        if instance is None:
            return self
        return _bound(instance, self._method)


class _Consume(Generic[P, T]):
    """A `Client` method joining a consumer group as a `SyncClient` method returning the
    consumer, with blocking `ack` and `nack`."""

    def __init__(self, method: Callable[Concatenate[AsyncClient, P], Awaitable[_Source[T]]]):
        self._method = method
        self.__doc__ = method.__doc__

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Self: ...

    @overload
    def __get__(
        self, instance: SyncClient, owner: type[Any]
    ) -> Callable[P, BlockingConsumer[T]]: ...

    def __get__(self, instance: SyncClient | None, owner: type[Any]) -> Any:
        if instance is None:
            return self
        return _bound(instance, self._method)


def _bound(instance: SyncClient, method: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return instance._runner.call(method, instance._client, *args, **kwargs)

    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call


def _bound_here(
    instance: SyncClient, direct: AsyncClient, method: Callable[..., Any]
) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return instance._runner.run_here(method(direct, *args, **kwargs))

    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call


class SyncClient:
    """An esdb client bound to one store, with blocking methods: `with
    SyncClient.connect(url) as client: client.append(...)`. Method names and arguments are
    those of the async `Client`."""

    def __init__(self, client: AsyncClient, runner: LoopThread) -> None:
        self._client = client
        self._runner = runner
        self._sockets = _blocking_connection(client)
        """Where request-reply calls go from the calling thread (None: on the loop)."""
        self._direct = None if self._sockets is None else AsyncClient(self._sockets, client.store)

    @classmethod
    def connect(
        cls,
        url: str = DEFAULT_URL,
        *,
        store: str | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        max_retries: int | None = None,
        retry_deadline: float | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> SyncClient:
        """Connect as `Client.connect` does (same connection strings and options) and
        return the connected client."""
        connecting = AsyncClient.connect(
            url,
            store=store,
            timeout=timeout,
            retry=retry,
            max_retries=max_retries,
            retry_deadline=retry_deadline,
            tls=tls,
        )
        runner = LoopThread()
        try:
            client = runner.run(connecting)
        except BaseException:
            runner.stop()
            raise
        return cls(client, runner)

    @property
    def store(self) -> str:
        """The store this client works on."""
        return self._client.store

    @property
    def url(self) -> str:
        """The connection string or NATS URL this client connected with (no password)."""
        return self._client.url

    @property
    def retry(self) -> RetryPolicy:
        """How this client retries requests that fail with `unavailable` or `timeout`."""
        return self._client.retry

    @property
    def async_client(self) -> AsyncClient:
        """The async client underneath (use it only on `loop`)."""
        return self._client

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the client runs on, in its own thread."""
        return self._runner.loop

    def close(self) -> None:
        """End open subscriptions, finish requests in flight, close the connection and stop
        the background loop."""
        if self._runner.loop.is_closed():
            return
        if sys.is_finalizing():
            # Collected at exit without having been closed (an application that never
            # called `close`): the loop thread cannot run any more, and the process's end
            # closes its sockets. Waiting on it would hang the exit for good.
            if self._sockets is not None:
                drive(self._sockets.close(drain_s=0))
            return
        try:
            if self._sockets is not None:
                # Other threads' calls fail from now on; their requests in flight finish.
                self._runner.refuse_calls(drain_s=0)
                drive(self._sockets.close())
            self._runner.run(self._client.close())
            self._runner.refuse_calls()
        finally:
            self._runner.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # Streams and $all
    append = _Call(AsyncClient.append, here=True)
    append_multi = _Call(AsyncClient.append_multi, here=True)
    read_stream = _Call(AsyncClient.read_stream, here=True)
    iter_stream = _Iterate(AsyncClient.iter_stream)
    read_all = _Call(AsyncClient.read_all, here=True)
    read_all_compact = _Call(AsyncClient.read_all_compact, here=True)
    iter_all = _Iterate(AsyncClient.iter_all)
    list_streams = _Call(AsyncClient.list_streams, here=True)
    iter_streams = _Iterate(AsyncClient.iter_streams)
    stream_info = _Call(AsyncClient.stream_info, here=True)
    set_stream_metadata = _Call(AsyncClient.set_stream_metadata, here=True)
    delete_stream = _Call(AsyncClient.delete_stream, here=True)
    tombstone_stream = _Call(AsyncClient.tombstone_stream, here=True)
    cluster_status = _Call(AsyncClient.cluster_status, here=True)
    health = _Call(AsyncClient.health, here=True)

    # Live and catch-up subscriptions, watches
    subscribe = _Open(AsyncClient.subscribe)
    watch = _Open(AsyncClient.watch)

    # Persistent subscriptions
    create_subscription = _Call(AsyncClient.create_subscription)
    delete_subscription = _Call(AsyncClient.delete_subscription)
    list_subscriptions = _Call(AsyncClient.list_subscriptions)
    subscription_info = _Call(AsyncClient.subscription_info)
    replay_parked = _Call(AsyncClient.replay_parked)
    list_parked = _Call(AsyncClient.list_parked)
    iter_parked = _Iterate(AsyncClient.iter_parked)
    consume = _Consume(AsyncClient.consume)

    # Snapshots
    record_snapshot = _Call(AsyncClient.record_snapshot, here=True)
    read_snapshot = _Call(AsyncClient.read_snapshot, here=True)
    delete_snapshot = _Call(AsyncClient.delete_snapshot, here=True)
    list_snapshots = _Call(AsyncClient.list_snapshots, here=True)
    iter_snapshots = _Iterate(AsyncClient.iter_snapshots)

    # Dynamic consistency boundaries
    dcb_append = _Call(AsyncClient.dcb_append, here=True)
    dcb_read = _Call(AsyncClient.dcb_read, here=True)

    # Stores
    create_store = _Call(AsyncClient.create_store)
    remove_store = _Call(AsyncClient.remove_store)
    list_stores = _Call(AsyncClient.list_stores)
    store_status = _Call(AsyncClient.store_status)
    store_config = _Call(AsyncClient.store_config)

    # kurrentdbclient's names
    append_to_stream = _Call(AsyncClient.append_to_stream, here=True)
    get_stream = _Call(AsyncClient.get_stream)
    get_current_version = _Call(AsyncClient.get_current_version, here=True)
    get_commit_position = _Call(AsyncClient.get_commit_position, here=True)
    subscribe_to_all = _Open(AsyncClient.subscribe_to_all)
    subscribe_to_stream = _Open(AsyncClient.subscribe_to_stream)
    create_subscription_to_all = _Call(AsyncClient.create_subscription_to_all)
    create_subscription_to_stream = _Call(AsyncClient.create_subscription_to_stream)
    read_subscription_to_all = _Consume(AsyncClient.read_subscription_to_all)
    read_subscription_to_stream = _Consume(AsyncClient.read_subscription_to_stream)
    get_subscription_info = _Call(AsyncClient.get_subscription_info)
    replay_parked_events = _Call(AsyncClient.replay_parked_events)


def _blocking_connection(client: AsyncClient) -> BlockingConnection | None:
    """Blocking connections to `client`'s servers, with its options (see `blocking`), for
    its request-reply calls; None when a server cannot be reached that way (websockets)."""
    connection = client._connection
    if not isinstance(connection, Connection) or not BlockingConnection.usable(connection.servers):
        return None
    return BlockingConnection(
        connection.servers,
        connection.url,
        connection.timeout,
        retry=connection.retry,
        tls=connection.tls,
    )


def _add_untyped_twins(cls: type[SyncClient]) -> None:
    """Give `cls` a blocking twin of every public `Client` method it does not declare, so
    that none is ever missing; declared twins are the typed ones."""
    for name, method in inspect.getmembers(AsyncClient, inspect.isfunction):
        if not name.startswith("_") and not hasattr(cls, name):
            setattr(cls, name, _Call(method))


_add_untyped_twins(SyncClient)

Client = SyncClient
"""`from esdb.client.sync import Client`: the blocking client under the async one's name."""
