"""A private network of Linux network namespaces for partition tests: one namespace per node,
each joined by a veth pair to a bridge in the root namespace, on a /24 of 10.213.0.0/16 that
exists only while the test runs. Cutting a node sets its bridge-side veth down: the node keeps
its own address (and loopback) but reaches nobody, and nobody reaches it."""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

SUBNET_PREFIX = "10.213"
NODE_HOST_OFFSET = 10  # node i is .(10 + i); the bridge (the root namespace) is .1


class NetnsUnavailable(RuntimeError):
    """`ip netns` cannot be used here (no iproute2, no privileges, no kernel support)."""


def ip(*args: str, check: bool = True) -> str:
    """Run `ip args...` and return its stdout; raises with its stderr on failure."""
    try:
        done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    except FileNotFoundError as e:
        raise NetnsUnavailable("`ip` (iproute2) is not installed") from e
    if check and done.returncode != 0:
        raise subprocess.CalledProcessError(
            done.returncode, ["ip", *args], done.stdout, done.stderr
        )
    return done.stdout


@dataclass(frozen=True)
class NodeLink:
    """One node's namespace, its address, and the root-side end of its veth pair."""

    netns: str
    address: str
    bridge_port: str


@dataclass
class PrivateNetwork:
    """Namespaces on a bridge; `cut` and `heal` partition one node from everyone."""

    subnet: str
    bridge: str
    bridge_address: str
    nodes: list[NodeLink] = field(default_factory=list)
    _created_netns: list[str] = field(default_factory=list)
    _created_links: list[str] = field(default_factory=list)

    def node(self, index: int) -> NodeLink:
        """The link of node `index` (1-based)."""
        return self.nodes[index - 1]

    def exec_argv(self, index: int, argv: list[str]) -> list[str]:
        """`argv` run inside node `index`'s namespace."""
        return ["ip", "netns", "exec", self.node(index).netns, *argv]

    def cut(self, index: int) -> None:
        """Partition node `index` from the others and from the root namespace."""
        ip("link", "set", self.node(index).bridge_port, "down")

    def heal(self, index: int) -> None:
        """Reconnect node `index`."""
        ip("link", "set", self.node(index).bridge_port, "up")

    def pids(self, index: int) -> list[int]:
        """Processes running inside node `index`'s namespace."""
        out = ip("netns", "pids", self.node(index).netns, check=False)
        return [int(p) for p in out.split()]

    def teardown(self) -> list[str]:
        """Kill what still runs inside the namespaces (only this test starts processes there),
        then delete namespaces, veths and bridge; returns what could not be removed."""
        problems: list[str] = []
        for index in range(1, len(self.nodes) + 1):
            for pid in self.pids(index):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for name in reversed(self._created_netns):
            ip("netns", "del", name, check=False)
            if name in ip("netns", "list").split():
                problems.append(f"netns {name}")
        for name in reversed(self._created_links):
            # A veth vanishes with its peer's namespace; the bridge must go by hand.
            ip("link", "del", name, check=False)
            if ip("-o", "link", "show", "dev", name, check=False):
                problems.append(f"link {name}")
        return problems


def _free_subnet(attempts: int = 20) -> str:
    """A 10.213.x.0/24 that no address or route of this host uses yet."""
    in_use = ip("-4", "-o", "addr", "show") + ip("-4", "route", "show", "table", "all")
    for _ in range(attempts):
        subnet = f"{SUBNET_PREFIX}.{random.randint(1, 254)}"
        if f"{subnet}." not in in_use:
            return subnet
    raise NetnsUnavailable(f"no free /24 in {SUBNET_PREFIX}.0.0/16")


def _build(network: PrivateNetwork, nodes: int, suffix: str) -> None:
    ip("link", "add", network.bridge, "type", "bridge")
    network._created_links.append(network.bridge)
    ip("addr", "add", f"{network.bridge_address}/24", "dev", network.bridge)
    ip("link", "set", network.bridge, "up")
    for index in range(1, nodes + 1):
        link = NodeLink(
            netns=f"esdbt-{suffix}-n{index}",
            address=f"{network.subnet}.{NODE_HOST_OFFSET + index}",
            bridge_port=f"esv{suffix}n{index}",
        )
        inner = f"esp{suffix}n{index}"
        ip("netns", "add", link.netns)
        network._created_netns.append(link.netns)
        network.nodes.append(link)
        ip("link", "add", link.bridge_port, "type", "veth", "peer", "name", inner)
        network._created_links.append(link.bridge_port)
        ip("link", "set", inner, "netns", link.netns)
        ip("link", "set", link.bridge_port, "master", network.bridge)
        ip("link", "set", link.bridge_port, "up")
        ip("-n", link.netns, "link", "set", "lo", "up")
        ip("-n", link.netns, "addr", "add", f"{link.address}/24", "dev", inner)
        ip("-n", link.netns, "link", "set", inner, "up")


@contextlib.contextmanager
def private_network(nodes: int = 3) -> Iterator[PrivateNetwork]:
    """Build the namespaces, bridge and veths (unique names per run); always tear them down."""
    try:
        ip("netns", "list")
    except subprocess.CalledProcessError as e:
        raise NetnsUnavailable(f"`ip netns` does not work here: {e.stderr.strip()}") from e
    suffix = secrets.token_hex(3)
    subnet = _free_subnet()
    network = PrivateNetwork(subnet=subnet, bridge=f"esdbt{suffix}", bridge_address=f"{subnet}.1")
    try:
        try:
            _build(network, nodes, suffix)
        except subprocess.CalledProcessError as e:
            raise NetnsUnavailable(
                f"cannot build the test network ({' '.join(e.cmd)}): {e.stderr.strip()}"
            ) from e
        yield network
    finally:
        leftovers = network.teardown()
        if leftovers:
            raise RuntimeError(f"could not remove the test network: {', '.join(leftovers)}")
