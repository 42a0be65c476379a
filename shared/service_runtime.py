"""Running a service process: logging, signal handling, graceful stop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from esdb.shared.settings import Settings, SettingsError, load_settings

ServiceMain = Callable[[Settings, asyncio.Event], Coroutine[Any, Any, None]]


SHUTDOWN_GRACE_S = 8.0


def _exit_now(name: str) -> None:
    logging.getLogger(name).error("graceful stop took over %.0f s; exiting now", SHUTDOWN_GRACE_S)
    logging.shutdown()
    os._exit(1)


def configure_logging(level: str, service: str) -> None:
    """One log format for every service, to stderr."""
    logging.basicConfig(
        level=level.upper(),
        format=f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("nats").setLevel(logging.WARNING)


def run_service(name: str, service_main: ServiceMain) -> None:
    """Load settings, run `service_main` until SIGINT/SIGTERM, then let it stop cleanly."""
    try:
        settings = load_settings()
    except SettingsError as e:
        print(f"esdb {name}: invalid configuration: {e}", file=sys.stderr)
        raise SystemExit(2) from e
    configure_logging(settings.log_level, name)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def begin_stop() -> None:
            stop.set()
            # A graceful stop needs NATS; when NATS is gone too, do not hang on it.
            loop.call_later(SHUTDOWN_GRACE_S, _exit_now, name)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, begin_stop)
        await service_main(settings, stop)

    asyncio.run(main())
