"""Operations written once, as programs of pymongo calls, and the sync and async runners.

A *program* is a generator that yields requests and receives each one's replies. A request
is a list of calls, each a callable without arguments (``functools.partial(collection.find,
...)``): pymongo's sync and async APIs share their method names, so the very same program
builds the calls on a `Collection` or an `AsyncCollection`. The sync runner (`run`) calls
them one after the other; the async one (`arun`) awaits them, concurrently when there are
several (the chunks of a large batch). A pymongo error raised by a call is thrown into the
program where it yielded (it may handle it: a TTL index the server refuses); the replies of
a request come back as a list, in order. A listing's program also yields `Emit` (keys for
the caller), which the listing runners (`listing`, `alisting`) hand on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Sequence
from typing import Any, Generic, TypeAlias, TypeVar

from kvstores.backend import DriverErrors, require

require("pymongo", "mongodb")

from bson.errors import BSONError  # noqa: E402
from pymongo.errors import PyMongoError  # noqa: E402

__all__ = ["Emit", "Program", "Request", "alisting", "arun", "listing", "run"]

T = TypeVar("T")
Request: TypeAlias = "list[Callable[[], Any]] | Emit"
Program: TypeAlias = Generator[Request, Any, T]
#: What a call may raise that its program gets to see (and the store maps to kvstores errors).
DRIVER_ERRORS = (PyMongoError, BSONError)


class Emit:
    """Keys a listing's program hands to its caller."""

    __slots__ = ("keys",)

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = keys


class Stepper(Generic[T]):
    """Drives a program: `calls` is its pending request (`None` once it is done, with its
    `result`), `keys` what it emitted on its way there."""

    __slots__ = ("calls", "keys", "program", "result")

    def __init__(self, program: Program[T]) -> None:
        self.program = program
        self.calls: list[Callable[[], Any]] | None = None
        self.keys: Sequence[str] = ()
        self.result: Any = None
        self.send(None, None)

    def send(self, replies: Any, error: BaseException | None) -> None:
        """Hand the program the replies to its request (or throw in the error)."""
        program = self.program
        self.keys = ()
        try:
            request = program.send(replies) if error is None else program.throw(error)
            if isinstance(request, Emit):
                self.keys = request.keys
                request = program.send(None)
        except StopIteration as stop:
            self.calls, self.result = None, stop.value
            return
        assert not isinstance(request, Emit), "a program emits once between requests"
        self.calls = request


def _malformed(exc: KeyError) -> PyMongoError:
    """pymongo's `KeyError` on a reply that lacks a field (FerretDB's replies to a failed
    bulk write lack ``nModified``), as the driver error it stands for."""
    error = PyMongoError(f"malformed server reply: no {exc}")
    error.__cause__ = exc
    return error


def _perform(calls: list[Callable[[], Any]]) -> tuple[Any, BaseException | None]:
    try:
        return [call() for call in calls], None
    except DRIVER_ERRORS as exc:
        return None, exc
    except KeyError as exc:  # only pymongo runs here
        return None, _malformed(exc)


async def _aperform(calls: list[Callable[[], Any]]) -> tuple[Any, BaseException | None]:
    try:
        if len(calls) == 1:  # no task for the common case
            return [await calls[0]()], None
        return await asyncio.gather(*(call() for call in calls)), None
    except DRIVER_ERRORS as exc:
        return None, exc
    except KeyError as exc:
        return None, _malformed(exc)


def run(program: Program[T], errors: DriverErrors) -> T:
    """Run a program with sync pymongo calls: its result; driver errors mapped by `errors`."""
    with errors:
        stepper = Stepper(program)
        while stepper.calls is not None:
            stepper.send(*_perform(stepper.calls))
    result: T = stepper.result
    return result


async def arun(program: Program[T], errors: DriverErrors) -> T:
    """The async twin of `run`, with pymongo's async API."""
    async with errors:
        stepper = Stepper(program)
        while stepper.calls is not None:
            stepper.send(*await _aperform(stepper.calls))
    result: T = stepper.result
    return result


def listing(open_program: Callable[[], Program[None]], errors: DriverErrors) -> Iterator[str]:
    """The keys a listing's program emits, as a generator; driver errors mapped by `errors`."""
    with errors:
        stepper = Stepper(open_program())
        yield from stepper.keys
        while stepper.calls is not None:
            stepper.send(*_perform(stepper.calls))
            yield from stepper.keys


async def alisting(
    open_program: Callable[[], Awaitable[Program[None]]], errors: DriverErrors
) -> AsyncIterator[str]:
    """The async twin of `listing`: an async generator."""
    async with errors:
        stepper = Stepper(await open_program())
        for key in stepper.keys:
            yield key
        while stepper.calls is not None:
            stepper.send(*await _aperform(stepper.calls))
            for key in stepper.keys:
                yield key
