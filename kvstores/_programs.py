"""Operations written once, as programs, run with sync or async I/O (see `kvstores.backend`).

A *program* is a generator that yields requests and receives each one's reply; an error a
request raised is thrown into the program where it yielded it (the program may handle it).
It decides what to send, how to chunk and how to read the replies, and returns the
operation's result. A runner only performs the requests: `drive` with a sync ``perform``,
`adrive` with an async one. ``perform(request)`` returns an `Outcome`: ``(reply, None)``, or
``(None, error)`` for a driver error the program should see. What a request is, is the
backend's business.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, Generic, TypeAlias, TypeVar

__all__ = ["Done", "Outcome", "Program", "adrive", "advance", "drive"]

T = TypeVar("T")
Program: TypeAlias = Generator[Any, Any, T]
#: A request's reply, or the error it raised instead.
Outcome: TypeAlias = tuple[Any, BaseException | None]


class Done(Generic[T]):
    """The end of a program: its result."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value


def advance(program: Program[T], reply: Any = None, error: BaseException | None = None) -> Any:
    """Hand `program` a reply (or throw in an error): its next request, or `Done`."""
    try:
        return program.send(reply) if error is None else program.throw(error)
    except StopIteration as stop:
        return Done(stop.value)


def drive(program: Program[T], perform: Callable[[Any], Outcome]) -> T:
    """Run `program`, each request done by the sync `perform`: the program's result."""
    request = advance(program)
    while not isinstance(request, Done):
        request = advance(program, *perform(request))
    result: T = request.value
    return result


async def adrive(program: Program[T], perform: Callable[[Any], Awaitable[Outcome]]) -> T:
    """The async twin of `drive`: each request done by the awaited `perform`."""
    request = advance(program)
    while not isinstance(request, Done):
        request = advance(program, *await perform(request))
    result: T = request.value
    return result
