"""`_sys.cluster_step_down`, `cluster_replicas` and `cluster_remove`: membership changes made
through NATS itself (JetStream peer removal and replica changes), never a protocol of ours."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from esdb.contracts.api import (
    NodeRemovedResult,
    NodeStatus,
    RemoveNodeRequest,
    ReplicasRequest,
    ReplicasSet,
    StepDownRequest,
    SteppedDown,
)
from esdb.contracts.errors import InvalidRequest, NotFound, Timeout, Unavailable
from esdb.contracts.subjects import (
    CLUSTER_STREAMS,
    LOG_STREAM,
    MEMBERS_BUCKET,
    STEP_DOWN_TIMEOUT_S,
    Op,
    server_name,
    writer_step_down_subject,
)
from esdb.shared.membership import REMOVED, mark_removed, member
from esdb.shared.nats_connection import connect_once
from esdb.shared.settings import REPLICA_COUNTS, Settings
from esdb.shared.wire import Codec, decode_request, encode

log = logging.getLogger(__name__)

SERVER_REMOVE = "$JS.API.SERVER.REMOVE"
"""A system-account request: drop a server from the JetStream meta group."""
PEER_REMOVE = "$JS.API.STREAM.PEER.REMOVE.{}"

Nodes = Callable[[], Awaitable[list[NodeStatus]]]


class ClusterAdmin:
    """The cluster membership operations of the gateway."""

    def __init__(self, nc: NatsClient, settings: Settings, nodes: Nodes) -> None:
        self._nc = nc
        self._settings = settings
        self._nodes = nodes
        self._js: JetStreamContext = nc.jetstream(timeout=5.0)
        self.handlers: dict[str, Callable[[bytes, Codec], Awaitable[bytes]]] = {
            Op.CLUSTER_STEP_DOWN: self.step_down,
            Op.CLUSTER_REPLICAS: self.replicas,
            Op.CLUSTER_REMOVE: self.remove,
        }

    def _timeout(self, timeout_ms: int | None) -> float:
        return (timeout_ms or self._settings.timeout_ms) / 1000

    async def step_down(self, data: bytes, codec: Codec) -> bytes:
        """Have the leader hand over to a caught-up follower; answers who leads now."""
        decode_request(data, StepDownRequest, codec)
        return encode(await self._hand_over(), codec)

    async def _hand_over(self) -> SteppedDown:
        leader = next((n.node_id for n in await self._nodes() if n.role == "leader"), None)
        if leader is None:
            raise Unavailable("no writer leads now; nothing to step down")
        try:
            reply = await self._nc.request(
                writer_step_down_subject(leader), b"", timeout=STEP_DOWN_TIMEOUT_S
            )
        except nats.errors.NoRespondersError as e:
            raise Unavailable(f"the leader {leader} did not answer; retry") from e
        except nats.errors.TimeoutError as e:
            raise Timeout(f"the leader {leader} did not hand over in time") from e
        answer = json.loads(reply.data)
        if not answer.get("stepped_down"):
            raise Unavailable(f"{leader} leads and no other node is up to take over")
        return SteppedDown(previous=leader, leader=answer.get("leader"))

    async def replicas(self, data: bytes, codec: Codec) -> bytes:
        """Set the replica count of every stream that holds the cluster's state."""
        request = decode_request(data, ReplicasRequest, codec)
        if request.replicas not in REPLICA_COUNTS:
            raise InvalidRequest(
                f"replicas must be one of {', '.join(map(str, REPLICA_COUNTS))} "
                "(JetStream allows up to 5; odd counts keep a majority)",
                field="replicas",
            )
        changed = []
        pipelining_changes = False
        for name in CLUSTER_STREAMS:
            try:
                info = await self._js.stream_info(name)
            except nats.js.errors.NotFoundError:
                continue
            if info.config.num_replicas == request.replicas:
                continue
            config = dataclasses.replace(info.config, num_replicas=request.replicas)
            try:
                await self._js.update_stream(config)
            except nats.js.errors.APIError as e:
                raise Unavailable(
                    f"JetStream refused {request.replicas} replicas for {name}: "
                    f"{e.description} (a replica count needs as many servers)"
                ) from e
            changed.append(name)
            if name == LOG_STREAM and 1 in (info.config.num_replicas, request.replicas):
                pipelining_changes = True
        if pipelining_changes:
            # The leader decides whether to pipeline from the log's replica count when it
            # starts leading (writer/DESIGN.md): a new leadership reads the new count.
            try:
                await self._hand_over()
            except (Timeout, Unavailable) as e:
                log.warning("the replica count changed, but the leader did not hand over: %s", e)
        return encode(ReplicasSet(replicas=request.replicas, streams=changed), codec)

    async def remove(self, data: bytes, codec: Codec) -> bytes:
        """Take a stopped node out for good: record it removed, move its stream replicas to
        the other servers, and drop its server from the JetStream meta group."""
        request = decode_request(data, RemoveNodeRequest, codec)
        node = request.node
        if any(n.node_id == node for n in await self._nodes()):
            raise InvalidRequest(
                f"node {node!r} is running; stop it (esdb up's SIGTERM hands its leadership "
                "over) and remove it then",
                field="node",
            )
        kv = await self._js.key_value(MEMBERS_BUCKET)
        known = await member(kv, node)
        if known is None:
            raise NotFound(f"the cluster has no member {node!r}", field="node")
        if known.state != REMOVED:
            await mark_removed(kv, node, known.host)
        peer = server_name(node)
        moved = [name for name in CLUSTER_STREAMS if await self._remove_peer(name, peer)]
        removed = await self._remove_server(peer)
        return encode(NodeRemovedResult(node=node, streams=moved, server_removed=removed), codec)

    async def _remove_peer(self, stream: str, peer: str) -> bool:
        """Move `stream`'s replica off `peer`, if it has one there."""
        try:
            info = await self._js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            return False
        cluster = info.cluster
        peers = {p.name for p in (cluster.replicas or [])} if cluster else set()
        if cluster is None or (peer not in peers and cluster.leader != peer):
            return False
        answer = await self._api(PEER_REMOVE.format(stream), {"peer": peer})
        error = answer.get("error")
        if error:
            raise Unavailable(
                f"JetStream could not move {stream}'s replica off {peer}: "
                f"{error.get('description')} (add a server first, or lower the replica count "
                "with cluster_replicas)"
            )
        return True

    async def _remove_server(self, peer: str) -> bool:
        """Drop `peer` from the meta group, as the system account (the only one allowed)."""
        if not self._settings.system_user_file:
            return False
        user = Path(self._settings.system_user_file).read_text().strip()
        url = self._settings.nats_url.split(",")[0].replace("://", f"://{user}@", 1)
        system = await connect_once(url, timeout=5)
        try:
            reply = await system.request(SERVER_REMOVE, json.dumps({"peer": peer}).encode(), 5)
        except nats.errors.TimeoutError as e:
            raise Timeout("JetStream did not answer the server removal") from e
        finally:
            await system.close()
        error = json.loads(reply.data).get("error")
        if error:
            log.warning("JetStream did not remove server %s: %s", peer, error.get("description"))
        return not error

    async def _api(self, subject: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            reply = await self._nc.request(subject, json.dumps(body).encode(), timeout=5)
        except nats.errors.TimeoutError as e:
            raise Timeout(f"JetStream did not answer {subject}") from e
        answer: dict[str, Any] = json.loads(reply.data)
        return answer
