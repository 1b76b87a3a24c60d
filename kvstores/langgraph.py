"""LangGraph long-term memory on any kvstores byte store: `LangGraphStore`.

``pip install "kvstores[langgraph]"`` (langgraph-checkpoint). A `LangGraphStore` is a
`langgraph.store.base.BaseStore`: give it to ``StateGraph.compile(store=...)`` and an
agent's memories live in Redis, PostgreSQL, SQLite, MongoDB, Cassandra, AstraDB, files or
memory. The README's "LangGraph" section documents the layout and the choices.

Layout: an item is one byte-store entry whose key is ``lg/`` + each namespace label
escaped (``%`` → ``%25``, ``/`` → ``%2F``, ``|`` → ``%7C``) and followed by ``/``, then
``|`` and the item key (``%`` → ``%25``, NUL → ``%00``). So a namespace is a key prefix
(`search` and `list_namespaces` are prefix listings), and ``("a",)``, ``("a", "b")``,
``("ab",)`` never share a prefix they should not. A key over the byte store's limit is
shortened to a head and a SHA-256 (`kvstores.backend.shorten_key`); the entry's value, JSON,
holds the namespace, key, value, timestamps and expiry, so such keys are resolved from it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any, Self

from kvstores._registry import require
from kvstores.backend import (
    MAX_KEY_LENGTH,
    ByteStore,
    Outcome,
    Program,
    adrive,
    check_json_like,
    drive,
    shorten_key,
)

require("langgraph.store.base", "langgraph")

from langgraph.store.base import (  # noqa: E402
    BaseStore,
    Embeddings,
    GetOp,
    IndexConfig,
    Item,
    ListNamespacesOp,
    MatchCondition,
    NotProvided,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    ensure_embeddings,
)
from langgraph.store.base import validate_op_namespace as _validate_op  # noqa: E402
from langgraph.store.base.embed import get_text_at_path, tokenize_path  # noqa: E402

from kvstores.encoding import decode_float32, encode_float32  # noqa: E402

__all__ = ["ITEM_ROOT", "LangGraphStore", "item_key"]

ITEM_ROOT = "lg/"
#: Where an item's vectors live (semantic search): the same path under this root.
VECTOR_ROOT = "lgv/"
_LABEL = str.maketrans({"%": "%25", "/": "%2F", "|": "%7C"})
_KEY = str.maketrans({"%": "%25", "\x00": "%00"})
_PAGE = 1000
#: Keys are cut to a head and a hash past this length; listings by a longer prefix read
#: the head and check the namespace held in the value.
_HEAD = MAX_KEY_LENGTH - 65


def namespace_prefix(namespace: Sequence[str], root: str = ITEM_ROOT) -> str:
    """The byte-store key prefix of a namespace and everything below it."""
    return _prefix(tuple(namespace), root)


@functools.lru_cache(maxsize=1024)
def _prefix(namespace: tuple[str, ...], root: str) -> str:
    """`namespace_prefix`, escaped once per namespace: a batch's items share a few."""
    return root + "".join(label.translate(_LABEL) + "/" for label in namespace)


def item_key(namespace: Sequence[str], key: str, root: str = ITEM_ROOT) -> str:
    """The byte-store key of an item (with `root` `VECTOR_ROOT`: of its vectors)."""
    full = namespace_prefix(namespace, root) + "|" + key.translate(_KEY)
    return full if len(full) <= MAX_KEY_LENGTH else shorten_key(full, MAX_KEY_LENGTH, head=_HEAD)


def encode_vectors(vectors: dict[str, list[float]]) -> bytes:
    """An item's vectors: a JSON line of their paths and dimensions, then float32s."""
    paths = list(vectors)
    dims = len(vectors[paths[0]]) if paths else 0
    header = json.dumps({"p": paths, "d": dims}, ensure_ascii=False).encode()
    return header + b"\n" + b"".join(encode_float32(vectors[path]) for path in paths)


def decode_vectors(data: bytes) -> list[list[float]]:
    header, _, packed = data.partition(b"\n")
    meta = json.loads(header)
    flat, dims = decode_float32(packed), meta["d"]
    return [flat[i * dims : (i + 1) * dims] for i in range(len(meta["p"]))]


def _cosine(query: Sequence[float], vector: Sequence[float]) -> float:
    dot = sum(a * b for a, b in zip(query, vector, strict=False))
    norms = math.sqrt(sum(a * a for a in query)) * math.sqrt(sum(b * b for b in vector))
    return dot / norms if norms else 0.0


def _no_field_problem(name: str) -> str | None:
    return None


def _now() -> float:
    return time.time()


class _Entry:
    """An item as stored: namespace, key, value, its timestamps (ISO 8601 strings, UTC,
    parsed only for the items returned), its ttl (minutes) and expiry (epoch seconds)."""

    __slots__ = ("created", "expires", "key", "namespace", "ttl", "updated", "value")

    def __init__(
        self,
        namespace: tuple[str, ...],
        key: str,
        value: dict[str, Any],
        created: str,
        updated: str,
        ttl: float | None,
        expires: float | None,
    ) -> None:
        self.namespace, self.key, self.value = namespace, key, value
        self.created, self.updated = created, updated
        self.ttl, self.expires = ttl, expires

    @classmethod
    def new(
        cls,
        namespace: tuple[str, ...],
        key: str,
        value: dict[str, Any],
        created: str | None,
        now: tuple[float, str],
        ttl: float | None,
    ) -> _Entry:
        """An entry written at `now` (epoch seconds, and the same as ISO 8601)."""
        seconds, stamp = now
        expires = None if ttl is None else seconds + ttl * 60
        return cls(namespace, key, value, created or stamp, stamp, ttl, expires)

    def encode(self) -> bytes:
        return json.dumps(
            {
                "n": self.namespace,
                "k": self.key,
                "v": self.value,
                "c": self.created,
                "u": self.updated,
                "t": self.ttl,
                "e": self.expires,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> _Entry:
        raw = json.loads(data.decode())  # str: json.loads(bytes) sniffs the encoding first
        return cls(tuple(raw["n"]), raw["k"], raw["v"], raw["c"], raw["u"], raw["t"], raw["e"])

    def live(self, now: float) -> bool:
        return self.expires is None or self.expires > now

    def refreshed(self, now: float, writes: dict[str, bytes]) -> None:
        """Move a read item's expiry to ``now + ttl`` (refresh on read), written back."""
        if self.ttl is not None:
            self.expires = now + self.ttl * 60
            writes[item_key(self.namespace, self.key)] = self.encode()

    def item(self, cls: type[Item] = Item, **extra: Any) -> Any:
        # The value was decoded for this call: the caller's own copy, never shared.
        return cls(
            value=self.value,
            key=self.key,
            namespace=self.namespace,
            created_at=datetime.fromisoformat(self.created),
            updated_at=datetime.fromisoformat(self.updated),
            **extra,
        )


def _compare(item_value: Any, filter_value: Any) -> bool:
    """LangGraph's filter semantics (its `InMemoryStore`'s, PostgreSQL JSONB's): operators
    ``$eq``, ``$ne``, ``$gt``, ``$gte``, ``$lt``, ``$lte`` (numbers as numbers), a dict
    without operators matching a sub-dict, lists element by element."""
    if isinstance(filter_value, dict):
        if any(name.startswith("$") for name in filter_value):
            return all(_operator(item_value, op, arg) for op, arg in filter_value.items())
        if not isinstance(item_value, dict):
            return False
        return all(_compare(item_value.get(k), v) for k, v in filter_value.items())
    if isinstance(filter_value, (list, tuple)):
        return (
            isinstance(item_value, (list, tuple))
            and len(item_value) == len(filter_value)
            and all(_compare(i, f) for i, f in zip(item_value, filter_value, strict=True))
        )
    return bool(item_value == filter_value)


def _operator(value: Any, operator: str, arg: Any) -> bool:
    if operator == "$eq":
        return bool(value == arg)
    if operator == "$ne":
        return bool(value != arg)
    comparisons = {
        "$gt": float.__gt__,
        "$gte": float.__ge__,
        "$lt": float.__lt__,
        "$lte": float.__le__,
    }
    if operator not in comparisons:
        raise ValueError(f"Unsupported operator: {operator}")
    try:
        return bool(comparisons[operator](float(value), float(arg)))
    except (TypeError, ValueError):
        return False  # a missing or non-numeric value matches no comparison


def _matches(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
    path = condition.path
    if len(namespace) < len(path):
        return False
    if condition.match_type not in ("prefix", "suffix"):
        raise ValueError(f"Unsupported match type: {condition.match_type}")
    if condition.match_type == "suffix":
        namespace = namespace[len(namespace) - len(path) :]
    else:
        namespace = namespace[: len(path)]
    pairs = zip(namespace, path, strict=True)
    return all(p == "*" or n == p for n, p in pairs)


class _Plan:
    """A batch's work, decided before any I/O: the keys to read (gets and the puts'
    current entries, for ``created_at``), the searches and listings, and the results."""

    def __init__(self, store: LangGraphStore, ops: Sequence[Op]) -> None:
        self.store = store
        self.ops = ops
        self.results: list[Result] = [None] * len(ops)
        self.puts: dict[tuple[tuple[str, ...], str], PutOp] = {}
        reads: dict[str, None] = {}
        #: The byte-store key of each get (by op index), computed once.
        self.keys: dict[int, str] = {}
        for index, op in enumerate(ops):
            _validate_op(op)
            if isinstance(op, GetOp):
                reads[stored := item_key(op.namespace, op.key)] = None
                self.keys[index] = stored
            elif isinstance(op, PutOp):
                self.puts[(op.namespace, op.key)] = op  # the last put of a key wins
                reads[item_key(op.namespace, op.key)] = None
            elif not isinstance(op, (SearchOp, ListNamespacesOp)):
                raise ValueError(f"Unknown operation type: {type(op)}")
        self.reads = list(reads)

    def entries(self, values: Sequence[bytes | None]) -> dict[str, _Entry]:
        found = {}
        for key, data in zip(self.reads, values, strict=True):
            if data is not None:
                found[key] = _Entry.decode(data)
        return found

    def texts(self) -> dict[str, list[tuple[tuple[str, ...], str, str]]]:
        """What the puts' indexed fields hold, by text: (namespace, key, path) each, so a
        batch's documents are embedded in one call."""
        fields = self.store.fields
        to_embed: dict[str, list[tuple[tuple[str, ...], str, str]]] = {}
        if fields is None:
            return to_embed
        for (namespace, key), op in self.puts.items():
            if op.value is None or op.index is False:
                continue
            paths = fields if op.index is None else [(f, tokenize_path(f)) for f in op.index]
            for path, tokens in paths:
                texts = get_text_at_path(op.value, tokens)
                for i, text in enumerate(texts):
                    where = f"{path}.{i}" if len(texts) > 1 else path
                    to_embed.setdefault(text, []).append((namespace, key, where))
        return to_embed

    def vectors(
        self,
        to_embed: dict[str, list[tuple[tuple[str, ...], str, str]]],
        embedded: Sequence[Sequence[float]],
    ) -> dict[tuple[tuple[str, ...], str], dict[str, list[float]]]:
        by_item: dict[tuple[tuple[str, ...], str], dict[str, list[float]]] = {}
        for places, vector in zip(to_embed.values(), embedded, strict=True):
            for namespace, key, path in places:
                by_item.setdefault((namespace, key), {})[path] = list(vector)
        return by_item

    def apply(
        self,
        found: dict[str, _Entry],
        searched: dict[int, list[tuple[_Entry, float | None]]],
        vectors: dict[tuple[tuple[str, ...], str], dict[str, list[float]]],
    ) -> tuple[list[tuple[str, bytes]], list[str]]:
        """Fill the results; the entries to write (puts, refreshed expiries, vectors) and
        the keys to delete."""
        store, now = self.store, _now()
        writes: dict[str, bytes] = {}
        for index, op in enumerate(self.ops):
            if isinstance(op, GetOp):
                entry = found.get(self.keys[index])
                if entry is None or (entry.namespace, entry.key) != (op.namespace, op.key):
                    continue  # absent, or another item's shortened key
                if not entry.live(now):
                    continue
                if store.refresh(op.refresh_ttl):
                    entry.refreshed(now, writes)
                self.results[index] = entry.item()
            elif isinstance(op, SearchOp):
                hits = searched.get(index, [])
                if store.refresh(op.refresh_ttl):
                    for entry, _ in hits:
                        entry.refreshed(now, writes)
                self.results[index] = [entry.item(SearchItem, score=score) for entry, score in hits]
            elif isinstance(op, ListNamespacesOp):
                pass  # filled by the listing
        deletes: list[str] = []
        indexed = store.fields is not None
        stamped = (now, datetime.fromtimestamp(now, UTC).isoformat())  # once per batch
        for (namespace, key), op in self.puts.items():
            stored = item_key(namespace, key)
            if indexed:  # re-indexed on overwrite, unindexed on delete
                vector_key = item_key(namespace, key, VECTOR_ROOT)
                mine = vectors.get((namespace, key))
                if mine:
                    writes[vector_key] = encode_vectors(mine)
                else:
                    deletes.append(vector_key)
            if op.value is None:
                deletes.append(stored)
                writes.pop(stored, None)
                continue
            store.check_value(op.value)
            before = found.get(stored)
            created = before.created if before is not None and before.live(now) else None
            entry = _Entry.new(namespace, key, dict(op.value), created, stamped, store.ttl_of(op))
            writes[stored] = entry.encode()
        return list(writes.items()), deletes


class LangGraphStore(BaseStore):
    """LangGraph's `BaseStore` over a kvstores byte store; see `kvstores.langgraph`."""

    supports_ttl: bool = True

    def __init__(
        self,
        byte_store: ByteStore,
        *,
        index: IndexConfig | None = None,
        ttl: TTLConfig | None = None,
    ) -> None:
        """`byte_store`: any kvstores byte store (the `LangGraphStore` uses keys under
        ``lg/`` and ``lgv/``); `index`: LangGraph's `IndexConfig` (``dims``, ``embed``,
        ``fields``) for semantic search; `ttl`: LangGraph's `TTLConfig` (minutes:
        ``default_ttl``, ``refresh_on_read``, ``sweep_interval_minutes``)."""
        self.byte_store = byte_store
        self.ttl_config = ttl
        self.index_config = index
        #: Whether concurrent single-op async calls of one event-loop tick run as one batch.
        self.auto_batch = True
        self._pending: dict[asyncio.AbstractEventLoop, list[tuple[Op, asyncio.Future[Result]]]] = {}
        self.embeddings: Embeddings | None = None
        #: The indexed fields, tokenized (`None`: no semantic search).
        self.fields: list[tuple[str, Any]] | None = None
        if index:
            self.embeddings = ensure_embeddings(index.get("embed"))
            self.fields = [
                (path, tokenize_path(path)) if path != "$" else (path, path)
                for path in (index.get("fields") or ["$"])
            ]
        self._sweeper: threading.Thread | None = None
        self._sweeper_stop = threading.Event()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        index: IndexConfig | None = None,
        ttl: TTLConfig | None = None,
        **options: Any,
    ) -> Self:
        """A `LangGraphStore` on ``kvstores.from_url(url, **options)``."""
        from kvstores import from_url

        return cls(from_url(url, **options), index=index, ttl=ttl)

    # Settings

    def refresh(self, refresh_ttl: bool | None) -> bool:
        if refresh_ttl is not None:
            return refresh_ttl
        return bool((self.ttl_config or {}).get("refresh_on_read", True))

    def ttl_of(self, op: PutOp) -> float | None:
        ttl: Any = op.ttl
        if isinstance(ttl, NotProvided):
            return (self.ttl_config or {}).get("default_ttl")
        return None if ttl is None else float(ttl)

    @staticmethod
    def check_value(value: Any) -> None:
        """An item's value must be a JSON object that JSON gives back as it is."""
        if not isinstance(value, dict):
            raise TypeError(f"an item's value must be a dict, not {type(value).__name__}")
        check_json_like([value], max_depth=1000, field_problem=_no_field_problem, nulls=True)

    # Listing

    def _listing_prefix(self, namespace: Sequence[str]) -> str:
        prefix = namespace_prefix(namespace)
        return prefix if len(prefix) <= _HEAD else prefix[:_HEAD]

    def _scan(self, namespace: Sequence[str]) -> Iterable[_Entry]:
        """The live entries under `namespace`, a page of keys and values at a time."""
        store, now = self.byte_store, _now()
        prefix = tuple(namespace)
        keys = store.yield_keys(prefix=self._listing_prefix(namespace))
        page: list[str] = []
        for key in keys:
            page.append(key)
            if len(page) == _PAGE:
                yield from _live(store.mget(page), prefix, now)
                page = []
        if page:
            yield from _live(store.mget(page), prefix, now)

    async def _ascan(self, namespace: Sequence[str]) -> list[_Entry]:
        store, now = self.byte_store, _now()
        prefix = tuple(namespace)
        found: list[_Entry] = []
        page: list[str] = []
        async for key in store.ayield_keys(prefix=self._listing_prefix(namespace)):
            page.append(key)
            if len(page) == _PAGE:
                found += _live(await store.amget(page), prefix, now)
                page = []
        if page:
            found += _live(await store.amget(page), prefix, now)
        return found

    @staticmethod
    def _filtered(op: SearchOp, entries: Iterable[_Entry]) -> list[_Entry]:
        hits = [e for e in entries if not op.filter or _compare(e.value, op.filter)]
        hits.sort(key=lambda e: (e.namespace, e.key))
        return hits

    def _ranked(self, op: SearchOp, hits: list[_Entry]) -> bool:
        """Whether `op` is ranked by similarity (a query, on an indexed store)."""
        return bool(op.query) and self.embeddings is not None and bool(hits)

    @staticmethod
    def _page(
        op: SearchOp,
        hits: list[_Entry],
        query: Sequence[float] | None = None,
        vectors: Sequence[bytes | None] = (),
    ) -> list[tuple[_Entry, float | None]]:
        """`limit`/`offset` of the hits, ranked by the best cosine similarity of an item's
        vectors to `query` (items without vectors after those with), or in order."""
        if query is None:
            return [(e, None) for e in hits[op.offset : op.offset + op.limit]]
        scored: list[tuple[float, int, _Entry]] = []
        scoreless: list[_Entry] = []
        for position, (entry, data) in enumerate(zip(hits, vectors, strict=True)):
            if data is None:
                scoreless.append(entry)
                continue
            best = max(_cosine(query, vector) for vector in decode_vectors(data))
            scored.append((best, position, entry))
        scored.sort(key=lambda t: (-t[0], t[1]))
        ranked: list[tuple[_Entry, float | None]] = [(e, s) for s, _, e in scored]
        ranked += [(e, None) for e in scoreless]
        return ranked[op.offset : op.offset + op.limit]

    @staticmethod
    def _namespaces(op: ListNamespacesOp, entries: Iterable[_Entry]) -> list[tuple[str, ...]]:
        names = {e.namespace for e in entries}
        if op.match_conditions:
            names = {n for n in names if all(_matches(c, n) for c in op.match_conditions)}
        if op.max_depth is not None:
            names = {n[: op.max_depth] for n in names}
        return sorted(names)[op.offset : op.offset + op.limit]

    @staticmethod
    def _listing_namespace(op: ListNamespacesOp) -> tuple[str, ...]:
        """The namespace whose listing holds every match: the leading labels of a prefix
        condition before any wildcard."""
        for condition in op.match_conditions or ():
            if condition.match_type == "prefix":
                lead: list[str] = []
                for label in condition.path:
                    if label == "*":
                        break
                    lead.append(label)
                return tuple(lead)
        return ()

    # Batches

    def _batch_program(self, ops: list[Op]) -> Program[list[Result]]:
        """A batch, written once: its requests (``mget``, ``mset``, ``mdelete``, ``scan``
        of a namespace's live entries, ``embed_queries``, ``embed_documents``) are done by
        `_io` in `batch` and by `_aio` in `abatch`."""
        plan = _Plan(self, ops)
        found = plan.entries((yield ("mget", plan.reads))) if plan.reads else {}
        queries = sorted({op.query for op in ops if isinstance(op, SearchOp) and op.query})
        embedded: dict[str, list[float]] = {}
        if queries and self.embeddings is not None:
            embedded = dict(zip(queries, (yield ("embed_queries", queries)), strict=True))
        searched: dict[int, list[tuple[_Entry, float | None]]] = {}
        for index, op in enumerate(ops):
            if isinstance(op, SearchOp):
                hits = self._filtered(op, (yield ("scan", op.namespace_prefix)))
                if self._ranked(op, hits):
                    keys = [item_key(e.namespace, e.key, VECTOR_ROOT) for e in hits]
                    vectors_found = yield ("mget", keys)
                    searched[index] = self._page(op, hits, embedded[op.query or ""], vectors_found)
                else:
                    searched[index] = self._page(op, hits)
            elif isinstance(op, ListNamespacesOp):
                entries = yield ("scan", self._listing_namespace(op))
                plan.results[index] = self._namespaces(op, entries)
        to_embed = plan.texts()
        vectors = {}
        if to_embed and self.embeddings is not None:
            vectors = plan.vectors(to_embed, (yield ("embed_documents", list(to_embed))))
        writes, deletes = plan.apply(found, searched, vectors)
        if writes:
            yield ("mset", writes)
        if deletes:
            yield ("mdelete", deletes)
        return plan.results

    def _io(self, request: tuple[str, Any]) -> Outcome:
        verb, arg = request
        store, embeddings = self.byte_store, self.embeddings
        if verb == "scan":
            return list(self._scan(arg)), None
        if verb == "embed_queries":
            assert embeddings is not None
            return [embeddings.embed_query(query) for query in arg], None
        if verb == "embed_documents":
            assert embeddings is not None
            return embeddings.embed_documents(arg), None
        return getattr(store, verb)(arg), None  # mget, mset, mdelete

    async def _aio(self, request: tuple[str, Any]) -> Outcome:
        verb, arg = request
        store, embeddings = self.byte_store, self.embeddings
        if verb == "scan":
            return await self._ascan(arg), None
        if verb == "embed_queries":
            assert embeddings is not None
            return await asyncio.gather(*(embeddings.aembed_query(q) for q in arg)), None
        if verb == "embed_documents":
            assert embeddings is not None
            return await embeddings.aembed_documents(arg), None
        return await getattr(store, "a" + verb)(arg), None  # amget, amset, amdelete

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        return drive(self._batch_program(list(ops)), self._io)

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Run `ops`; a single op (what ``aget``, ``aput``, ``asearch``… send) waits for the
        end of the event loop's tick and runs in one batch with the other coroutines' ops
        of that tick (split where an op reads what an earlier one of the tick writes, so a
        read after a write sees it)."""
        ops = list(ops)
        if len(ops) != 1 or not self.auto_batch:
            return await self._abatch_now(ops)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(lambda: loop.create_task(self._flush(loop)))
        pending.append((ops[0], future))
        return [await future]

    async def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        pending = self._pending.pop(loop, [])
        ready: list[tuple[Op, asyncio.Future[Result]]] = []
        for op, future in pending:
            try:  # a bad op fails alone, not its neighbours of the tick
                _validate_op(op)
                if isinstance(op, PutOp) and op.value is not None:
                    self.check_value(op.value)
            except Exception as exc:  # noqa: BLE001 - handed to the op's caller
                future.set_exception(exc)
            else:
                ready.append((op, future))
        for segment in _segments(ready):
            try:
                results = await self._abatch_now([op for op, _ in segment])
            except Exception as exc:  # noqa: BLE001 - handed to the segment's callers
                for _, future in segment:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(segment, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def _abatch_now(self, ops: list[Op]) -> list[Result]:
        return await adrive(self._batch_program(ops), self._aio)

    # Expiry

    def sweep_ttl(self) -> int:
        """Delete every expired item now; returns how many. Reads never return them
        anyway."""
        store, now = self.byte_store, _now()
        expired: list[str] = []
        vectors: list[str] = []
        page: list[str] = []

        def check(keys: list[str]) -> None:
            for key, data in zip(keys, store.mget(keys), strict=True):
                if data is None:
                    continue
                entry = _Entry.decode(data)
                if not entry.live(now):
                    expired.append(key)
                    vectors.append(item_key(entry.namespace, entry.key, VECTOR_ROOT))

        for key in store.yield_keys(prefix=ITEM_ROOT):
            page.append(key)
            if len(page) == _PAGE:
                check(page)
                page = []
        if page:
            check(page)
        gone = expired + (vectors if self.fields is not None else [])
        for start in range(0, len(gone), _PAGE):
            store.mdelete(gone[start : start + _PAGE])
        return len(expired)

    async def asweep_ttl(self) -> int:
        """Async `sweep_ttl` (in a worker thread)."""
        return await asyncio.to_thread(self.sweep_ttl)

    def start_ttl_sweeper(self, sweep_interval_minutes: float | None = None) -> Future[None]:
        """Sweep expired items every `sweep_interval_minutes` (default: the TTL config's
        ``sweep_interval_minutes``, else 5) in a daemon thread, until `stop_ttl_sweeper`."""
        minutes = (
            sweep_interval_minutes or (self.ttl_config or {}).get("sweep_interval_minutes") or 5
        )
        done: Future[None] = Future()
        if self._sweeper is not None:
            done.set_result(None)
            return done
        self._sweeper_stop.clear()

        def loop() -> None:
            try:
                while not self._sweeper_stop.wait(minutes * 60):
                    self.sweep_ttl()
            finally:
                done.set_result(None)

        self._sweeper = threading.Thread(target=loop, name="kvstores-langgraph-ttl", daemon=True)
        self._sweeper.start()
        return done

    def stop_ttl_sweeper(self, timeout: float | None = None) -> bool:
        """Stop the sweeper thread; whether it stopped within `timeout` seconds."""
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is None:
            return True
        self._sweeper_stop.set()
        sweeper.join(timeout)
        return not sweeper.is_alive()

    def close(self) -> None:
        """Stop the sweeper and close the byte store."""
        self.stop_ttl_sweeper()
        self.byte_store.close()


def _segments(
    ops: list[tuple[Op, asyncio.Future[Result]]],
) -> list[list[tuple[Op, asyncio.Future[Result]]]]:
    """A tick's ops in consecutive batches, a new one where an op reads what a put before
    it in the batch writes (a get of that item, or any search or listing)."""
    segments: list[list[tuple[Op, asyncio.Future[Result]]]] = []
    current: list[tuple[Op, asyncio.Future[Result]]] = []
    written: set[tuple[tuple[str, ...], str]] = set()
    for pair in ops:
        op = pair[0]
        reads_written = (isinstance(op, GetOp) and (op.namespace, op.key) in written) or (
            isinstance(op, (SearchOp, ListNamespacesOp)) and bool(written)
        )
        if reads_written:
            segments.append(current)
            current, written = [], set()
        current.append(pair)
        if isinstance(op, PutOp):
            written.add((op.namespace, op.key))
    if current:
        segments.append(current)
    return segments


def _live(values: Sequence[bytes | None], prefix: tuple[str, ...], now: float) -> list[_Entry]:
    entries = []
    for data in values:
        if data is None:
            continue
        entry = _Entry.decode(data)
        if entry.live(now) and entry.namespace[: len(prefix)] == prefix:
            entries.append(entry)
    return entries
