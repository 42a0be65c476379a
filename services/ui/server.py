"""The UI's HTTP server: aiohttp on the service's event loop, Jinja2 templates, the session
and form-token checks, errors as pages, and a graceful stop (live streams end first)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import jinja2
from aiohttp import web

from esdb.client import EsdbError
from esdb.contracts.errors import ErrorCode
from esdb.services.ui.access import Session, Sessions
from esdb.services.ui.dashboard import Sampler
from esdb.services.ui.forms import FormError
from esdb.services.ui.present import ago, human_bytes, sparkline

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
COOKIE = "esdb_ui_session"
MAX_REQUEST_BYTES = 1 << 20
SHUTDOWN_GRACE_S = 3.0
NAV = (
    ("dashboard", "/", "Dashboard"),
    ("streams", "/streams", "Streams"),
    ("live", "/live", "Live"),
    ("subscriptions", "/subscriptions", "Subscriptions"),
    ("projections", "/projections", "Projections"),
    ("stores", "/stores", "Stores"),
)
OPEN_PATHS = ("/login", "/static/")
STATUS_OF = {
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.STREAM_NOT_FOUND: 404,
    ErrorCode.STREAM_DELETED: 410,
    ErrorCode.INVALID_REQUEST: 400,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.WRONG_EXPECTED_VERSION: 409,
    ErrorCode.ALREADY_EXISTS: 409,
    ErrorCode.IDEMPOTENCY_CONFLICT: 409,
    ErrorCode.UNAUTHORIZED: 403,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.TIMEOUT: 504,
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class NotYours(Exception):
    """A page asked for a store this session may not see (or that does not exist)."""

    def __init__(self, store: str) -> None:
        super().__init__(store)
        self.store = store


class Ui:
    """What every handler needs: the sessions, the templates, the dashboard's sampler, the
    default store and the event set when the UI stops."""

    def __init__(self, sessions: Sessions, sampler: Sampler, default_store: str) -> None:
        self.sessions = sessions
        self.sampler = sampler
        self.default_store = default_store
        self.closing = asyncio.Event()
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters.update(
            bytes=human_bytes, ago=ago, q=lambda value: quote(str(value), safe="")
        )
        self.templates.globals.update(nav=NAV, urlencode=urlencode, sparkline=sparkline)

    def session(self, request: web.Request) -> Session:
        """The request's session (the middleware put it there)."""
        session: Session = request["session"]
        return session

    async def store(self, request: web.Request) -> tuple[str, list[str], bool]:
        """The store a page is about (`?store=`, else the default one, else the first the
        user may see), the stores the user may see, and whether the user is an admin."""
        session = self.session(request)
        view = await self.sessions.stores(session)
        names = view.names
        asked = request.query.get("store", "").strip()
        if asked:
            if asked not in names:
                view = await self.sessions.stores(session, fresh=True)
                names = view.names
                if asked not in names:
                    raise NotYours(asked)
            return asked, names, view.admin
        if self.default_store in names or not names:
            return self.default_store, names, view.admin
        return names[0], names, view.admin

    def render(
        self,
        request: web.Request,
        template: str,
        *,
        page: str,
        status: int = 200,
        **context: Any,
    ) -> web.Response:
        """A page: the template with what the layout needs."""
        session: Session | None = request.get("session")
        context.setdefault("store", None)
        context.setdefault("stores", [])
        context.setdefault("errors", {})
        text = self.templates.get_template(template).render(
            page=page,
            user=session.user if session else None,
            csrf=session.csrf if session else "",
            login_required=self.sessions.login_required,
            notice=request.query.get("notice", ""),
            path=request.path,
            **context,
        )
        return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def build_app(ui: Ui, routes: list[web.RouteDef]) -> web.Application:
    """The aiohttp application: middlewares, routes and static files."""
    app = web.Application(
        middlewares=[_errors(ui), _sessions(ui)], client_max_size=MAX_REQUEST_BYTES
    )
    app.add_routes(routes)
    app.router.add_static("/static/", HERE / "static", append_version=True)
    return app


def _errors(ui: Ui) -> Any:
    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return ui.render(
                request,
                "error.html",
                page="",
                status=404,
                title="No such page",
                message=f"This UI has no page {request.path}.",
            )
        except web.HTTPException:
            raise
        except NotYours as e:
            return ui.render(
                request,
                "error.html",
                page="",
                status=404,
                title="No such store",
                message=f"There is no store {e.store!r}, or this account may not use it.",
            )
        except EsdbError as e:
            return ui.render(
                request,
                "error.html",
                page="",
                status=STATUS_OF.get(e.code, 500),
                title=_title(e.code),
                message=e.message,
                code=e.code.value,
            )
        except FormError as e:
            return ui.render(
                request,
                "error.html",
                page="",
                status=400,
                title="Invalid request",
                message=e.message,
            )
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            return ui.render(
                request,
                "error.html",
                page="",
                status=500,
                title="Something went wrong",
                message="The UI failed to answer this page; its log says why.",
            )

    return errors


def _title(code: ErrorCode) -> str:
    return {
        ErrorCode.NOT_FOUND: "Not found",
        ErrorCode.STREAM_NOT_FOUND: "No such stream",
        ErrorCode.STREAM_DELETED: "Stream deleted",
        ErrorCode.UNAUTHORIZED: "Not allowed",
        ErrorCode.UNAVAILABLE: "Unavailable",
        ErrorCode.TIMEOUT: "Timed out",
    }.get(code, "Request refused")


def _sessions(ui: Ui) -> Any:
    @web.middleware
    async def sessions(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "POST":
            check_origin(request)
        if request.path.startswith(OPEN_PATHS):
            return await handler(request)
        session = ui.sessions.get(request.cookies.get(COOKIE))
        if session is None:
            if request.method == "GET" and request.headers.get("Accept") != "text/event-stream":
                raise web.HTTPSeeOther("/login?" + urlencode({"next": request.path_qs}))
            raise web.HTTPUnauthorized(text="log in first")
        request["session"] = session
        if request.method == "POST":
            await check_form_token(request, session)
        return await handler(request)

    return sessions


def check_origin(request: web.Request) -> None:
    """A POST must come from a page of this UI: a browser names the page's origin."""
    origin = request.headers.get("Origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.host:
        raise web.HTTPForbidden(text="cross-site request refused")
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        raise web.HTTPForbidden(text="cross-site request refused")


async def check_form_token(request: web.Request, session: Session) -> None:
    """A POST must carry the session's form token, which only this UI's own pages hold, so
    another site cannot make a browser act with its cookie (or, without users, at all)."""
    form = await request.post()
    if form.get("csrf") != session.csrf:
        raise web.HTTPForbidden(text="the form is out of date: reload the page and try again")


def form_fields(form: Any) -> dict[str, str]:
    """A posted form's text fields."""
    return {key: value for key, value in form.items() if isinstance(value, str)}


async def serve(app: web.Application, ui: Ui, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Listen on `host:port` (0: any free port); the runner, and the URL served."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = int(runner.addresses[0][1]) if runner.addresses else port  # what "0" became
    shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return runner, f"http://{shown}:{bound}"


async def stop(runner: web.AppRunner, ui: Ui) -> None:
    """End the live streams, stop taking requests, let those in flight finish."""
    ui.closing.set()
    await runner.cleanup()
