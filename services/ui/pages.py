"""The UI's pages: each handler reads its query or form, asks the API as the session's user,
and renders a template. Forms post back to their page, which redirects with a notice."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import quote, urlencode

import msgspec
from aiohttp import web

from esdb.client import (
    EsdbError,
    InvalidRequest,
    NotFound,
    RecordedEvent,
    StreamDeleted,
    StreamNotFound,
    Unavailable,
)
from esdb.contracts.projections import ProjectionInfo
from esdb.services.ui.access import LoginFailed
from esdb.services.ui.dashboard import cluster
from esdb.services.ui.forms import (
    PAGE_SIZES,
    FormError,
    LiveSelection,
    ProjectionForm,
    StoreForm,
    StreamSearch,
    SubscriptionForm,
    expected_version,
    integer,
    json_object,
    page_size,
)
from esdb.services.ui.live import LiveStream
from esdb.services.ui.present import show_payload, stream_page
from esdb.services.ui.server import COOKIE, Ui, form_fields

log = logging.getLogger(__name__)

DASHBOARD_PUSH_S = 2.0
"""How often an open dashboard is sent fresh figures."""
MAX_SCANNED_STREAMS = 20_000
"""A search reads at most this many stream names per page before it offers to go on."""
PARKED_PAGE = 50


def _url(path: str, **query: Any) -> str:
    given = {key: value for key, value in query.items() if value not in (None, "")}
    return path + ("?" + urlencode(given) if given else "")


def stream_url(stream: str, store: str, **query: Any) -> str:
    """The stream page of `stream`."""
    return _url(f"/streams/{quote(stream, safe='')}", store=store, **query)


def _event_view(event: RecordedEvent) -> dict[str, Any]:
    return {
        "event": event,
        "data": show_payload(event.data, event.content_type),
        "metadata": show_payload(event.metadata, event.content_type),
    }


class Pages:
    """Every route of the UI."""

    def __init__(self, ui: Ui) -> None:
        self.ui = ui

    def routes(self) -> list[web.RouteDef]:
        """The route table."""
        return [
            web.get("/", self.dashboard),
            web.get("/dashboard/events", self.dashboard_events),
            web.get("/login", self.login_page),
            web.post("/login", self.login),
            web.post("/logout", self.logout),
            web.get("/streams", self.streams),
            web.get("/streams/{stream:.+}", self.stream),
            web.post("/streams/{stream:.+}", self.stream_action),
            web.get("/live", self.live),
            web.get("/live/events", self.live_events),
            web.get("/subscriptions", self.subscriptions),
            web.post("/subscriptions", self.create_subscription),
            web.get("/subscriptions/{name}", self.subscription),
            web.post("/subscriptions/{name}", self.subscription_action),
            web.get("/projections", self.projections),
            web.post("/projections", self.save_projection),
            web.get("/stores", self.stores),
            web.post("/stores", self.create_store),
        ]

    # ---- login ----

    async def login_page(self, request: web.Request) -> web.StreamResponse:
        """The login form (straight to the dashboard when the stack has no users)."""
        if not self.ui.sessions.login_required:
            raise web.HTTPSeeOther("/")
        return self.ui.render(request, "login.html", page="login", next=_next(request), error="")

    async def login(self, request: web.Request) -> web.StreamResponse:
        """Check the user's name and password with the servers; start a session."""
        form = form_fields(await request.post())
        target = _next(request, form.get("next"))
        try:
            session = await self.ui.sessions.login(
                form.get("user", "").strip(), form.get("password", "")
            )
        except LoginFailed as e:
            return self.ui.render(
                request,
                "login.html",
                page="login",
                status=401,
                next=target,
                error=str(e),
                user_name=form.get("user", ""),
            )
        response = web.HTTPSeeOther(target)
        response.set_cookie(COOKIE, session.token, httponly=True, samesite="Strict", path="/")
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        """End the session."""
        await self.ui.sessions.logout(request.cookies.get(COOKIE))
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        raise response

    # ---- dashboard ----

    async def dashboard(self, request: web.Request) -> web.StreamResponse:
        """Nodes, leader, lag, log hash agreement, rates and disk use."""
        store, stores, _ = await self.ui.store(request)
        session = self.ui.session(request)
        return self.ui.render(
            request,
            "dashboard.html",
            page="dashboard",
            store=store,
            stores=stores,
            cluster=await cluster(session.account),
            figures=self.ui.sampler.figures(stores),
        )

    async def dashboard_events(self, request: web.Request) -> web.StreamResponse:
        """The dashboard's figures, pushed every `DASHBOARD_PUSH_S` as server-sent events."""
        session = self.ui.session(request)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await response.prepare(request)
        closing = asyncio.ensure_future(self.ui.closing.wait())
        try:
            while not self.ui.closing.is_set() and not session.account.nc.is_closed:
                view = await self.ui.sessions.stores(session)
                figures = {
                    "cluster": await cluster(session.account),
                    **self.ui.sampler.figures(view.names),
                }
                await response.write(
                    b"event: figures\ndata: " + msgspec.json.encode(figures) + b"\n\n"
                )
                await asyncio.wait({closing}, timeout=DASHBOARD_PUSH_S)
        except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            closing.cancel()
        return response

    # ---- streams ----

    async def streams(self, request: web.Request) -> web.StreamResponse:
        """Streams in name order, searched by prefix or category, a page at a time."""
        store, stores, _ = await self.ui.store(request)
        try:
            search = StreamSearch.parse(request.query)
            limit = page_size(request.query)
        except FormError as e:
            return self.ui.render(
                request,
                "streams.html",
                page="streams",
                status=400,
                store=store,
                stores=stores,
                search=StreamSearch(),
                rows=[],
                more=None,
                limit=50,
                page_sizes=PAGE_SIZES,
                paged=False,
                errors={e.field: e.message},
            )
        client = self.ui.session(request).account.client(store)
        after = request.query.get("after") or search.first_after()
        rows: list[Any] = []
        more: str | None = None
        scanned = 0
        while True:
            page = await client.list_streams(
                after=after, limit=max(limit, 500) if search.term else limit
            )
            stop = False
            for summary in page.streams:
                scanned += 1
                if search.past(summary.stream):
                    stop = True
                    break
                if search.matches(summary.stream):
                    rows.append(summary)
                    if len(rows) == limit:
                        more = summary.stream
                        stop = True
                        break
            if stop or page.next is None:
                if not stop and page.next is None:
                    more = None
                break
            after = page.next
            if scanned >= MAX_SCANNED_STREAMS:
                more = after
                break
        return self.ui.render(
            request,
            "streams.html",
            page="streams",
            store=store,
            stores=stores,
            search=search,
            rows=rows,
            more=more,
            limit=limit,
            page_sizes=PAGE_SIZES,
            stream_url=stream_url,
            paged=bool(request.query.get("after")),
        )

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """A stream's events newest first, its metadata, and delete/tombstone."""
        store, stores, _ = await self.ui.store(request)
        stream = request.match_info["stream"]
        return await self._stream_page(request, store, stores, stream)

    async def _stream_page(
        self,
        request: web.Request,
        store: str,
        stores: list[str],
        stream: str,
        *,
        status: int = 200,
        errors: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
    ) -> web.StreamResponse:
        client = self.ui.session(request).account.client(store)
        context: dict[str, Any] = {
            "store": store,
            "stores": stores,
            "stream": stream,
            "stream_url": stream_url,
            "errors": errors or {},
            "form": form or {},
            "confirm": request.query.get("confirm", ""),
            "page_sizes": PAGE_SIZES,
        }
        try:
            limit = page_size(request.query)
            start = integer(request.query, "from", -1, low=0)
        except FormError as e:
            limit, start = 50, -1
            context["errors"] = {**context["errors"], e.field: e.message}
            status = 400
        context["limit"] = limit
        try:
            info = await client.stream_info(stream)
        except StreamNotFound:
            return self.ui.render(
                request, "stream.html", page="streams", status=404, info=None, events=[], **context
            )
        context["info"] = info
        context["metadata_text"] = (form or {}).get(
            "metadata", json.dumps(info.metadata, indent=2, sort_keys=True)
        )
        events: list[dict[str, Any]] = []
        paging = None
        if info.state == "active":
            try:
                page = await client.read_stream(
                    stream,
                    from_="end" if start < 0 else start,
                    direction="backward",
                    limit=limit,
                )
            except (StreamNotFound, StreamDeleted):
                page = None
            if page is not None:
                events = [_event_view(event) for event in page.events]
                top = page.events[0].version if page.events else None
                paging = stream_page(top, page.next, page.last_version, limit)
        return self.ui.render(
            request,
            "stream.html",
            page="streams",
            status=status,
            events=events,
            paging=paging,
            **context,
        )

    async def stream_action(self, request: web.Request) -> web.StreamResponse:
        """Edit the metadata, delete or tombstone (after typing the stream's name)."""
        store, stores, _ = await self.ui.store(request)
        stream = request.match_info["stream"]
        form = form_fields(await request.post())
        action = form.get("action", "")
        client = self.ui.session(request).account.client(store)
        try:
            if action == "metadata":
                metadata = json_object(form, "metadata")
                version = expected_version(form)
                await client.set_stream_metadata(stream, metadata, expected_version=version)
                raise web.HTTPSeeOther(stream_url(stream, store, notice="Metadata saved."))
            if action in ("delete", "tombstone"):
                if form.get("confirm", "") != stream:
                    raise FormError(
                        "confirm", f"type the stream's name, {stream}, to confirm the {action}"
                    )
                if action == "delete":
                    await client.delete_stream(stream)
                else:
                    await client.tombstone_stream(stream)
                done = "deleted" if action == "delete" else "tombstoned"
                raise web.HTTPSeeOther(
                    _url("/streams", store=store, notice=f"Stream {stream} {done}.")
                )
            raise FormError("action", f"unknown action {action!r}")
        except FormError as e:
            return await self._stream_page(
                request, store, stores, stream, status=400, errors={e.field: e.message}, form=form
            )
        except (InvalidRequest, EsdbError) as e:
            if isinstance(e, Unavailable):
                raise
            field = "metadata" if action == "metadata" else "confirm"
            return await self._stream_page(
                request,
                store,
                stores,
                stream,
                status=409 if e.code.value == "wrong_expected_version" else 400,
                errors={field: e.message},
                form=form,
            )

    # ---- live ----

    async def live(self, request: web.Request) -> web.StreamResponse:
        """The live page: its selection form; events arrive through `live_events`."""
        store, stores, _ = await self.ui.store(request)
        errors: dict[str, str] = {}
        status = 200
        try:
            selection = LiveSelection.parse(request.query)
        except FormError as e:
            selection, errors, status = LiveSelection(), {e.field: e.message}, 400
        source = _url(
            "/live/events",
            store=store,
            kind=selection.kind,
            value=selection.value if selection.kind != "all" else "",
        )
        return self.ui.render(
            request,
            "live.html",
            page="live",
            status=status,
            store=store,
            stores=stores,
            selection=selection,
            source=source if not errors else "",
            errors=errors,
            stream_url=stream_url,
        )

    async def live_events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events of the selection, from `after` (or `Last-Event-ID`) on."""
        store, _, _ = await self.ui.store(request)
        selection = LiveSelection.parse(request.query)
        resume = request.headers.get("Last-Event-ID") or request.query.get("after")
        after = None
        if resume:
            try:
                after = max(0, int(resume))
            except ValueError:
                raise web.HTTPBadRequest(text="after is a position") from None
        stream = LiveStream(
            self.ui.session(request).account, store, selection, after, self.ui.closing
        )
        return await stream.run(request)

    # ---- persistent subscriptions ----

    async def subscriptions(self, request: web.Request) -> web.StreamResponse:
        """Every consumer group of the store with its lag, in flight, consumers and parked."""
        store, stores, _ = await self.ui.store(request)
        return await self._subscriptions_page(request, store, stores)

    async def _subscriptions_page(
        self,
        request: web.Request,
        store: str,
        stores: list[str],
        *,
        status: int = 200,
        errors: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
    ) -> web.StreamResponse:
        client = self.ui.session(request).account.client(store)
        problem = ""
        try:
            groups = await client.list_subscriptions()
        except Unavailable as e:
            groups, problem = [], e.message
        return self.ui.render(
            request,
            "subscriptions.html",
            page="subscriptions",
            status=status,
            store=store,
            stores=stores,
            groups=groups,
            problem=problem,
            errors=errors or {},
            form=form or {},
        )

    async def create_subscription(self, request: web.Request) -> web.StreamResponse:
        """Create a consumer group from the form."""
        store, stores, _ = await self.ui.store(request)
        form = form_fields(await request.post())
        client = self.ui.session(request).account.client(store)
        try:
            wanted = SubscriptionForm.parse(form)
            await client.create_subscription(
                wanted.name,
                **wanted.selector,
                start=wanted.start,
                message_timeout_ms=wanted.message_timeout_ms,
                max_retries=wanted.max_retries,
                max_in_flight=wanted.max_in_flight,
            )
        except FormError as e:
            return await self._subscriptions_page(
                request, store, stores, status=400, errors={e.field: e.message}, form=form
            )
        except EsdbError as e:
            if isinstance(e, Unavailable):
                raise
            field = str(e.details.get("field", "subscription")).split(".")[-1]
            if field not in ("subscription", "value", "start"):
                field = "subscription" if e.code.value == "already_exists" else "value"
            return await self._subscriptions_page(
                request, store, stores, status=400, errors={field: e.message}, form=form
            )
        raise web.HTTPSeeOther(
            _url(f"/subscriptions/{wanted.name}", store=store, notice="Subscription created.")
        )

    async def subscription(self, request: web.Request) -> web.StreamResponse:
        """One group: its figures, consumers, and parked events with their reasons."""
        store, stores, _ = await self.ui.store(request)
        return await self._subscription_page(request, store, stores, request.match_info["name"])

    async def _subscription_page(
        self,
        request: web.Request,
        store: str,
        stores: list[str],
        name: str,
        *,
        status: int = 200,
        errors: dict[str, str] | None = None,
    ) -> web.StreamResponse:
        client = self.ui.session(request).account.client(store)
        after = integer(request.query, "after", 0, low=0)
        try:
            info = await client.subscription_info(name)
        except NotFound:
            return self.ui.render(
                request,
                "subscription.html",
                page="subscriptions",
                status=404,
                store=store,
                stores=stores,
                name=name,
                info=None,
                parked=[],
                next_after=None,
                confirm="",
            )
        parked = await client.list_parked(name, after=after, limit=PARKED_PAGE)
        events = await asyncio.gather(
            *(self._event_at(client, item.position) for item in parked.parked)
        )
        return self.ui.render(
            request,
            "subscription.html",
            page="subscriptions",
            status=status,
            store=store,
            stores=stores,
            name=name,
            info=info,
            parked=list(zip(parked.parked, events, strict=True)),
            next_after=parked.next,
            confirm=request.query.get("confirm", ""),
            errors=errors or {},
            stream_url=stream_url,
        )

    async def _event_at(self, client: Any, position: int) -> dict[str, Any] | None:
        try:
            page = await client.read_all(from_position=position, limit=1)
        except EsdbError:
            return None
        if not page.events or page.events[0].position != position:
            return None
        return _event_view(page.events[0])

    async def subscription_action(self, request: web.Request) -> web.StreamResponse:
        """Replay the parked events, or delete the group (after typing its name)."""
        store, stores, _ = await self.ui.store(request)
        name = request.match_info["name"]
        form = form_fields(await request.post())
        action = form.get("action", "")
        client = self.ui.session(request).account.client(store)
        try:
            if action == "replay":
                replaying = await client.replay_parked(name)
                notice = f"Replaying {replaying} parked event{'s' if replaying != 1 else ''}."
                raise web.HTTPSeeOther(_url(f"/subscriptions/{name}", store=store, notice=notice))
            if action == "delete":
                if form.get("confirm", "") != name:
                    raise FormError("confirm", f"type the subscription's name, {name}, to confirm")
                await client.delete_subscription(name)
                raise web.HTTPSeeOther(
                    _url("/subscriptions", store=store, notice=f"Subscription {name} deleted.")
                )
            raise FormError("action", f"unknown action {action!r}")
        except FormError as e:
            return await self._subscription_page(
                request, store, stores, name, status=400, errors={e.field: e.message}
            )

    # ---- projections ----

    async def projections(self, request: web.Request) -> web.StreamResponse:
        """The projections with status, position, lag and counts; one shown with its state,
        result and query (`?show=NAME`); the form to create one or edit the one shown."""
        store, stores, _ = await self.ui.store(request)
        return await self._projections_page(request, store, stores)

    async def _projections_page(
        self,
        request: web.Request,
        store: str,
        stores: list[str],
        *,
        status: int = 200,
        errors: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
    ) -> web.StreamResponse:
        client = self.ui.session(request).account.client(store)
        available = True
        projections: list[ProjectionInfo] = []
        shown: dict[str, Any] | None = None
        try:
            projections = await client.list_projections()
        except Unavailable:
            available = False  # no projection service answers on this stack
        name = request.query.get("show", "")
        chosen = next((p for p in projections if p.name == name), None)
        if chosen is not None:
            state = await client.projection_state(name)
            result = await client.projection_result(name)
            shown = {
                "info": chosen,
                "state_text": json.dumps(state, indent=2),
                "result_text": json.dumps(result, indent=2),
            }
            if not form:
                form = {
                    "projection": name,
                    "query": chosen.query,
                    "emit_enabled": "on" if chosen.emit_enabled else "",
                    "mode": "update",
                }
        return self.ui.render(
            request,
            "projections.html",
            page="projections",
            status=status,
            store=store,
            stores=stores,
            available=available,
            projections=projections,
            shown=shown,
            errors=errors or {},
            form=form or {},
        )

    async def save_projection(self, request: web.Request) -> web.StreamResponse:
        """Create a projection, or update the query of one (and whether it may emit)."""
        store, stores, _ = await self.ui.store(request)
        form = form_fields(await request.post())
        client = self.ui.session(request).account.client(store)
        try:
            wanted = ProjectionForm.parse(form)
            if form.get("mode") == "update":
                await client.update_projection(
                    wanted.name, query=wanted.query, emit_enabled=wanted.emit_enabled
                )
            else:
                await client.create_projection(
                    wanted.name,
                    wanted.query,
                    start=wanted.start,
                    emit_enabled=wanted.emit_enabled,
                )
        except FormError as e:
            return await self._projections_page(
                request, store, stores, status=400, errors={e.field: e.message}, form=form
            )
        except EsdbError as e:
            if isinstance(e, Unavailable):
                raise
            field = "projection" if e.details.get("field") == "name" else "query"
            return await self._projections_page(
                request, store, stores, status=400, errors={field: e.message}, form=form
            )
        raise web.HTTPSeeOther(
            _url("/projections", store=store, show=wanted.name, notice="Projection saved.")
        )

    # ---- stores ----

    async def stores(self, request: web.Request) -> web.StreamResponse:
        """The stores this user may see, with their position and size."""
        store, stores, admin = await self.ui.store(request)
        return await self._stores_page(request, store, stores, admin)

    async def _stores_page(
        self,
        request: web.Request,
        store: str,
        stores: list[str],
        admin: bool,
        *,
        status: int = 200,
        errors: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
    ) -> web.StreamResponse:
        view = await self.ui.sessions.stores(self.ui.session(request))
        statuses = dict(self.ui.sampler.statuses)
        unsampled = [info.store for info in view.stores if info.store not in statuses]
        if unsampled:  # created since the dashboard's last sample: ask now
            system = self.ui.sessions.own.client("_sys")
            answers = await asyncio.gather(
                *(system.store_status(name) for name in unsampled), return_exceptions=True
            )
            for name, answer in zip(unsampled, answers, strict=True):
                if not isinstance(answer, BaseException):
                    statuses[name] = answer
        rows = [{"info": info, "status": statuses.get(info.store)} for info in view.stores]
        return self.ui.render(
            request,
            "stores.html",
            page="stores",
            status=status,
            store=store,
            stores=stores,
            rows=rows,
            admin=admin,
            errors=errors or {},
            form=form or {},
        )

    async def create_store(self, request: web.Request) -> web.StreamResponse:
        """Create a store (admins)."""
        store, stores, admin = await self.ui.store(request)
        form = form_fields(await request.post())
        session = self.ui.session(request)
        try:
            wanted = StoreForm.parse(form)
            await session.account.client("_sys").create_store(
                wanted.name, description=wanted.description, tags=wanted.tags
            )
        except FormError as e:
            return await self._stores_page(
                request, store, stores, admin, status=400, errors={e.field: e.message}, form=form
            )
        except EsdbError as e:
            if isinstance(e, Unavailable):
                raise
            return await self._stores_page(
                request, store, stores, admin, status=400, errors={"store": e.message}, form=form
            )
        await self.ui.sessions.stores(session, fresh=True)
        raise web.HTTPSeeOther(
            _url("/stores", store=wanted.name, notice=f"Store {wanted.name} created.")
        )


def _next(request: web.Request, given: str | None = None) -> str:
    """Where a login goes on to: a path of this UI only."""
    target = given if given is not None else request.query.get("next", "/")
    if not target.startswith("/") or target.startswith("//"):
        return "/"
    return target
