"""Listing a store's keys with ``SCAN``: the glob, the pages' decoding, and the programs.

``SCAN ... MATCH <prefix>* COUNT <scan_count>`` (namespace and prefix glob-escaped, so
``*?[]\\`` stand for themselves), on every primary of a cluster. On a server with a
connection pool the listing holds one connection and sends the request for page n+1 as soon
as page n arrives (its cursor is all it needs), so the server works and the reply travels
while the caller reads page n (`Listing.pipelined`); single-connection clients and the
asyncio cluster client (whose nodes lend no connection) get plain ``scan`` calls, page by
page (`Listing.by_calls`; on the asyncio cluster each page passes the client's gate).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from kvstores.redis.cluster import FAILOVER_PAUSE, ClusterGate, failing_over
from kvstores.redis.driver import DRIVER_ERRORS, apool_connection, pool_connection
from kvstores.redis.runner import AsyncClientIO, ClientIO, Program

__all__ = [
    "AsyncConnectionIO",
    "ClusterConnectionIO",
    "ConnectionIO",
    "GatedIO",
    "Listing",
    "glob_escape",
]

_GLOB_ESCAPES = str.maketrans({c: "\\" + c for c in "\\*?[]"})


def glob_escape(text: str) -> str:
    """`text` as a Redis glob that matches exactly itself: ``* ? [ ] \\`` backslash-escaped."""
    return text.translate(_GLOB_ESCAPES)


class Listing:
    """One listing of a store's keys (under `prefix`, a store's key prefix, whose keys are
    joined with `joiner`, NUL + prefix): its ``SCAN`` commands and its pages' keys.

    ``SCAN`` may return a key more than once (when Redis resizes a hash table); with `dedupe`
    the listing remembers the keys it has yielded (their raw bytes) and skips repeats.
    """

    __slots__ = ("count", "emitted", "joiner", "match", "prefix", "seen")

    def __init__(self, prefix: str, joiner: str, match: bytes, count: int, dedupe: bool) -> None:
        self.prefix = prefix
        self.joiner = joiner
        self.match = match
        self.count = count
        self.seen: set[bytes] | None = set() if dedupe else None
        self.emitted = False  # whether the server being scanned has given a page yet

    def pipelined(self, server: Any) -> Program[None]:
        """A server (or a cluster's node) to its end on one connection of its pool, a
        ``SCAN`` always in flight while the caller reads the previous page."""
        yield "take", server
        yield "send", ("SCAN", 0, "MATCH", self.match, "COUNT", self.count)
        cursor = None
        while cursor != b"0":
            cursor, page = yield "read", None
            if cursor != b"0":
                yield "send", ("SCAN", cursor, "MATCH", self.match, "COUNT", self.count)
            if page:
                self.emitted = True
                yield "emit", self.decode(page)

    def by_calls(self, node: Any) -> Program[None]:
        """Plain ``scan`` calls of the client, page by page: on its server (a node `None`),
        or on a cluster's `node`."""
        options = {"match": self.match, "count": self.count}
        if node is not None:
            options["target_nodes"] = node
        cursor = 0
        while True:
            cursor, page = yield "call", ("scan", (cursor,), options)
            if node is not None:
                cursor = cursor[node.name]  # a cluster answers {node name: cursor}
            if page:
                self.emitted = True
                yield "emit", self.decode(page)
            if not cursor:
                break

    def on_cluster(
        self, scan: Callable[[Any], Program[None]], nodes: Sequence[Any], timeout: float
    ) -> Program[None]:
        """`scan` (`pipelined` or `by_calls`) on each of a cluster's primaries `nodes`.

        A primary that a failover cuts before it gave a page (it refuses connections, the
        cluster is down) is scanned again, on whichever node serves its slots by then: every
        `FAILOVER_PAUSE` seconds the client reads the cluster's map again (verb ``serving``,
        the primary of one of the node's slots, found by ``slot_of``), while `timeout`
        allows, counted from the node's first try, as an operation is retried. A node cut
        after a page raises: scanning it again would list its keys twice.
        """
        for first in nodes:
            node, slot, started = first, None, time.monotonic()
            while True:
                self.emitted = False
                try:
                    if slot is not None:
                        node = yield "serving", slot
                    yield from scan(node)
                    break
                except DRIVER_ERRORS as exc:
                    left = started + timeout - time.monotonic()
                    if self.emitted or not failing_over(exc) or left <= FAILOVER_PAUSE:
                        raise
                    failure = exc
                if slot is None:
                    slot = yield "slot_of", first
                    if slot is None:  # the map no longer has the node: nothing to retry
                        raise failure
                yield "pause", FAILOVER_PAUSE

    def decode(self, page: list[bytes]) -> list[str]:
        """A ``SCAN`` page as keys: repeats dropped (with dedupe), prefix removed, decoded."""
        seen = self.seen
        if seen is not None:
            if seen.isdisjoint(page):
                before = len(seen)
                seen.update(page)
                if len(seen) - before != len(page):  # a key twice in the page itself
                    page = list(dict.fromkeys(page))
            else:
                fresh = []
                for key in page:
                    if key not in seen:
                        seen.add(key)
                        fresh.append(key)
                page = fresh
                if not page:
                    return []
        # Every key starts with the prefix and holds no NUL: join, decode and split on
        # NUL+prefix, all in C. A foreign key under the prefix (with a NUL, or not UTF-8)
        # makes the count differ or the decoding fail: then go key by key.
        try:
            keys = b"\x00".join(page).decode().split(self.joiner)
        except UnicodeDecodeError:
            keys = []
        if len(keys) == len(page):
            keys[0] = keys[0][len(self.prefix) :]
            return keys
        skip = len(self.prefix.encode())
        decoded = []
        for key in page:
            try:
                decoded.append(key[skip:].decode())
            except UnicodeDecodeError:
                continue  # not a key kvstores wrote: it could never be read back by name
        return decoded


class ConnectionIO(ClientIO):
    """The verbs of `Listing.pipelined` on sync connections, one held at a time."""

    pool: Any = None
    connection: Any = None  # taken from the pool
    in_flight = False  # a reply may still be on its way: the connection is unusable

    def take(self, server: Any) -> None:
        self.close()
        self.pool = server.connection_pool
        self.connection = pool_connection(self.pool)

    def send(self, command: tuple[Any, ...]) -> None:
        self.in_flight = True
        self.connection.send_command(*command)

    def read(self, _: None) -> Any:
        reply = self.connection.read_response()
        self.in_flight = False
        return reply

    def close(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            if self.in_flight:  # left early, or failed
                connection.disconnect()
            self.pool.release(connection)


def slot_of(slots: dict[int, list[Any]], node: Any) -> int | None:
    """A slot `node` serves as a primary in a cluster client's map of `slots`."""
    for slot, nodes in slots.items():
        if nodes and nodes[0].name == node.name:
            return int(slot)
    return None


class ClusterConnectionIO(ConnectionIO):
    """`ConnectionIO` on a sync cluster's nodes, with the verbs of `Listing.on_cluster`.

    It keeps the client's map of slots as the listing found it: redis-py replaces the map
    when it reads the cluster's again (after an error of any call of the client), and a
    failed primary's slots are looked up in the map that still has it."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.slots = client.nodes_manager.slots_cache

    def take(self, server: Any) -> None:
        super().take(self.client.get_redis_connection(server))

    def slot_of(self, node: Any) -> int | None:
        return slot_of(self.slots, node)

    def pause(self, seconds: float) -> None:
        time.sleep(seconds)

    def serving(self, slot: int) -> Any:
        self.client.nodes_manager.initialize()
        return self.client.nodes_manager.get_node_from_slot(slot)


class AsyncConnectionIO(AsyncClientIO):
    """`ConnectionIO` on asyncio connections."""

    pool: Any = None
    connection: Any = None
    in_flight = False

    async def take(self, server: Any) -> None:
        await self.close()
        self.pool = server.connection_pool
        self.connection = await apool_connection(self.pool)

    async def send(self, command: tuple[Any, ...]) -> None:
        self.in_flight = True
        await self.connection.send_command(*command)

    async def read(self, _: None) -> Any:
        reply = await self.connection.read_response()
        self.in_flight = False
        return reply

    async def close(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            if self.in_flight:
                await connection.disconnect()
            await self.pool.release(connection)


class GatedIO(AsyncClientIO):
    """`AsyncClientIO` on an asyncio cluster client whose calls pass its gate one at a time
    (a listing's caller may await it between pages: it holds no place meanwhile)."""

    __slots__ = ("gate", "slots", "timeout")

    def __init__(self, client: Any, gate: ClusterGate, timeout: float) -> None:
        super().__init__(client)
        self.gate = gate
        self.timeout = timeout
        self.slots = client.nodes_manager.slots_cache  # as in `ClusterConnectionIO`

    async def call(self, payload: Any) -> Any:
        await self.gate.enter(self.timeout)
        try:
            return await super().call(payload)
        finally:
            self.gate.leave()

    async def slot_of(self, node: Any) -> int | None:
        return slot_of(self.slots, node)

    async def pause(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def serving(self, slot: int) -> Any:
        await self.gate.enter(self.timeout)
        try:
            await self.client.nodes_manager.initialize()
            return self.client.nodes_manager.get_node_from_slot(slot)
        finally:
            self.gate.leave()
