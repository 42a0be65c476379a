"""Entry point: `python -m esdb.services.ui`: the admin web UI on `ESDB_UI_HOST:ESDB_UI_PORT`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from esdb.client import Unavailable
from esdb.services.ui.access import Account, Sessions, requires_login
from esdb.services.ui.dashboard import Sampler
from esdb.services.ui.pages import Pages
from esdb.services.ui.server import Ui, build_app, serve, stop
from esdb.shared.files import write_atomically
from esdb.shared.nats_connection import tls_context
from esdb.shared.service_runtime import EXIT_REFUSED, run_service
from esdb.shared.settings import Settings
from esdb.shared.telemetry import Telemetry

log = logging.getLogger("esdb.ui")

URL_FILE = "ui.url"
"""Beside the process's `ESDB_HTTP_URL_FILE`: where it writes the address the UI serves."""
EXPIRE_EVERY_S = 60.0


async def run(settings: Settings, stop_event: asyncio.Event, telemetry: Telemetry) -> None:
    """Composition root: the UI's own connection, the sessions, the dashboard's sampler and
    the HTTP server; serves until `stop_event`, then ends live streams, stops taking
    requests and closes every session's connection."""
    tls = tls_context(settings.nats_url, settings.tls_ca_file)
    timeout = settings.timeout_ms / 1000
    own = await _connect(settings, timeout, tls, stop_event)
    if own is None:
        return
    telemetry.ready_when(_connected(own))
    run_dir = Path(settings.http_url_file).parent if settings.http_url_file else None
    sessions = Sessions(
        settings.nats_url,
        own,
        timeout=timeout,
        tls=tls,
        login_required=requires_login(settings.nats_url),
    )
    sampler = Sampler(own, run_dir)
    ui = Ui(sessions, sampler, settings.default_store)
    app = build_app(ui, Pages(ui).routes())
    try:
        runner, url = await serve(app, ui, settings.ui_host, settings.ui_port)
    except OSError as e:
        log.error("cannot serve the UI on %s:%d: %s", settings.ui_host, settings.ui_port, e)
        await own.close()
        raise SystemExit(EXIT_REFUSED) from e
    if run_dir is not None:
        write_atomically(run_dir / URL_FILE, url + "\n")
    log.info("web UI on %s", url)
    background = [
        asyncio.create_task(sampler.run(stop_event)),
        asyncio.create_task(_expire_sessions(sessions, stop_event)),
    ]
    try:
        await stop_event.wait()
    finally:
        await stop(runner, ui)
        for task in background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await sessions.close()
        await own.close()


async def _connect(
    settings: Settings, timeout: float, tls: object, stop_event: asyncio.Event
) -> Account | None:
    """The UI's own connection, tried until it works or the UI is stopped."""
    while not stop_event.is_set():
        try:
            return await Account.open(settings.nats_url, None, timeout=timeout, tls=tls)  # type: ignore[arg-type]
        except Unavailable as e:
            log.warning("%s; trying again", e.message)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_event.wait(), 1.0)
    return None


def _connected(account: Account):  # type: ignore[no-untyped-def]
    async def check() -> str | None:
        return None if account.nc.is_connected else "not connected to NATS"

    return check


async def _expire_sessions(sessions: Sessions, stop_event: asyncio.Event) -> None:
    while not stop_event.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_event.wait(), EXPIRE_EVERY_S)
        await sessions.expire_idle()


def main() -> None:
    """Run the UI until SIGINT/SIGTERM."""
    run_service("ui", run)


if __name__ == "__main__":
    main()
