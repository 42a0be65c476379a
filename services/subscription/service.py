"""The persistent-subscription API and every group's delivery, beside the writer leader."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from esdb.contracts.errors import AlreadyExists, InvalidRequest, NotFound
from esdb.contracts.log import LogOp, SubscriptionOp
from esdb.contracts.restore import SubscriptionRestoreRequest
from esdb.contracts.subjects import INTERNAL_PREFIX, Op
from esdb.contracts.subscriptions import (
    MAX_POSITION,
    NACK_ACTIONS,
    AckRequest,
    AckResult,
    NackRequest,
    ParkedEvent,
    ParkedListRequest,
    ParkedPage,
    ParkedRecord,
    Receipt,
    ReplayResult,
    SubscriptionCreateRequest,
    SubscriptionDefinition,
    SubscriptionDeleted,
    SubscriptionInfo,
    SubscriptionList,
    SubscriptionListRequest,
    SubscriptionRequest,
)
from esdb.contracts.watches import WatchRequest
from esdb.services.subscription.group import ConsumerGroup, Publish
from esdb.services.subscription.restoring import check_group, new_definition, restored_group
from esdb.services.subscription.selection import selection_predicate
from esdb.services.subscription.watches import Watches
from esdb.shared.cluster_view import ClusterView, follow_leader
from esdb.shared.service_api import Answer, Endpoint
from esdb.shared.storage import item_keys
from esdb.shared.storage.catalog import OpenSystem, read_checkpoint, registered_stores
from esdb.shared.storage.port import StoreReader
from esdb.shared.tasks import cancel_and_wait
from esdb.shared.wire import Codec, decode_request
from esdb.shared.writer_ops import LogOps

log = logging.getLogger(__name__)

_definition_encoder = msgspec.msgpack.Encoder()
_definition_decoder = msgspec.msgpack.Decoder(SubscriptionDefinition)
_parked_decoder = msgspec.msgpack.Decoder(ParkedRecord)
_receipt_decoder = msgspec.json.Decoder(Receipt)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NO_RESPONDERS_STATUS = "503"
RESTART_DELAY_S = 1.0
REFRESH_S = 0.25
"""How often an active service looks whether it still needs applied notices (watches
expire, groups come and go)."""
MAX_PARKED_PAGE = 1_000


class SubscriptionService:
    """Owns every persistent subscription of the node's stores while `activate`d."""

    def __init__(
        self,
        view: ClusterView,
        stores: Callable[[str], StoreReader],
        system: OpenSystem,
        endpoint: Endpoint,
        publish: Publish,
        log_ops: LogOps,
    ) -> None:
        self._view = view
        self._stores = stores
        self._system = system
        self._endpoint = endpoint
        self._publish = publish
        self._log_ops = log_ops
        self._active = False
        self._hearing = False
        self._refreshing: asyncio.Task[None] | None = None
        self._groups: dict[tuple[str, str], tuple[ConsumerGroup, asyncio.Task[None]]] = {}
        self._lock = asyncio.Lock()
        self._reply_prefix = f"{INTERNAL_PREFIX}.subs.{view.node_id}.{uuid.uuid4().hex[:12]}"
        self._watches = Watches(publish, stores)
        self._handlers: dict[str, Answer] = {
            Op.SUBSCRIPTION_CREATE: self._create,
            Op.SUBSCRIPTION_DELETE: self._delete,
            Op.SUBSCRIPTION_LIST: self._list,
            Op.SUBSCRIPTION_INFO: self._info,
            Op.SUBSCRIPTION_PARKED: self._parked,
            Op.ACK: self._ack,
            Op.NACK: self._nack,
            Op.REPLAY_PARKED: self._replay,
            Op.WATCH: self._watch,
            Op.SUBSCRIPTION_RESTORE: self._restore,
        }

    @property
    def active(self) -> bool:
        """Whether this node serves subscriptions now."""
        return self._active

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`, serve and deliver while this node's writer leads (and has applied
        the whole log, so every group and checkpoint the log holds is here to load)."""
        await follow_leader(
            self._view, stop, start=self.activate, end=self.deactivate, serving=True
        )

    async def activate(self) -> None:
        """Load every group from this node's stores, start delivering, and take requests."""
        log.info("beside the leader: serving subscriptions")
        with self._system() as system:
            if system is not None:
                self._load(system)
        log.info("serving %d persistent subscriptions", len(self._groups))
        await self._endpoint.open(self._handlers, {f"{self._reply_prefix}.>": self._on_receipt})
        self._active = True
        await self.refresh_notices()
        self._watches.start(self._view.applied_ticket)
        self._refreshing = asyncio.create_task(self._refresh_every())

    def _load(self, system: StoreReader) -> None:
        for store in registered_stores(system):
            reader = self._stores(store)
            for _, raw in reader.items(item_keys.SUBSCRIPTIONS, b"", limit=1 << 30):
                definition = _definition_decoder.decode(raw)
                checkpoint = read_checkpoint(system, store, definition.checkpoint_name)
                self._start(store, definition, checkpoint)

    async def deactivate(self) -> None:
        """Stop delivering and answering (another node's service takes over)."""
        log.info("not beside the leader any more: handing subscriptions over")
        self._active = False
        await self._endpoint.close()
        refreshing, self._refreshing = self._refreshing, None
        await cancel_and_wait(refreshing)
        await self.refresh_notices()
        groups, self._groups = list(self._groups.values()), {}
        await cancel_and_wait(*(task for _, task in groups))
        await self._watches.stop()

    def _start(self, store: str, definition: SubscriptionDefinition, checkpoint: int) -> None:
        group = ConsumerGroup(
            store,
            definition,
            checkpoint=checkpoint,
            reader=lambda: self._stores(store),
            predicate=selection_predicate(store, definition.selector),
            publish=self._publish,
            log_ops=self._log_ops,
            reply_prefix=self._reply_prefix,
        )
        key = (store, definition.name)
        task = asyncio.create_task(self._deliver(key, group))
        self._groups[key] = (group, task)

    async def _deliver(self, key: tuple[str, str], group: ConsumerGroup) -> None:
        """Run a group; if it fails, log it and start over from its recorded checkpoint."""
        while True:
            try:
                await group.run(self._view.applied_ticket)
            except NotFound:
                log.info("store %s is gone; subscription %s with it", *key)
                self._groups.pop(key, None)
                return
            except Exception:
                log.exception("subscription %s/%s failed; restarting it", *key)
            await asyncio.sleep(RESTART_DELAY_S)
            group = group.restarted()
            self._groups[key] = (group, self._groups[key][1])

    # -- requests ------------------------------------------------------------------------

    async def refresh_notices(self) -> None:
        """Hear the writer's per-entry notices only while something here delivers: an idle
        or follower service would otherwise wake on every append for nothing."""
        wanted = self.active and bool(self._groups or self._watches.open_count)
        if wanted and not self._hearing:
            self._hearing = True
            await self._view.start_hearing()  # wakes everyone: entries applied meanwhile
        elif not wanted and self._hearing:
            self._hearing = False
            await self._view.stop_hearing()

    async def _refresh_every(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            await self.refresh_notices()

    async def _on_receipt(self, subject: str, data: bytes, headers: Mapping[str, str]) -> None:
        tokens = subject.split(".")
        try:
            store, name, position = tokens[-3], tokens[-2], int(tokens[-1])
        except (ValueError, IndexError):
            return
        found = self._groups.get((store, name))
        if found is None:
            return
        group = found[0]
        if not data and headers.get("Status") == NO_RESPONDERS_STATUS:
            group.unheard(position)
            return
        try:
            receipt = _receipt_decoder.decode(data)
        except msgspec.DecodeError:
            return  # not a receipt; the delivery stays in flight until its timeout
        group.receipt(position, receipt.consumer, receipt.accepted)

    def _group(self, store: str, name: str) -> ConsumerGroup:
        found = self._groups.get((store, name))
        if found is None:
            raise NotFound(
                f"no subscription {name!r} in store {store!r}", field="subscription", store=store
            )
        return found[0]

    async def _create(self, store: str, data: bytes, codec: Codec) -> msgspec.Struct:
        request = decode_request(data, SubscriptionCreateRequest, codec)
        check_group(store, request)
        reader = self._stores(store)
        start = _start_position(request.start, reader)
        definition = new_definition(request, start)
        encoded = _definition_encoder.encode(definition)
        ops: list[LogOp] = [SubscriptionOp(store, definition.name, encoded)]
        return await self._register(store, definition, ops, start - 1)

    async def _restore(self, store: str, data: bytes, codec: Codec) -> msgspec.Struct:
        request = decode_request(data, SubscriptionRestoreRequest, codec)
        definition, ops = restored_group(store, request, self._stores(store))
        return await self._register(store, definition, ops, request.checkpoint)

    async def _register(
        self, store: str, definition: SubscriptionDefinition, ops: list[LogOp], checkpoint: int
    ) -> msgspec.Struct:
        """Log a new group's ops and start delivering from `checkpoint`."""
        async with self._lock:
            if (store, definition.name) in self._groups:
                raise AlreadyExists(
                    f"subscription {definition.name!r} already exists", field="subscription"
                )
            await self._log_ops(ops)
            self._start(store, definition, checkpoint)
        await self.refresh_notices()
        return self._describe(store, self._group(store, definition.name))

    async def _delete(self, store: str, data: bytes, codec: Codec) -> msgspec.Struct:
        request = decode_request(data, SubscriptionRequest, codec)
        async with self._lock:
            self._group(store, request.subscription)
            await self._log_ops([SubscriptionOp(store, request.subscription, b"")])
            _, task = self._groups.pop((store, request.subscription))
            await cancel_and_wait(task)
        await self.refresh_notices()
        return SubscriptionDeleted(subscription=request.subscription)

    async def _list(self, store: str, data: bytes, codec: Codec) -> msgspec.Struct:
        decode_request(data, SubscriptionListRequest, codec)
        self._stores(store)  # NotFound for a store that does not exist
        groups = sorted((n, g) for (s, n), (g, _) in self._groups.items() if s == store)
        return SubscriptionList(subscriptions=[self._describe(store, g) for _, g in groups])

    async def _info(self, store: str, data: bytes, codec: Codec) -> msgspec.Struct:
        request = decode_request(data, SubscriptionRequest, codec)
        return self._describe(store, self._group(store, request.subscription))

    def levels(self) -> list[tuple[str, SubscriptionInfo]]:
        """(store, info) of every subscription served now: what `/metrics` shows."""
        found = []
        for (store, _), (group, _) in sorted(self._groups.items()):
            try:
                found.append((store, self._describe(store, group)))
            except NotFound:
                continue  # its store was removed a moment ago
        return found

    def _describe(self, store: str, group: ConsumerGroup) -> SubscriptionInfo:
        definition = group.definition
        reader = self._stores(store)
        last = reader.last_position()
        parked = reader.count_items(item_keys.PARKED, item_keys.parked_prefix(definition.name))
        return SubscriptionInfo(
            subscription=definition.name,
            subject=group.subject,
            selector=definition.selector,
            start_position=definition.start_position,
            message_timeout_ms=definition.message_timeout_ms,
            max_retries=definition.max_retries,
            max_in_flight=definition.max_in_flight,
            checkpoint=group.checkpoint,
            last_position=last,
            lag=max(0, last - group.checkpoint),
            in_flight=group.in_flight,
            parked=parked,
            consumers=group.consumers(),
            resolve_links=definition.resolve_links,
        )

    async def _ack(self, store: str, data: bytes, codec: Codec) -> msgspec.Struct:
        request = decode_request(data, AckRequest, codec)
        group = self._group(store, request.subscription)
        return AckResult(settled=group.ack(request.positions, request.consumer))

    async def _nack(self, store: str, data: bytes, codec: Codec) -> msgspec.Struct:
        request = decode_request(data, NackRequest, codec)
        if request.action not in NACK_ACTIONS:
            raise InvalidRequest(
                f"action must be one of {', '.join(NACK_ACTIONS)}, not {request.action!r}",
                field="action",
            )
        group = self._group(store, request.subscription)
        settled = group.nack(request.positions, request.action, request.reason, request.consumer)
        return AckResult(settled=settled)

    async def _replay(self, store: str, data: bytes, codec: Codec) -> msgspec.Struct:
        request = decode_request(data, SubscriptionRequest, codec)
        group = self._group(store, request.subscription)
        reader = self._stores(store)
        count = reader.count_items(item_keys.PARKED, item_keys.parked_prefix(request.subscription))
        group.replay_parked()
        return ReplayResult(replaying=count)

    async def _parked(self, store: str, data: bytes, codec: Codec) -> msgspec.Struct:
        request = decode_request(data, ParkedListRequest, codec)
        if not 1 <= request.limit <= MAX_PARKED_PAGE:
            raise InvalidRequest(f"limit must be 1 to {MAX_PARKED_PAGE}", field="limit")
        self._group(store, request.subscription)
        reader = self._stores(store)
        name = request.subscription
        page = reader.items(
            item_keys.PARKED,
            item_keys.parked_prefix(name),
            after=item_keys.parked_key(name, max(request.after, 0)),
            limit=request.limit + 1,
        )
        events = [_parked_event(key, raw) for key, raw in page[: request.limit]]
        more = len(page) > request.limit
        return ParkedPage(parked=events, next=events[-1].position if more else None)

    async def _watch(self, store: str, data: bytes, codec: Codec) -> msgspec.Struct:
        request = decode_request(data, WatchRequest, codec)
        opened = self._watches.open(store, request, selection_predicate(store, request.selector))
        await self.refresh_notices()
        return opened


def _start_position(start: Any, reader: StoreReader) -> int:
    if start == "start":
        return 1
    if start == "end":
        return reader.last_position() + 1
    if isinstance(start, int) and not isinstance(start, bool) and 1 <= start <= MAX_POSITION:
        return start
    raise InvalidRequest(
        f'start must be "start", "end" or a position from 1 to {MAX_POSITION}', field="start"
    )


def _parked_event(key: bytes, raw: bytes) -> ParkedEvent:
    record = _parked_decoder.decode(raw)
    return ParkedEvent(
        position=item_keys.parked_position(key),
        reason=record.reason,
        parked=_EPOCH + timedelta(microseconds=record.parked_us),
    )
