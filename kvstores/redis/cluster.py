"""Redis Cluster: slot routing, one pipeline per node, and the asyncio client's gate.

A batch is routed key by key (hash slot → primary, from redis-py's slot map) and each node
gets one pipeline of ``GET``/``SET``/``UNLINK`` commands, all nodes at once: the sync path
(`on_nodes`) writes every node's pipeline before reading any reply, the async one
(`aon_nodes`) gathers them. When a node answers ``MOVED``/``ASK``/``TRYAGAIN`` or fails, the
programs (`mget`, `mset`, `mdelete`) resend the batch through redis-py's own cluster
commands, which follow redirects and refresh the slot map; every operation is idempotent.
"""

from __future__ import annotations

import asyncio
import weakref
from binascii import crc_hqx
from itertools import repeat
from typing import TYPE_CHECKING, Any, cast

from kvstores.redis.driver import (
    DRIVER_ERRORS,
    NOT_NODE_FAILURES,
    AsyncRedisCluster,
    ClusterDownError,
    RedisCluster,
    RedisConnectionError,
    ResponseError,
    SlotNotCoveredError,
    key_slot,
    node_connection,
    node_pipeline,
    pack_commands,
)

if TYPE_CHECKING:
    from kvstores.redis.runner import Program

__all__ = [
    "FAILOVER_PAUSE",
    "ClusterGate",
    "aon_nodes",
    "failing_over",
    "gate",
    "mdelete",
    "mget",
    "mset",
    "on_nodes",
]

HASH_SLOTS = 16384
# Per node: the node, and the commands of its pipeline.
Work = list[tuple[Any, list[tuple[Any, ...]]]]
# Per node: the node, and the positions in the batch of the keys it serves.
Groups = list[tuple[Any, list[int]]]


#: Seconds between two attempts of an operation a failover cut (see `failing_over`).
FAILOVER_PAUSE = 0.25


def failing_over(exc: BaseException) -> bool:
    """Whether `exc` may be a cluster failing over: a node refused or dropped the
    connection, or the cluster says it is down or a slot has no node. Not a timeout (a
    silent node is reported within the timeout, not waited on again), nor a connection
    error that no failover repairs (credentials, pool or server connection limits)."""
    return isinstance(exc, (RedisConnectionError, ClusterDownError, SlotNotCoveredError)) and (
        not isinstance(exc, NOT_NODE_FAILURES)
    )


# Routing


def slots(full_keys: list[bytes], joined: str) -> list[int]:
    """The hash slot of each key (`joined`: the keys' text, to spot hash tags at once)."""
    if "{" in joined:
        return [key_slot(k) for k in full_keys]
    return [crc_hqx(k, 0) & (HASH_SLOTS - 1) for k in full_keys]


def by_node(
    client: RedisCluster | AsyncRedisCluster, full_keys: list[bytes], joined: str
) -> Groups | None:
    """Positions of the keys grouped by the primary that serves them; `None` if unknown."""
    slots_cache = client.nodes_manager.slots_cache
    groups: dict[str, tuple[Any, list[int]]] = {}
    try:
        for i, slot in enumerate(slots(full_keys, joined)):
            node = slots_cache[slot][0]
            group = groups.get(node.name)
            if group is None:
                group = groups[node.name] = (node, [])
            group[1].append(i)
    except (KeyError, IndexError):
        return None  # a slot without a known node: let redis-py sort it out
    # In the order of the node names: threads that take connections from several blocking
    # node pools then take them in the same order, so none waits on another's.
    return [groups[name] for name in sorted(groups)]


def reassemble(size: int, groups: Groups, replies: list[list[Any]]) -> list[bytes | None]:
    """Put each node's replies back at the positions of its keys."""
    values: list[bytes | None] = [None] * size
    for (_, positions), got in zip(groups, replies, strict=True):
        for position, value in zip(positions, got, strict=True):
            values[position] = value
    return values


# The programs: what to send to the nodes, and how to fall back (see kvstores.redis.runner)


def mget(
    client: RedisCluster | AsyncRedisCluster, full_keys: list[bytes], joined: str
) -> Program[list[bytes | None]]:
    groups = by_node(client, full_keys, joined)
    if groups is not None:
        work = [(node, [("GET", full_keys[i]) for i in idx]) for node, idx in groups]
        replies = yield "nodes", work
        if replies is not None:
            return reassemble(len(full_keys), groups, replies)
    values: list[bytes | None] = yield "call", ("mget_nonatomic", (full_keys,), {})
    return values


def mset(
    client: RedisCluster | AsyncRedisCluster,
    full_keys: list[bytes],
    values: list[bytes],
    joined: str,
    px: int | None,
) -> Program[None]:
    groups = by_node(client, full_keys, joined)
    tail = () if px is None else ("PX", px)
    if groups is not None:
        work = [
            (node, [("SET", full_keys[i], values[i], *tail) for i in idx]) for node, idx in groups
        ]
        if (yield "nodes", work) is not None:
            return
    if px is None:
        yield "call", ("mset_nonatomic", (dict(zip(full_keys, values, strict=True)),), {})
    else:  # redis-py's cluster pipeline
        yield "pipeline", zip(repeat("SET"), full_keys, values, repeat("PX"), repeat(px))


def mdelete(
    client: RedisCluster | AsyncRedisCluster, full_keys: list[bytes], joined: str
) -> Program[None]:
    groups = by_node(client, full_keys, joined)
    if groups is not None:
        work = [(node, [("UNLINK", full_keys[i]) for i in idx]) for node, idx in groups]
        if (yield "nodes", work) is not None:
            return
    yield "call", ("unlink", full_keys, {})


# The I/O: each node's commands as one pipeline


def on_nodes(client: RedisCluster, work: Work) -> list[list[Any]] | None:
    """Run each node's commands as one pipeline; `None` if anything failed (redirects, ...).

    Every pipeline is written before any reply is read, so the nodes work in parallel and
    the batch costs one round trip per node, concurrently, without threads.
    """
    taken: list[tuple[Any, Any]] = []
    replies: list[list[Any]] = []
    clean = False
    try:
        for node, commands in work:
            node_client, connection = node_connection(client, node)
            taken.append((node_client, connection))
            connection.send_packed_command(pack_commands(connection, commands))
        failed = False
        for (_, connection), (_, commands) in zip(taken, work, strict=True):
            got = []
            for _ in commands:
                try:
                    got.append(connection.read_response())
                except ResponseError:  # MOVED, ASK, TRYAGAIN, OOM, ...: read on, then resend
                    failed = True
                    got.append(None)
            replies.append(got)
        clean = True
        return None if failed else replies
    except (*DRIVER_ERRORS, OSError):
        return None
    finally:
        for node_client, connection in taken:
            if not clean:
                connection.disconnect()  # unread replies would poison the next user
            node_client.connection_pool.release(connection)


async def aon_nodes(work: Work) -> list[list[Any]] | None:
    """Each node's commands as one pipeline, all nodes at once; `None` if anything failed."""
    outcomes = await asyncio.gather(
        *(node_pipeline(node, commands) for node, commands in work), return_exceptions=True
    )
    for outcome in outcomes:
        if isinstance(outcome, BaseException):  # the node failed
            if not isinstance(outcome, (*DRIVER_ERRORS, OSError)):
                raise outcome
            return None
        if outcome is None:  # a command failed
            return None
    return cast("list[list[Any]]", outcomes)


# The asyncio cluster client's gate
#
# redis.asyncio's cluster client never waits for a connection: ClusterNode.acquire_connection
# raises MaxConnectionsError at once when a node has max_connections out (100 by default since
# redis-py 8.0, 2**31 before), and it has no blocking option. redis-py 8.1 retried that error
# (after closing all the client's connections) and 8.2 does not (NOT_NODE_FAILURE_ERRORS), so
# a burst of a few hundred concurrent calls failed. The store bounds its own operations instead:
# each holds at most one connection per node at a time (one pipeline per node, or redis-py's
# cluster pipeline, which is also one per node), so at most max_connections operations at once
# per async client (hence per event loop) never exhaust a node, and the others wait here, up to
# the store's timeout, as the blocking pools of the other clients make them wait.


class ClusterGate:
    """At most `limit` operations at a time on one async cluster client (see above)."""

    __slots__ = ("_semaphore", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._semaphore = asyncio.Semaphore(limit)

    async def enter(self, timeout: float) -> None:
        semaphore = self._semaphore
        if not semaphore.locked():
            await semaphore.acquire()  # returns at once: no timer for the common case
            return
        try:
            async with asyncio.timeout(timeout):
                await semaphore.acquire()
        except TimeoutError:
            raise RedisConnectionError(
                f"no free connection within {timeout:g} s: all {self.limit} connections "
                "per node (max_connections) stayed in use"
            ) from None

    def leave(self) -> None:
        self._semaphore.release()


# Shared by every store on the same client; gone with the client.
_GATES: weakref.WeakKeyDictionary[AsyncRedisCluster, ClusterGate] = weakref.WeakKeyDictionary()


def gate(client: AsyncRedisCluster) -> ClusterGate:
    """The gate of an asyncio cluster client."""
    found = _GATES.get(client)
    if found is None:
        kwargs: Any = client.connection_kwargs
        found = _GATES[client] = ClusterGate(int(kwargs.get("max_connections") or 2**31))
    return found
