"""Running a service process: logging, telemetry and its HTTP endpoint, signal handling,
graceful stop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from esdb.shared.allocator import tune_malloc
from esdb.shared.files import write_atomically
from esdb.shared.service_logging import configure_logging
from esdb.shared.settings import Settings, SettingsError, load_settings
from esdb.shared.status_server import bound_port, reachable_url, start_status_server
from esdb.shared.telemetry import Telemetry
from esdb.shared.tracing import service_tracer, setup_tracing

ServiceMain = Callable[[Settings, asyncio.Event, Telemetry], Coroutine[Any, Any, None]]


SHUTDOWN_GRACE_S = 8.0
EXIT_REFUSED = 78
"""A service's exit status when it must not run as configured (EX_CONFIG): the supervisor
stops the stack with the service's message instead of restarting it."""


def _exit_now(name: str) -> None:
    logging.getLogger(name).error("graceful stop took over %.0f s; exiting now", SHUTDOWN_GRACE_S)
    logging.shutdown()
    os._exit(1)


def run_service(name: str, service_main: ServiceMain) -> None:
    """Load settings, run `service_main` until SIGINT/SIGTERM, then let it stop cleanly;
    serve `/metrics`, `/healthz` and `/readyz` on `ESDB_METRICS_PORT` meanwhile (if not 0,
    or on any port when `ESDB_HTTP_URL_FILE` asks where)."""
    tune_malloc()
    try:
        settings = load_settings()
        provider = setup_tracing(settings, name)
    except SettingsError as e:
        print(f"esdb {name}: invalid configuration: {e}", file=sys.stderr)
        raise SystemExit(2) from e
    configure_logging(
        settings.log_level, name, log_format=settings.log_format, node=settings.node_id
    )
    telemetry = Telemetry.create(name, settings.node_id, service_tracer(name))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def begin_stop() -> None:
            stop.set()
            # A graceful stop needs NATS; when NATS is gone too, do not hang on it.
            loop.call_later(SHUTDOWN_GRACE_S, _exit_now, name)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, begin_stop)
        server = await _status_server(name, settings, telemetry)
        try:
            await service_main(settings, stop, telemetry)
        finally:
            if server is not None:
                server.close()

    try:
        asyncio.run(main())
    finally:
        if provider is not None:
            provider.shutdown()  # exports the spans still buffered


async def _status_server(
    name: str, settings: Settings, telemetry: Telemetry
) -> asyncio.Server | None:
    if not settings.metrics_port and not settings.http_url_file:
        return None
    try:
        server = await start_status_server(telemetry, settings.metrics_host, settings.metrics_port)
    except OSError as e:
        logging.getLogger(name).error(
            "cannot serve metrics on %s:%d: %s", settings.metrics_host, settings.metrics_port, e
        )
        raise SystemExit(1) from e
    url = reachable_url(settings.metrics_host, bound_port(server))
    if settings.http_url_file:
        write_atomically(Path(settings.http_url_file), url + "\n")
    logging.getLogger(name).info("metrics and health on %s", url)
    return server
