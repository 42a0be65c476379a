"""Ctrl-C stops every process of the stack, and a crashed service is restarted."""

from __future__ import annotations

import os
import signal
import time

import nats.errors

from tests.stack import Stack, connect_api, wait_until

SERVICES = ("writer", "reader", "gateway", "nats-server")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ctrl_c_stops_every_process(fresh_stack: Stack) -> None:
    pids = {name: fresh_stack.pid(name) for name in SERVICES}
    assert all(_alive(pid) for pid in pids.values())
    assert fresh_stack.stop() == 0
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [name for name, pid in pids.items() if _alive(pid)]
    assert "esdb stopped" in fresh_stack.log_tail()


def test_ctrl_c_in_a_terminal_stops_the_services_before_nats(fresh_stack: Stack) -> None:
    """A terminal sends SIGINT to the whole foreground job, not to `esdb up` alone; the
    services must still stop while NATS is up (writer batch, lease, checkpoints), and NATS last."""
    pids = {name: fresh_stack.pid(name) for name in SERVICES}
    fresh_stack.interrupt()
    assert fresh_stack.stop() == 0
    assert not [name for name, pid in pids.items() if _alive(pid)]
    log = fresh_stack.log_tail(400)
    assert "esdb stopped" in log
    for trouble in ("nats disconnected", "unexpected EOF", "graceful stop took over"):
        assert trouble not in log, log


async def test_crashed_reader_and_gateway_are_restarted(fresh_stack: Stack) -> None:
    api = await connect_api(fresh_stack.url)
    for service in ("reader", "gateway"):
        victim = fresh_stack.pid(service)
        os.kill(victim, signal.SIGKILL)

        async def back(service: str = service, victim: int = victim) -> bool:
            if fresh_stack.pid(service) == victim:
                return False
            try:
                reply = await api.call("health", store="_sys", timeout=2)
            except nats.errors.Error:  # the gateway is not back yet
                return False
            return bool(reply.get("status") == "ok")

        await wait_until(back, timeout=30, what=f"{service} to be restarted")
    assert "reader-node1 (pid" in fresh_stack.log_tail(200)
    await api.nc.close()


def test_no_process_outlives_a_killed_supervisor(fresh_stack: Stack) -> None:
    pids = {name: fresh_stack.pid(name) for name in SERVICES}
    fresh_stack.process.kill()  # kill -9 `esdb up` itself
    fresh_stack.process.wait()
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [name for name, pid in pids.items() if _alive(pid)]
