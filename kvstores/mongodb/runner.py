"""Operations written once, as programs of pymongo calls, and the sync and async runners.

A *program* is a generator that yields requests and receives each one's replies. A request
is a list of calls, each a callable without arguments (``functools.partial(collection.find,
...)``): pymongo's sync and async APIs share their method names, so the very same program
builds the calls on a `Collection` or an `AsyncCollection`. The sync runner (`run`) calls
them one after the other; the async one (`arun`) awaits them, concurrently when there are
several (the chunks of a large batch). A pymongo error raised by a call is thrown into the
program where it yielded (it may handle it: a TTL index the server refuses); the replies of
a request come back as a list, in order. A listing runs one program per keyset page.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from typing import Any, TypeAlias, TypeVar

from kvstores.backend import DriverErrors, Outcome, adrive, drive, require

require("pymongo", "mongodb")

from bson.errors import BSONError  # noqa: E402
from pymongo.errors import PyMongoError  # noqa: E402

__all__ = ["Program", "Request", "arun", "run"]

T = TypeVar("T")
Request: TypeAlias = "list[Callable[[], Any]]"
Program: TypeAlias = Generator[Request, Any, T]
#: What a call may raise that its program gets to see (and the store maps to kvstores errors).
DRIVER_ERRORS = (PyMongoError, BSONError)


def _malformed(exc: KeyError) -> PyMongoError:
    """pymongo's `KeyError` on a reply that lacks a field (FerretDB's replies to a failed
    bulk write lack ``nModified``), as the driver error it stands for."""
    error = PyMongoError(f"malformed server reply: no {exc}")
    error.__cause__ = exc
    return error


def _perform(calls: list[Callable[[], Any]]) -> Outcome:
    try:
        return [call() for call in calls], None
    except DRIVER_ERRORS as exc:
        return None, exc
    except KeyError as exc:  # only pymongo runs here
        return None, _malformed(exc)


async def _aperform(calls: list[Callable[[], Any]]) -> Outcome:
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
        return drive(program, _perform)


async def arun(program: Program[T], errors: DriverErrors) -> T:
    """The async twin of `run`, with pymongo's async API."""
    async with errors:
        return await adrive(program, _aperform)
