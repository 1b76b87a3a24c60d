"""A bounded soak: one store shared for a fixed time by sync threads and by coroutines on an
event loop of their own, every result checked against a model at once.

Each worker owns a key range (its own prefix, no prefix another's) and a model dict of
what that range holds. It loops over random batches of `mset`, `mget`, `mdelete` and
`yield_keys(prefix=<its prefix>)` (the async twins in coroutines), each write followed by
an `mget` of its keys (so that a lost write is seen before a later write to the same key
could hide it), and compares each result with its model: a value that differs is a lost
write, a phantom or a wrong value; a listing must be exactly the model's keys. Nobody
else writes in a worker's range, so any difference is the store's. An exception is
counted (and kept) and the worker goes on: the keys a failed write may or may not have
changed become unknown until read again.

Around the run, `run_soak` measures this process's established TCP connections to the
server's ports and its RSS, to catch leaks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import random
import threading
import time
import traceback
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import psutil

from kvstores import ByteStore

T = TypeVar("T")

THREADS = 4
COROUTINES = 4
#: The warm-up's random calls, before its burst (which takes from milliseconds on Redis
#: to a few seconds on the AstraDB emulator).
WARMUP_SECONDS = 0.75
MAX_BATCH = 50
MAX_VALUE = 2048
#: Keys a worker draws from: with batches of 1..50 about half of them exist at any time,
#: so reads hit and miss, writes overwrite and create, deletes find and miss.
KEYS_PER_WORKER = 200
#: Seconds a worker waits at the burst's barrier for the others (a slow call included).
BARRIER_TIMEOUT = 60
#: Failures kept in full (tracebacks, mismatch descriptions) per worker; all are counted.
KEPT = 5
OPS = ("mget", "mset", "mdelete", "yield_keys")
#: Tails of keys: plain, a space and an accent, glob and SQL wildcards, Cyrillic.
TAILS = ("", " é", "%_*?[x]", "ключ")

DEFAULT_PORTS = {
    "postgresql": 5432,
    "mysql": 3306,
    "mariadb": 3306,
    "redis": 6379,
    "rediss": 6379,
    "mongodb": 27017,
    "cassandra": 9042,
    "astradb": 443,
}


def soak_seconds() -> float:
    """The soak's measured duration: ``KVSTORES_SOAK_SECONDS``, default 6."""
    return float(os.environ.get("KVSTORES_SOAK_SECONDS", "6"))


def _describe(value: object) -> str:
    if value is None:
        return "absent"
    if isinstance(value, bytes):
        return f"{len(value)} bytes sha1:{hashlib.sha1(value).hexdigest()[:8]}"
    return f"{type(value).__name__} {value!r:.40}"


@dataclass
class Worker:
    """One worker's key range, model and tallies."""

    name: str
    prefix: str
    rng: random.Random
    lead: bool = False
    keys: list[str] = field(default_factory=list)
    model: dict[str, bytes] = field(default_factory=dict)
    #: Keys a failed write or delete may or may not have changed: not compared until read.
    unknown: set[str] = field(default_factory=set)
    ops: int = 0
    keys_done: int = 0
    errors: int = 0
    error_details: list[str] = field(default_factory=list)
    mismatches: int = 0
    mismatch_details: list[str] = field(default_factory=list)
    #: Keys a listing of this worker's range gave more than once.
    duplicates: int = 0
    #: The keys of the last write, read back by the next call (so no later write hides a
    #: lost one).
    read_back: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.keys = [f"{self.prefix}{i}{TAILS[i % len(TAILS)]}" for i in range(KEYS_PER_WORKER)]

    def plan(self) -> tuple[str, Any]:
        """The next call: its operation and argument (keys may repeat within a batch); after
        a write, the read of its keys."""
        if self.read_back:
            keys, self.read_back = self.read_back, []
            return "mget", keys
        op = self.rng.choice(OPS)
        if op == "yield_keys":
            return op, self.prefix
        keys = self.rng.choices(self.keys, k=self.rng.randint(1, MAX_BATCH))
        if op == "mset":
            return op, [(k, self.rng.randbytes(self.rng.randint(0, MAX_VALUE))) for k in keys]
        return op, keys

    def burst_plan(self) -> list[tuple[str, Any]]:
        """The burst's calls, each round as wide as the workload gets: write MAX_BATCH keys;
        then a `lead` worker (the first thread, the first coroutine) overwrites them (a
        store that replaces existing keys one request each fans out most there) while the
        others list their range (on a store whose sync calls fan out to a thread pool of
        its own, as AstraDB's do, that is the most requests its sync side has in flight: the
        pool's, plus one from each other thread); then every worker reads its keys."""
        keys = self.keys[:MAX_BATCH]

        def write() -> tuple[str, Any]:
            return "mset", [(k, self.rng.randbytes(self.rng.randint(0, MAX_VALUE))) for k in keys]

        return [write(), write() if self.lead else ("yield_keys", self.prefix), ("mget", keys)]

    def _mismatch(self, op: str, key: str, what: str) -> None:
        self.mismatches += 1
        if len(self.mismatch_details) < KEPT:
            self.mismatch_details.append(f"{self.name} {op} {key!r}: {what}")

    def check(self, op: str, arg: Any, result: Any) -> None:
        """Compare a call's result with the model, then apply the call to the model."""
        if op == "mget":
            self.keys_done += len(arg)
            if not isinstance(result, list) or len(result) != len(arg):
                self._mismatch(op, arg[0], f"not a list of {len(arg)}: {result!r:.80}")
                self.unknown.update(arg)
                return
            for key, got in zip(arg, result, strict=True):
                want = self.model.get(key)
                if key in self.unknown:
                    pass
                elif (got is not None and type(got) is not bytes) or got != want:
                    kind = "lost write" if got is None else "phantom" if want is None else "wrong"
                    kind = "not bytes" if got is not None and type(got) is not bytes else kind
                    self._mismatch(
                        op, key, f"{kind} (model: {_describe(want)}, store: {_describe(got)})"
                    )
                # The store's answer becomes the model (it already is, unless it was unknown
                # or just differed): one difference is reported once.
                self.unknown.discard(key)
                if got is None:
                    self.model.pop(key, None)
                else:
                    self.model[key] = bytes(got)
        elif op == "mset":
            self.keys_done += len(arg)
            for key, value in arg:  # in order: a key repeated in the batch, the last wins
                self.model[key] = value
                self.unknown.discard(key)
            self.read_back = list(dict.fromkeys(key for key, _ in arg))
        elif op == "mdelete":
            self.keys_done += len(arg)
            for key in arg:
                self.model.pop(key, None)
                self.unknown.discard(key)
            self.read_back = list(dict.fromkeys(arg))
        else:
            self.keys_done += len(result)
            listed = set(result)
            self.duplicates += len(result) - len(listed)
            want = set(self.model) - self.unknown
            for key in sorted(want - listed):
                self._mismatch(op, key, f"lost write: not listed ({_describe(self.model[key])})")
            for key in sorted(listed - want - self.unknown):
                self._mismatch(op, key, "phantom: listed, but absent from the model")
            # A key listed wrongly is read again by a later mget before it is compared.
            self.unknown |= want ^ listed

    def failed(self, op: str, arg: Any, exc: BaseException) -> None:
        """Count an exception; the keys a write may have changed become unknown."""
        self.errors += 1
        if len(self.error_details) < KEPT:
            trace = "".join(traceback.format_exception(exc))
            self.error_details.append(f"{self.name} {op}: {trace}")
        if op in ("mset", "mdelete"):  # read them back next: the model learns them again
            keys = [key for key, _ in arg] if op == "mset" else arg
            self.unknown.update(keys)
            self.read_back = list(dict.fromkeys(keys))

    def expected_keys(self) -> set[str]:
        """The keys this worker's range holds, as far as the model knows."""
        return set(self.model) - self.unknown


def call(store: ByteStore, op: str, arg: Any) -> Any:
    if op == "mget":
        return store.mget(arg)
    if op == "mset":
        return store.mset(arg)
    if op == "mdelete":
        return store.mdelete(arg)
    return list(store.yield_keys(prefix=arg))


async def acall(store: ByteStore, op: str, arg: Any) -> Any:
    if op == "mget":
        return await store.amget(arg)
    if op == "mset":
        return await store.amset(arg)
    if op == "mdelete":
        return await store.amdelete(arg)
    return [key async for key in store.ayield_keys(prefix=arg)]


class Control:
    """What the workers share: `stop`, and the burst that ends the warm-up: once `burst` is
    set, every worker makes its `Worker.burst_plan` calls, each round starting together
    (`barrier`), then counts itself done (`all_done` is set once every worker is)."""

    def __init__(self, parties: int) -> None:
        self.stop = threading.Event()
        self.burst = threading.Event()
        self.barrier = threading.Barrier(parties, timeout=BARRIER_TIMEOUT)
        self._lock = threading.Lock()
        self._done = 0
        self.all_done = threading.Event()
        self.parties = parties

    def done(self) -> None:
        with self._lock:
            self._done += 1
            if self._done == self.parties:
                self.all_done.set()


def run_sync_worker(store: ByteStore, worker: Worker, control: Control) -> None:
    bursting = True
    while not control.stop.is_set():
        if bursting and control.burst.is_set():
            bursting = False
            for op, arg in worker.burst_plan():
                try:
                    control.barrier.wait()
                except threading.BrokenBarrierError as exc:
                    worker.failed("burst barrier", None, exc)
                step(store, worker, op, arg)
            control.done()
        step(store, worker, *worker.plan())


def step(store: ByteStore, worker: Worker, op: str, arg: Any) -> None:
    """One call, its result checked; an exception counted."""
    worker.ops += 1
    try:
        worker.check(op, arg, call(store, op, arg))
    except Exception as exc:  # noqa: BLE001 - the soak counts every exception and goes on
        worker.failed(op, arg, exc)


async def astep(store: ByteStore, worker: Worker, op: str, arg: Any) -> None:
    """`step` with the async twins."""
    worker.ops += 1
    try:
        worker.check(op, arg, await acall(store, op, arg))
    except Exception as exc:  # noqa: BLE001 - the soak counts every exception and goes on
        worker.failed(op, arg, exc)


async def run_async_worker(
    store: ByteStore, worker: Worker, control: Control, waiter: concurrent.futures.Executor
) -> None:
    bursting = True
    loop = asyncio.get_running_loop()
    while not control.stop.is_set():
        if bursting and control.burst.is_set():
            bursting = False
            for op, arg in worker.burst_plan():
                try:
                    await loop.run_in_executor(waiter, control.barrier.wait)
                except threading.BrokenBarrierError as exc:
                    worker.failed("burst barrier", None, exc)
                await astep(store, worker, op, arg)
            control.done()
        await astep(store, worker, *worker.plan())
        await asyncio.sleep(0)  # never starve the other coroutines, whatever the store does


class LoopThread:
    """An asyncio event loop running in a thread of its own, for the coroutine workers and
    for closing the store's async clients on the loop they were made on."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="soak-loop")
        self.thread.start()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return self.submit(coroutine).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()


def server_ports(url: str) -> set[int]:
    """The TCP ports a store on `url` talks to: every ``host:port`` of the URL (a host
    without one takes the URL's last port, as in ``cassandra://h1,h2:9042``, else the
    scheme's default) and, for a Redis Cluster, every node's, from ``CLUSTER NODES`` (asked
    on a connection of its own, closed at once, so nothing of the store's is opened)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    hosts = parts.netloc.rpartition("@")[2].split(",")
    ports = {int(host.rpartition(":")[2]) for host in hosts if ":" in host}
    if not ports:
        ports = {80 if scheme.endswith("+http") else DEFAULT_PORTS[scheme.split("+")[0]]}
    if scheme.endswith("+cluster"):
        import redis

        node = parts._replace(scheme=scheme.removesuffix("+cluster")).geturl()
        with redis.Redis.from_url(node, socket_timeout=10) as client:
            nodes = client.execute_command("CLUSTER NODES")
        if isinstance(nodes, bytes):
            nodes = nodes.decode()
        if isinstance(nodes, str):  # "<id> <ip>:<port>@<bus port> <flags> ..." per node
            lines = [line.split() for line in nodes.splitlines() if line.strip()]
            ports |= {int(line[1].split("@")[0].rpartition(":")[2]) for line in lines}
        else:  # redis-py's parsed form: {"<ip>:<port>": {...}, ...}
            ports |= {int(address.rpartition(":")[2]) for address in nodes}
    return ports


def open_connections(ports: Iterable[int]) -> int:
    """This process's established TCP connections to any of `ports`."""
    ports = set(ports)
    return sum(
        1
        for connection in psutil.Process().net_connections("tcp")
        if connection.status == psutil.CONN_ESTABLISHED
        and connection.raddr
        and connection.raddr.port in ports
    )


def rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


@dataclass
class SoakResult:
    workers: list[Worker]
    seconds: float
    ops: int
    keys: int
    conns_before: int
    conns_after: int
    rss_before_mib: float
    rss_after_mib: float

    @property
    def errors(self) -> int:
        return sum(w.errors for w in self.workers)

    @property
    def mismatches(self) -> int:
        return sum(w.mismatches for w in self.workers)

    @property
    def duplicates(self) -> int:
        return sum(w.duplicates for w in self.workers)

    def error_details(self) -> list[str]:
        return [detail for w in self.workers for detail in w.error_details]

    def mismatch_details(self) -> list[str]:
        return [detail for w in self.workers for detail in w.mismatch_details]

    def expected_keys(self) -> set[str]:
        """The union of the workers' models: what the namespace must hold."""
        return set().union(*(w.expected_keys() for w in self.workers))

    def expected_values(self) -> dict[str, bytes]:
        """The known keys of every model with their values."""
        return {k: v for w in self.workers for k, v in w.model.items() if k not in w.unknown}

    def unknown_keys(self) -> set[str]:
        return set().union(*(w.unknown for w in self.workers))

    def figures(self) -> dict[str, Any]:
        """Throughput over the measured seconds (an op is a store call, a batch one op;
        keys: the keys a call named, or listed), failures over the whole run."""
        return {
            "ops_per_s": self.ops / self.seconds,
            "keys_per_s": self.keys / self.seconds,
            "ops": self.ops,
            "errors": self.errors,
            "mismatches": self.mismatches,
            "dup_listed": self.duplicates,
            "conns_before": self.conns_before,
            "conns_after": self.conns_after,
            "rss_before_mib": self.rss_before_mib,
            "rss_after_mib": self.rss_after_mib,
        }


def run_soak(
    store: ByteStore,
    loop: LoopThread,
    ports: set[int],
    *,
    seconds: float,
    seed: int,
    warmup: float = WARMUP_SECONDS,
    threads: int = THREADS,
    coroutines: int = COROUTINES,
) -> SoakResult:
    """Run `threads` sync workers and `coroutines` async ones (on `loop`) on `store` at
    once: the warm-up (`warmup` seconds of the workload, then the burst: every worker
    makes the widest calls, all starting together), then "before" measured while they all
    still run, then `seconds` measured, then "after" once they have stopped, nothing closed.

    Connections: pools legitimately grow under load, up to the concurrency they see, and
    some shrink when idle (SQLAlchemy's overflow, httpx's keep-alive limit of 20). So
    "before" is taken at full load right after the burst, which brings each pool to the
    size the workload needs (the most seen in a few samples: the count moves while calls
    open and return connections); a count taken before the warm-up would not include the
    pools at all. "After" is taken with every worker stopped, so a pool that shrinks when
    idle only lowers it, and one that keeps its connections (redis-py, pymongo, SQLAlchemy
    up to its size) shows what it holds: more than under full load means connections that
    are never reused or returned.
    """
    sync_workers = [
        Worker(f"thread {i}", f"t{i}:", random.Random(f"{seed}/t{i}"), lead=i == 0)
        for i in range(threads)
    ]
    # Prefixes differing from the threads' only in case: a store that folds case would
    # list another worker's keys, and that shows as phantoms.
    async_workers = [
        Worker(f"coroutine {i}", f"T{i}:", random.Random(f"{seed}/c{i}"), lead=i == 0)
        for i in range(coroutines)
    ]
    workers = sync_workers + async_workers
    control = Control(len(workers))
    pool = [
        threading.Thread(target=run_sync_worker, args=(store, w, control), name=f"soak-{w.name}")
        for w in sync_workers
    ]
    # Threads of their own for the coroutines' barrier waits: none taken from the loop's
    # default executor, which a store's async methods may use.
    waiter = concurrent.futures.ThreadPoolExecutor(coroutines, thread_name_prefix="soak-wait")

    async def run_coroutines() -> None:
        await asyncio.gather(*(run_async_worker(store, w, control, waiter) for w in async_workers))

    started = loop.submit(run_coroutines())
    for thread in pool:
        thread.start()
    try:
        time.sleep(warmup)
        control.burst.set()
        control.all_done.wait(BARRIER_TIMEOUT)
        conns_before = 0
        for _ in range(5):
            conns_before = max(conns_before, open_connections(ports))
            time.sleep(0.02)
        rss_before = rss_mib()
        ops_before = sum(w.ops for w in workers)
        keys_before = sum(w.keys_done for w in workers)
        begun = time.perf_counter()
        time.sleep(seconds)
    finally:
        control.stop.set()
        control.barrier.abort()  # a worker still waiting in the burst stops waiting
        for thread in pool:
            thread.join(BARRIER_TIMEOUT)
        started.result(BARRIER_TIMEOUT)
        waiter.shutdown()
    elapsed = time.perf_counter() - begun
    return SoakResult(
        workers=workers,
        seconds=elapsed,
        ops=sum(w.ops for w in workers) - ops_before,
        keys=sum(w.keys_done for w in workers) - keys_before,
        conns_before=conns_before,
        conns_after=open_connections(ports),
        rss_before_mib=rss_before,
        rss_after_mib=rss_mib(),
    )
