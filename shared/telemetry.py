"""What a service reports about itself: its metrics registry, its tracer (None while tracing
is off) and the check behind `/readyz`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from nats.aio.client import Client as NatsClient
from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry

from esdb.shared.metrics import service_registry

ReadinessCheck = Callable[[], Awaitable[str | None]]
"""Why the service cannot serve now, or None when it can."""


async def _starting() -> str | None:
    return "starting"


@dataclass
class Telemetry:
    """Built once per process by `run_service` and handed to the service's composition root."""

    service: str
    node: str
    registry: CollectorRegistry
    tracer: Tracer | None = None
    readiness: ReadinessCheck = field(default=_starting)

    @classmethod
    def create(cls, service: str, node: str, tracer: Tracer | None = None) -> Telemetry:
        """A fresh registry for `service` on `node`; not ready until `ready_when` says so."""
        return cls(service, node, service_registry(service, node), tracer)

    def ready_when(self, check: ReadinessCheck) -> None:
        """From now on `/readyz` answers with `check`."""
        self.readiness = check

    async def not_ready(self) -> str | None:
        """Why the service is not ready, or None."""
        return await self.readiness()


def nats_problem(nc: NatsClient) -> str | None:
    """Why `nc` cannot carry requests now, or None."""
    if nc.is_connected:
        return None
    if nc.is_reconnecting:
        return "reconnecting to NATS"
    return "not connected to NATS"


def connected(nc: NatsClient) -> ReadinessCheck:
    """Ready while `nc` is connected: services whose only dependency is NATS."""

    async def check() -> str | None:
        return nats_problem(nc)

    return check
