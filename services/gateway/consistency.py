"""The consistency checker: do all writers agree on leader, membership and the log?"""

from __future__ import annotations

from itertools import combinations

from esdb.contracts.api import NodeStatus


def consistency_problems(nodes: list[NodeStatus]) -> list[str]:
    """What the nodes disagree on; empty when they agree."""
    problems = [f"{n.node_id} is stalled: {n.stalled}" for n in nodes if n.stalled]
    leaders = sorted(n.node_id for n in nodes if n.role == "leader")
    if len(leaders) > 1:
        problems.append(f"several nodes act as leader: {', '.join(leaders)}")
    holders = {n.lease_holder for n in nodes}
    if len(holders) > 1:
        seen = ", ".join(f"{n.node_id}→{n.lease_holder}" for n in nodes)
        problems.append(f"nodes disagree on the lease holder: {seen}")
    memberships = {frozenset(k for k, up in n.members.items() if up) for n in nodes}
    if len(memberships) > 1:
        seen = "; ".join(
            f"{n.node_id} sees {sorted(k for k, up in n.members.items() if up)}" for n in nodes
        )
        problems.append(f"nodes disagree on membership: {seen}")
    for a, b in combinations(nodes, 2):
        for sequence in sorted(a.checkpoints.keys() & b.checkpoints.keys()):
            if a.checkpoints[sequence] != b.checkpoints[sequence]:
                problems.append(
                    f"{a.node_id} and {b.node_id} applied different logs: hashes differ at "
                    f"sequence {sequence}"
                )
                break
    return problems
