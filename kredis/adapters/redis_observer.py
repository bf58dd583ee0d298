"""Observing Redis nodes: the ``redis`` part of a snapshot, every pod at once.

Asks each pod, concurrently, for CLUSTER MYID, the raw CLUSTER NODES and
CLUSTER INFO replies and DBSIZE, in one round trip. A pod that does not
answer is reported as unreachable with the reason; it never stops the pass.
Nothing here interprets the replies: the planner parses them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kredis.adapters.redis_client import (
    Address,
    ConnectionSettings,
    RedisNode,
    RedisNodeError,
    RedisReplyError,
    decode,
)

_log = logging.getLogger(__name__)
_MAX_THREADS = 32
_QUESTIONS: tuple[tuple[str, ...], ...] = (
    ("CLUSTER", "MYID"),
    ("CLUSTER", "NODES"),
    ("CLUSTER", "INFO"),
    ("DBSIZE",),
)


def observe_nodes(
    addresses: Mapping[str, Address], *, settings: ConnectionSettings
) -> dict[str, dict[str, Any]]:
    """The snapshot's ``redis`` entries for pods with an address, by pod name."""
    if not addresses:
        return {}
    names = sorted(addresses)
    workers = min(_MAX_THREADS, len(names))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="observe") as pool:
        entries = pool.map(lambda n: observe_node(addresses[n], settings), names)
        return dict(zip(names, entries, strict=True))


def observe_node(address: Address, settings: ConnectionSettings) -> dict[str, Any]:
    """One pod's entry: its own view of the cluster, or why it did not answer."""
    with RedisNode(address, settings) as node:
        try:
            replies = node.pipeline(_QUESTIONS)
        except RedisNodeError as err:
            _log.debug("node unreachable address=%s error=%s", address, err.problem)
            return {"reachable": False, "error": err.problem}
    failed = [r for r in replies if isinstance(r, RedisReplyError)]
    if failed:
        # A node with cluster support off answers but cannot be a member.
        problem = failed[0].problem
        _log.debug("node refused observation address=%s error=%s", address, problem)
        return {"reachable": False, "error": f"{failed[0].command}: {problem}"}
    my_id, nodes, info, dbsize = replies
    return {
        "reachable": True,
        "myId": decode(my_id),
        "clusterNodes": decode(nodes),
        "clusterInfo": decode(info),
        "dbsize": int(dbsize),
    }
