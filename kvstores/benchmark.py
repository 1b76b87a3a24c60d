"""Throughput of kvstores stores, alone or side by side with a raw baseline, in one process.

This is the one home of the benchmark logic: the ``kvstores bench URL`` command runs it on a
single store (`Case` without a baseline), and the scripts ``benchmarks/bench_*.py`` run it
side by side with the raw driver.

A backend benchmark (``benchmarks/bench_<backend>.py``) builds `Case`s, each a kvstores
store and a baseline doing the same job with the raw driver, and hands them to `main`::

    @contextmanager
    def cases(args: argparse.Namespace) -> Iterator[list[Case]]:
        yield [Case("memory", InMemoryByteStore(), DictBaseline())]

    if __name__ == "__main__":
        main(cases, description="InMemoryByteStore vs a dict")

Both sides get the very same key and value objects. Every (op, batch) is measured in
interleaved rounds (kvstores, raw, raw, kvstores, ...), each the fastest of the op's runs in
`min_time` seconds, and the best (or median) round is reported as keys per second;
``ratio = kvstores / raw``, so above 1 means kvstores is faster. A `Case` without a baseline
measures the store alone (the table then shows keys per second and milliseconds per call).

A `Case` may also carry LangChain's own store for the backend (`Case.langchain`, a
``langchain_core`` `BaseStore` passed as is: it has the `Target` methods). It is a third
side, checked and timed in the same interleaved rounds (kvstores, raw, langchain, then
langchain, raw, kvstores, ...), and reported as ``lc ratio = langchain / raw``.

``--json PATH`` (`append_json`) appends the run to a JSON Lines file, which
``benchmarks/chart.py`` turns into a chart.

`run` reports progress after every round: as lines on stderr (``progress=True``), or to a
callback taking a `Progress` (what the command line's progress bar does).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import json
import os
import platform
import random
import signal
import statistics
import sys
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Sequence,
)
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from time import perf_counter
from typing import Any, Protocol, TypeVar

from kvstores.backend import chunked

__all__ = [
    "OPS",
    "BenchmarkError",
    "Case",
    "CaseFactory",
    "Config",
    "Op",
    "Pair",
    "Progress",
    "ProgressCallback",
    "Result",
    "State",
    "Target",
    "ThreadedBaseline",
    "Work",
    "Workload",
    "append_json",
    "build_parser",
    "check_ops",
    "config_from_args",
    "describe",
    "format_table",
    "main",
    "plan",
    "run",
]

Pair = tuple[str, bytes]
T = TypeVar("T")
R = TypeVar("R")


class Target(Protocol):
    """What the harness drives: a kvstores `ByteStore` or a baseline with the same methods."""

    def mset(self, pairs: Sequence[Pair], /) -> None: ...

    def mget(self, keys: Sequence[str], /) -> Sequence[bytes | None]: ...

    def mdelete(self, keys: Sequence[str], /) -> None: ...

    def yield_keys(self, *, prefix: str) -> Iterable[str]: ...

    async def amset(self, pairs: Sequence[Pair], /) -> None: ...

    async def amget(self, keys: Sequence[str], /) -> Sequence[bytes | None]: ...

    async def amdelete(self, keys: Sequence[str], /) -> None: ...

    def ayield_keys(self, *, prefix: str) -> AsyncIterable[str]: ...


class ThreadedBaseline(ABC):
    """A baseline whose driver has no async API: each async twin is the sync op in a thread.

    That is what kvstores does by default, and what a user of the raw driver would write.
    `ayield_keys` takes the whole (snapshot) listing in one thread hop.
    """

    @abstractmethod
    def mset(self, pairs: Sequence[Pair], /) -> None: ...

    @abstractmethod
    def mget(self, keys: Sequence[str], /) -> list[bytes | None]: ...

    @abstractmethod
    def mdelete(self, keys: Sequence[str], /) -> None: ...

    @abstractmethod
    def yield_keys(self, *, prefix: str) -> Iterable[str]: ...

    async def amset(self, pairs: Sequence[Pair], /) -> None:
        await asyncio.to_thread(self.mset, pairs)

    async def amget(self, keys: Sequence[str], /) -> list[bytes | None]:
        return await asyncio.to_thread(self.mget, keys)

    async def amdelete(self, keys: Sequence[str], /) -> None:
        await asyncio.to_thread(self.mdelete, keys)

    async def ayield_keys(self, *, prefix: str) -> AsyncIterator[str]:
        keys = await asyncio.to_thread(lambda: list(self.yield_keys(prefix=prefix)))
        for key in keys:
            yield key


@dataclass(frozen=True)
class Case:
    """One comparison: a kvstores store and its raw baseline, under a backend label.

    Without a baseline, the store is measured alone. `langchain`, if given, is LangChain's
    own store for the backend (a ``langchain_core`` `BaseStore` fits `Target` as is): a
    third side, timed in the same interleaved rounds, with the same checks and resets.
    `settle`, if given, is called with the side's target, untimed, after each reset of its
    data and after each timed run that wrote, so that every timed run starts from a settled
    state: a server backend can bring every side to the same steady state there
    (PostgreSQL: ``VACUUM``, as autovacuum would at a moment of its own choosing, which
    otherwise decides whether a listing after a write reads table pages for visibility).
    """

    backend: str
    store: Target
    baseline: Target | None = None
    settle: Callable[[Target], None] | None = None
    langchain: Target | None = None


class BenchmarkError(RuntimeError):
    """A side did not behave as a store must (checked before and while timing)."""


# Workload


@dataclass(frozen=True)
class Workload:
    """The keys and values: ``a/0000000``, ``b/0000001``, ... (even `a/`, odd `b/`)."""

    keys: list[str]
    values: list[bytes]
    missing: list[str]  # never written: ``m/0000000``, ...
    prefix: str = "a/"

    @classmethod
    def make(cls, n_keys: int, value_size: int, seed: int = 0) -> Workload:
        rng = random.Random(seed)
        keys = [f"{'ab'[i % 2]}/{i:07d}" for i in range(n_keys)]
        values = [rng.randbytes(value_size) for _ in range(n_keys)]
        missing = [f"m/{i:07d}" for i in range(n_keys)]
        return cls(keys, values, missing)

    @property
    def pairs(self) -> list[Pair]:
        return list(zip(self.keys, self.values, strict=True))

    @property
    def prefixed(self) -> int:
        """How many keys start with `prefix`: what a full listing must yield."""
        return sum(k.startswith(self.prefix) for k in self.keys)


class State(Enum):
    """What a side holds: nothing, every workload key, or something in between."""

    EMPTY = "empty"
    FULL = "full"
    DIRTY = "dirty"


# Operations: each runs a whole op (every batch) and returns how many keys it handled.


@dataclass(frozen=True)
class Work:
    """The prepared input of one op: its key batches, pair batches and listing prefix."""

    keys: list[list[str]]
    pairs: list[list[Pair]]
    prefix: str


def _mset(t: Target, w: Work) -> int:
    for batch in w.pairs:
        t.mset(batch)
    return sum(map(len, w.pairs))


def _mget(t: Target, w: Work) -> int:
    for batch in w.keys:
        t.mget(batch)
    return sum(map(len, w.keys))


def _mdelete(t: Target, w: Work) -> int:
    for batch in w.keys:
        t.mdelete(batch)
    return sum(map(len, w.keys))


def _yield_keys(t: Target, w: Work) -> int:
    count = 0
    for _ in t.yield_keys(prefix=w.prefix):  # the least a caller does with each key
        count += 1
    return count


async def _amset(t: Target, w: Work) -> int:
    for batch in w.pairs:
        await t.amset(batch)
    return sum(map(len, w.pairs))


async def _amget(t: Target, w: Work) -> int:
    for batch in w.keys:
        await t.amget(batch)
    return sum(map(len, w.keys))


async def _amdelete(t: Target, w: Work) -> int:
    for batch in w.keys:
        await t.amdelete(batch)
    return sum(map(len, w.keys))


async def _ayield_keys(t: Target, w: Work) -> int:
    count = 0
    async for _ in t.ayield_keys(prefix=w.prefix):
        count += 1
    return count


@dataclass(frozen=True)
class Op:
    """A measured operation: `run` (sync) or `arun` (async), the state it needs and leaves."""

    name: str
    needs: State
    leaves: State | None = None  # None: unchanged
    run: Callable[[Target, Work], int] | None = None
    arun: Callable[[Target, Work], Awaitable[int]] | None = None
    batched: bool = True
    misses: bool = False  # works on keys that were never written

    @property
    def is_async(self) -> bool:
        return self.arun is not None


_EMPTY, _FULL = State.EMPTY, State.FULL

OPS: tuple[Op, ...] = (
    Op("mset", _EMPTY, _FULL, run=_mset),
    Op("mget_hits", _FULL, run=_mget),
    Op("mget_misses", _FULL, run=_mget, misses=True),
    Op("yield_keys", _FULL, run=_yield_keys, batched=False),
    Op("mdelete", _FULL, _EMPTY, run=_mdelete),
    Op("amset", _EMPTY, _FULL, arun=_amset),
    Op("amget_hits", _FULL, arun=_amget),
    Op("amget_misses", _FULL, arun=_amget, misses=True),
    Op("ayield_keys", _FULL, arun=_ayield_keys, batched=False),
    Op("amdelete", _FULL, _EMPTY, arun=_amdelete),
)


# Running


@dataclass(frozen=True)
class Config:
    """How much to run; `build_parser` documents each field."""

    keys: int = 20_000
    value_size: int = 1024
    batches: tuple[int, ...] = (1, 100, 1000)
    rounds: int = 5
    ops: tuple[str, ...] = ()  # empty: every op
    use_async: bool = True
    max_calls: int = 2000
    min_time: float = 0.1
    stat: str = "best"

    def selected(self) -> list[Op]:
        """The ops to run, in `OPS` order; a filter ``mget`` selects both ``mget_*`` ops."""
        check_ops(self.ops)
        return [
            op
            for op in OPS
            if (self.use_async or not op.is_async) and (not self.ops or _matches(op, self.ops))
        ]


def _matches(op: Op, filters: Iterable[str]) -> bool:
    return any(op.name == f or op.name.startswith(f + "_") for f in filters)


def check_ops(filters: Iterable[str]) -> None:
    """Raise `ValueError` naming the filters that select no op (and the known ops)."""
    unknown = [f for f in filters if not any(_matches(op, [f]) for op in OPS)]
    if unknown:
        known = ", ".join(op.name for op in OPS)
        raise ValueError(f"unknown op(s) {', '.join(unknown)}; known: {known}")


def plan(config: Config) -> list[tuple[Op, int | None]]:
    """Every (op, batch) `run` measures for one case, in order (batch `None`: not batched)."""
    return [
        (op, batch)
        for op in config.selected()
        for batch in (config.batches if op.batched else (None,))
    ]


@dataclass
class Result:
    """Keys per second of each round, for every side of one (backend, op, batch).

    `raw` stays empty when the case has no baseline, `langchain` when it has no LangChain
    side.
    """

    backend: str
    op: str
    batch: int | None  # None: not batched (yield_keys)
    kvstores: list[float] = field(default_factory=list)
    raw: list[float] = field(default_factory=list)
    langchain: list[float] = field(default_factory=list)

    @property
    def has_baseline(self) -> bool:
        return bool(self.raw)

    @property
    def has_langchain(self) -> bool:
        return bool(self.langchain)

    def rounds(self, side: str) -> list[float]:
        """The keys/s of each round of `side` (``kvstores``, ``raw`` or ``langchain``)."""
        if side not in SIDES:
            raise ValueError(f"unknown side {side!r}; known: {', '.join(SIDES)}")
        rates: list[float] = getattr(self, side)
        return rates

    def rate(self, side: str, stat: str = "best") -> float:
        rates = self.rounds(side)
        if not rates:
            raise ValueError(f"no {side} rounds in this result")
        return max(rates) if stat == "best" else statistics.median(rates)

    def ratio(self, stat: str = "best") -> float:
        """kvstores keys/s over raw keys/s (`ValueError` without a baseline)."""
        return self.rate("kvstores", stat) / self.rate("raw", stat)

    def langchain_ratio(self, stat: str = "best") -> float:
        """LangChain's keys/s over raw keys/s (`ValueError` without either side)."""
        return self.rate("langchain", stat) / self.rate("raw", stat)


SIDES = ("kvstores", "raw", "langchain")
"""The sides a `Case` can have, in the order a round runs them (then reversed)."""


@dataclass(frozen=True)
class Progress:
    """Where `run` is: sent to a progress callback after every round of every side.

    `done` counts rounds of all cases, sides included, out of `total`; `result` is set
    when the round just done was the last one of its (op, batch).
    """

    done: int
    total: int
    backend: str
    op: str
    batch: int | None
    side: str
    result: Result | None = None


ProgressCallback = Callable[[Progress], None]


@dataclass
class _Side:
    name: str
    target: Target
    state: State = State.DIRTY


class _Runner:
    """Drives the sides of one case through the ops, tracking what each side holds."""

    def __init__(self, case: Case, config: Config, workload: Workload) -> None:
        self.case = case
        self.config = config
        self.workload = workload
        self.sides = [_Side("kvstores", case.store)]
        if case.baseline is not None:
            self.sides.append(_Side("raw", case.baseline))
        if case.langchain is not None:
            self.sides.append(_Side("langchain", case.langchain))
        self.loop = _Loop()
        self._fill = list(chunked(workload.pairs, 1000))
        self._wipe = list(chunked(workload.keys, 1000))

    def prepare(self, side: _Side, state: State) -> None:
        """Bring `side` to `state` with untimed sync calls."""
        if side.state is state:
            return
        if state is State.EMPTY:
            for keys in self._wipe:
                side.target.mdelete(keys)
        else:
            for pairs in self._fill:
                side.target.mset(pairs)
        if self.case.settle is not None:
            self.case.settle(side.target)
        side.state = state

    def verify(self) -> None:
        """Check every side behaves alike, and warm them up, before anything is timed."""
        w, run = self.workload, self.loop.run
        keys, values, pairs = w.keys[:20], w.values[:20], w.pairs[:20]
        listed = sorted(k for k in keys if k.startswith(w.prefix))
        for side in self.sides:
            t, name = side.target, side.name
            self.prepare(side, State.EMPTY)
            t.mset(pairs[:10])
            run(t.amset(pairs[10:]))
            got = [*t.mget(keys[:10]), *run(t.amget(keys[10:]))]
            _check(got == values, f"{name}: mget/amget do not return what mset/amset wrote")
            misses = [*t.mget(w.missing[:10]), *run(t.amget(w.missing[10:20]))]
            _check(misses == [None] * 20, f"{name}: mget/amget of missing keys are not None")
            found = sorted(t.yield_keys(prefix=w.prefix))
            afound = sorted(run(_collect(t.ayield_keys(prefix=w.prefix))))
            _check(found == afound == listed, f"{name}: yield_keys/ayield_keys are wrong")
            t.mdelete(keys[:10])
            run(t.amdelete(keys[10:]))
            _check(list(t.mget(keys)) == [None] * 20, f"{name}: mdelete/amdelete left keys")

    def measure(
        self, op: Op, batch: int | None, on_round: Callable[[str, bool], None] | None = None
    ) -> Result:
        """Interleaved rounds of `op`: kvstores, raw (, langchain), then the reverse, ...

        `on_round(side, last)` is called after each round (`last`: the op's final one).
        """
        w = self.workload
        total = len(w.keys)
        count = total if batch is None else min(total, batch * self.config.max_calls)
        size = batch or count
        work = Work(
            [list(c) for c in chunked((w.missing if op.misses else w.keys)[:count], size)],
            [list(c) for c in chunked(w.pairs[:count], size)],
            w.prefix,
        )
        expected = count if op.batched else w.prefixed
        result = Result(self.case.backend, op.name, batch)
        rounds = self.config.rounds
        for round_ in range(rounds):
            order = self.sides if round_ % 2 == 0 else self.sides[::-1]
            for i, side in enumerate(order):
                rate = self._round(side, op, work, expected, complete=count == total)
                result.rounds(side.name).append(rate)
                if on_round is not None:
                    on_round(side.name, round_ == rounds - 1 and i == len(order) - 1)
        return result

    def _round(self, side: _Side, op: Op, work: Work, expected: int, complete: bool) -> float:
        """Keys/s of one round: its fastest run of `op` (state reset untimed before each run).

        A round repeats the op for `min_time` seconds (at least once: ``min_time=0`` runs it
        once). Fast ops (a few ms) thus run many times and the fastest run is the one the
        other processes did not preempt.
        """
        elapsed, best, reps = 0.0, 0.0, 0
        while reps == 0 or (elapsed < self.config.min_time and reps < 1000):
            self.prepare(side, op.needs)
            gc.collect()
            gc.disable()
            try:
                if op.arun is not None:
                    seconds, count = self.loop.run(_timed(op.arun, side.target, work))
                else:
                    assert op.run is not None
                    start = perf_counter()
                    count = op.run(side.target, work)
                    seconds = perf_counter() - start
            finally:
                gc.enable()
            if op.leaves is not None:
                side.state = op.leaves if complete else State.DIRTY
                if self.case.settle is not None:
                    self.case.settle(side.target)
            _check(count == expected, f"{side.name} {op.name}: {count} keys, not {expected}")
            elapsed += seconds
            best = max(best, count / seconds)
            reps += 1
        return best

    def close(self) -> None:
        self.loop.close()


class _Loop:
    """One event loop for every async op (`asyncio.Runner` needs Python 3.11).

    Ctrl-C while an op runs cancels it, as `asyncio.Runner` does, and then raises
    `KeyboardInterrupt`: a `KeyboardInterrupt` raised inside the loop's own machinery could
    leave a future that never completes. Any signal whose handler is
    `signal.default_int_handler` (SIGINT by default) is treated so.
    """

    _SIGNALS = tuple(
        getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGBREAK") if hasattr(signal, name)
    )

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()

    def run(self, coroutine: Coroutine[object, object, R]) -> R:
        task = self._loop.create_task(coroutine)
        interrupted = False

        def cancel(signum: int, frame: object) -> None:
            nonlocal interrupted
            interrupted = True
            self._loop.call_soon_threadsafe(task.cancel)

        replaced = []
        if threading.current_thread() is threading.main_thread():
            for number in self._SIGNALS:
                if signal.getsignal(number) is signal.default_int_handler:
                    replaced.append(number)
                    signal.signal(number, cancel)
        try:
            return self._loop.run_until_complete(task)
        except asyncio.CancelledError:
            if interrupted:
                raise KeyboardInterrupt from None
            raise
        finally:
            for number in replaced:
                signal.signal(number, signal.default_int_handler)

    def close(self) -> None:
        # As asyncio.run does: cancel what is left, then close the async generators (a store
        # may dispose an async engine there, in its own loop), then wait for the default
        # executor's threads.
        loop = self._loop
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=30))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def _check(ok: bool, problem: str) -> None:
    if not ok:
        raise BenchmarkError(problem)


async def _timed(
    arun: Callable[[Target, Work], Awaitable[int]], target: Target, work: Work
) -> tuple[float, int]:
    start = perf_counter()
    count = await arun(target, work)
    return perf_counter() - start, count


async def _collect(keys: AsyncIterable[str]) -> list[str]:
    return [key async for key in keys]


class _Tracker:
    """Counts rounds across cases and sends `Progress` events to a callback."""

    def __init__(self, total: int, callback: ProgressCallback | None) -> None:
        self.total = total
        self.done = 0
        self.callback = callback

    def measure(self, runner: _Runner, op: Op, batch: int | None) -> Result:
        last: list[Progress] = []

        def on_round(side: str, final: bool) -> None:
            self.done += 1
            event = Progress(self.done, self.total, runner.case.backend, op.name, batch, side)
            if final:
                last.append(event)  # sent below, with the result
            elif self.callback is not None:
                self.callback(event)

        result = runner.measure(op, batch, on_round)
        if self.callback is not None:
            for event in last:
                self.callback(replace(event, result=result))
        return result


def run(
    cases: Iterable[Case],
    config: Config,
    *,
    progress: bool | ProgressCallback = True,
    workload: Workload | None = None,
) -> list[Result]:
    """Measure every selected (op, batch) of every case.

    `progress`: ``True`` prints a line per (op, batch) on stderr, ``False`` prints nothing,
    a callable gets a `Progress` after every round. `workload` defaults to
    ``Workload.make(config.keys, config.value_size)``.

    Raises:
        BenchmarkError: a side does not store, return, list or delete what it should.
    """
    if workload is None:
        workload = Workload.make(config.keys, config.value_size)
    cases = list(cases)
    steps = plan(config)
    sides = sum(1 + (c.baseline is not None) + (c.langchain is not None) for c in cases)
    tracker = _Tracker(len(steps) * config.rounds * sides, progress if callable(progress) else None)
    results = []
    # Every timed run starts with an untimed gc.collect(), which walks every tracked object
    # (0.04 s here with kvstores and its drivers imported, 0.12 s with LangChain's modules,
    # for a yield_keys run of 0.1 ms repeated up to 1,000 times a round). Frozen, what
    # exists now (modules, workload, stores) is left out of those walks; the garbage of the
    # runs is still collected.
    gc.collect()
    gc.freeze()
    try:
        for case in cases:
            runner = _Runner(case, config, workload)
            try:
                runner.verify()
                for op, batch in steps:
                    results.append(result := tracker.measure(runner, op, batch))
                    if progress is True:
                        print(_progress(result, config.stat), file=sys.stderr, flush=True)
            finally:
                runner.close()
    finally:
        gc.unfreeze()
    return results


# Output


def _progress(result: Result, stat: str) -> str:
    def rates(values: list[float]) -> str:
        return " ".join(f"{v / 1000:,.0f}k" for v in values)

    head = f"{result.backend} {result.op} batch={result.batch or '-'}: "
    if not result.has_baseline:
        line = head + f"kvstores {rates(result.kvstores)}"
    else:
        line = (
            head + f"ratio {result.ratio(stat):.2f} | kvstores {rates(result.kvstores)} | "
            f"raw {rates(result.raw)}"
        )
    if result.has_langchain:
        line += f" | langchain {rates(result.langchain)}"
    return line


HEADERS = ("backend", "op", "batch", "kvstores keys/s", "raw keys/s", "ratio")
LANGCHAIN_HEADERS = ("langchain keys/s", "lc ratio")
"""The columns added after `HEADERS` when some result has a LangChain side."""
STORE_HEADERS = ("backend", "op", "batch", "keys/s", "ms/call")
"""The columns of a table of results without a baseline: ms/call is the time of one call
(``-`` for the unbatched ``yield_keys``)."""


def _ms_per_call(result: Result, stat: str) -> str:
    rate = result.rate("kvstores", stat)
    if result.batch is None or rate <= 0:
        return "-"
    return f"{result.batch / rate * 1000:,.3f}"


def format_table(results: Sequence[Result], *, stat: str = "best", markdown: bool = False) -> str:
    """An aligned text table, or a markdown one, with a row per (backend, op, batch).

    With a baseline in any result: kvstores keys/s, raw keys/s and their ratio, and, when
    some result has a LangChain side, LangChain's keys/s and its ratio to raw
    (`LANGCHAIN_HEADERS`); without either: keys/s and milliseconds per call
    (`STORE_HEADERS`). A cell a result has no side for is ``-``.
    """
    langchain = any(r.has_langchain for r in results)
    compared = langchain or any(r.has_baseline for r in results)
    headers: Sequence[str] = (
        (*HEADERS, *LANGCHAIN_HEADERS) if langchain else HEADERS if compared else STORE_HEADERS
    )

    def row(r: Result) -> tuple[str, ...]:
        batch = "-" if r.batch is None else str(r.batch)
        head = (r.backend, r.op, batch, f"{r.rate('kvstores', stat):,.0f}")
        if not compared:
            return (*head, _ms_per_call(r, stat))
        if not r.has_baseline:
            cells = (*head, "-", "-")
        else:
            cells = (*head, f"{r.rate('raw', stat):,.0f}", f"{r.ratio(stat):.2f}")
        if not langchain:
            return cells
        lc_rate = f"{r.rate('langchain', stat):,.0f}" if r.has_langchain else "-"
        lc_ratio = f"{r.langchain_ratio(stat):.2f}" if r.has_langchain and r.has_baseline else "-"
        return (*cells, lc_rate, lc_ratio)

    rows = [row(r) for r in results]
    if markdown:
        align = "|---|---|" + "--:|" * (len(headers) - 2)
        lines = ["| " + " | ".join(headers) + " |", align]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(row[i]) for row in (headers, *rows)) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        cells = zip(row, widths, strict=True)
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(cells))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def describe(config: Config, *, baseline: bool = True, langchain: bool = False) -> str:
    """What ran where, to print above a table (`baseline`: explain the ratio; `langchain`:
    and the LangChain one)."""
    sides = "interleaved rounds" if baseline else "rounds"
    runs = (
        f"each the fastest run in {config.min_time:g} s" if config.min_time > 0 else "one run each"
    )
    text = (
        f"{config.keys:,} keys x {config.value_size:,} B; batches "
        f"{','.join(map(str, config.batches))} (at most {config.max_calls:,} calls per op); "
        f"{config.stat} of {config.rounds} {sides}, {runs}.\n"
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs."
    )
    if baseline:
        text += " ratio = kvstores / raw: above 1, kvstores is faster."
    if langchain:
        text += " lc ratio = langchain / raw."
    return text


# JSON Lines


def _json_rate(result: Result, side: str, stat: str) -> float | None:
    return result.rate(side, stat) if result.rounds(side) else None


def _json_ratio(ratio: Callable[[str], float], stat: str) -> float | None:
    try:
        return ratio(stat)
    except ValueError:  # a side is missing
        return None


def append_json(
    path: str | os.PathLike[str],
    results: Sequence[Result],
    config: Config,
    *,
    command: Sequence[str] | None = None,
) -> None:
    """Append a run to the JSON Lines file `path`: a header line, then a line per result.

    The header is ``{"kind": "run", "run": ID, "date", "python", "machine", "system",
    "cpus", "command", "config"}``; each result is ``{"kind": "result", "run": ID,
    "backend", "op", "batch", "stat", "rounds", "kvstores", "raw", "langchain", "ratio",
    "langchain_ratio", "samples"}``: keys per second of the `stat` round for each side and
    the ratios to raw (``null`` where a side is missing), and every round's keys per second
    in ``samples``. Several runs (of several scripts) can thus go into one file.
    """
    run_id = uuid.uuid4().hex[:12]
    header: dict[str, Any] = {
        "kind": "run",
        "run": run_id,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "system": platform.system(),
        "cpus": os.cpu_count(),
        "command": list(sys.argv if command is None else command),
        "config": {
            "keys": config.keys,
            "value_size": config.value_size,
            "batches": list(config.batches),
            "rounds": config.rounds,
            "ops": list(config.ops),
            "use_async": config.use_async,
            "max_calls": config.max_calls,
            "min_time": config.min_time,
            "stat": config.stat,
        },
    }
    stat = config.stat
    lines = [header]
    for r in results:
        lines.append(
            {
                "kind": "result",
                "run": run_id,
                "backend": r.backend,
                "op": r.op,
                "batch": r.batch,
                "stat": stat,
                "rounds": config.rounds,
                **{side: _json_rate(r, side, stat) for side in SIDES},
                "ratio": _json_ratio(r.ratio, stat),
                "langchain_ratio": _json_ratio(r.langchain_ratio, stat),
                "samples": {side: r.rounds(side) for side in SIDES},
            }
        )
    with Path(path).open("a", encoding="utf-8") as file:
        for line in lines:
            file.write(json.dumps(line) + "\n")


# Command line


def _csv(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    """The harness options; a backend may add its own (say ``--url``) before parsing."""
    names = ", ".join(op.name for op in OPS)
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--keys", type=int, default=20_000, help="keys in the workload")
    p.add_argument("--value-size", type=int, default=1024, help="bytes per value")
    p.add_argument("--batches", type=_csv, default=("1", "100", "1000"), help="e.g. 1,100,1000")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds per side")
    p.add_argument("--ops", type=_csv, default=(), help=f"a comma-separated subset of {names}")
    p.add_argument("--no-async", action="store_true", help="skip the async ops")
    p.add_argument(
        "--max-calls", type=int, default=2000, help="calls per op at most (caps batch 1's keys)"
    )
    p.add_argument("--min-time", type=float, default=0.1, help="seconds of runs per round")
    p.add_argument("--stat", choices=("best", "median"), default="best", help="round reported")
    p.add_argument("--markdown", action="store_true", help="print a markdown table")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument(
        "--json",
        metavar="PATH",
        help="append the run to this JSON Lines file (for benchmarks/chart.py)",
    )
    return p


def config_from_args(args: argparse.Namespace) -> Config:
    """A `Config` from options parsed by a `build_parser` parser."""
    try:
        check_ops(args.ops)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    return Config(
        keys=args.keys,
        value_size=args.value_size,
        batches=tuple(sorted({int(b) for b in args.batches})),
        rounds=args.rounds,
        ops=args.ops,
        use_async=not args.no_async,
        max_calls=args.max_calls,
        min_time=args.min_time,
        stat=args.stat,
    )


CaseFactory = Callable[[argparse.Namespace], AbstractContextManager[Sequence[Case]]]


def main(
    make_cases: CaseFactory,
    *,
    description: str | None = None,
    parser: argparse.ArgumentParser | None = None,
    argv: Sequence[str] | None = None,
) -> list[Result]:
    """Parse options, build the cases (`make_cases` sets up and tears down), run, print
    (and with ``--json PATH``, append the results to PATH)."""
    args = (parser or build_parser(description)).parse_args(argv)
    config = config_from_args(args)
    with make_cases(args) as cases:
        langchain = any(case.langchain is not None for case in cases)
        results = run(cases, config, progress=not args.quiet)
    print(describe(config, langchain=langchain), end="\n\n")
    print(format_table(results, stat=config.stat, markdown=args.markdown))
    if getattr(args, "json", None):
        command = [sys.argv[0], *(sys.argv[1:] if argv is None else argv)]
        append_json(args.json, results, config, command=command)
    return results
