"""Operations written once, as programs, and the sync and async runners that do their I/O.

A *program* is a generator that yields requests, ``(verb, payload)``, and receives each
reply; a redis-py error raised by a request is thrown into the program where it yielded it
(the program may handle it: ``UNLINK`` unknown → ``DEL``). The program decides what to send,
how to chunk and how to read the replies, and returns the operation's result. A runner only
performs the requests, with a sync client (`run`, `listing`) or an asyncio one (`arun`,
`alisting`), through an I/O object whose methods are the verbs:

- ``command``: one command; its reply.
- ``pipeline``: commands in one non-transactional pipeline (redis-py's, or its cluster
  pipeline); their replies.
- ``nodes``: per-node pipelines on a cluster (`kvstores.redis.cluster`); the replies per
  node, or `None` if any failed.
- ``call``: a method of the redis-py client, ``(name, args, kwargs)``; its result.
- ``take``, ``send``, ``read``: a connection of a server's pool, a command sent on it, a reply
  read from it (`kvstores.redis.scan`'s pipelined ``SCAN``).
- ``slot_of``, ``pause``, ``serving``: a slot a cluster's node served when the listing began,
  a pause, the node serving a slot once the cluster's map is read again (a cluster listing
  across a failover, `kvstores.redis.scan.Listing.on_cluster`).

A listing's program also yields ``("emit", keys)``, each followed by a request or its end:
the listing runners hand the keys to their caller.
"""

from __future__ import annotations

from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Sequence,
)
from typing import Any, TypeAlias, TypeVar

from kvstores.backend import Done, DriverErrors, Outcome, adrive, advance, drive
from kvstores.redis.cluster import aon_nodes, on_nodes
from kvstores.redis.driver import DRIVER_ERRORS

__all__ = ["AsyncClientIO", "ClientIO", "Program", "alisting", "arun", "listing", "run"]

T = TypeVar("T")
Request: TypeAlias = tuple[str, Any]
Program: TypeAlias = Generator[Request, Any, T]


def step(
    program: Program[None], reply: Any = None, error: BaseException | None = None
) -> tuple[Request | None, Sequence[str]]:
    """`advance` a listing's program to its next request (`None`: the end), and the keys it
    emitted on the way."""
    request = advance(program, reply, error)
    keys: Sequence[str] = ()
    if not isinstance(request, Done) and request[0] == "emit":
        keys = request[1]
        request = advance(program)
    return (None if isinstance(request, Done) else request), keys


class Verbs:
    """The verbs redis-py's sync and asyncio clients do alike (they share their API): each
    returns what the client returns, the reply or, with an asyncio client, an awaitable of it."""

    __slots__ = ("client",)

    def __init__(self, client: Any) -> None:
        self.client = client

    def command(self, args: tuple[Any, ...]) -> Any:
        return self.client.execute_command(*args)

    def pipeline(self, commands: Iterable[tuple[Any, ...]]) -> Any:
        return _pipeline(self.client, commands).execute()

    def call(self, payload: tuple[str, Sequence[Any], dict[str, Any]]) -> Any:
        name, args, kwargs = payload
        return getattr(self.client, name)(*args, **kwargs)


# Sync


class ClientIO(Verbs):
    """The verbs, done with a sync redis-py client."""

    __slots__ = ()

    def perform(self, request: Request) -> Outcome:
        verb, payload = request
        try:
            return getattr(self, verb)(payload), None
        except DRIVER_ERRORS as exc:
            return None, exc

    def nodes(self, work: Any) -> list[list[Any]] | None:
        return on_nodes(self.client, work)

    def close(self) -> None:
        """Release what the I/O holds (nothing: the client is the store's)."""


def run(io: ClientIO, program: Program[T]) -> T:
    """Run an operation's program with a sync client: its result."""
    return drive(program, io.perform)


def listing(
    open_listing: Callable[[], tuple[ClientIO, Program[None]]], errors: DriverErrors
) -> Iterator[str]:
    """Run a listing's program with a sync client: the keys it emits, as one generator.

    `open_listing` gives the I/O and the program at the first key; `errors` maps the
    driver's errors; the I/O is closed at the end (or when the caller stops early).
    """
    with errors:
        io, program = open_listing()
        try:
            request, keys = step(program)
            yield from keys
            while request is not None:
                request, keys = step(program, *io.perform(request))
                yield from keys
        finally:
            io.close()


# Async


class AsyncClientIO(Verbs):
    """The verbs, done with a `redis.asyncio` client: awaited."""

    __slots__ = ()

    async def perform(self, request: Request) -> Outcome:
        verb, payload = request
        try:
            return await getattr(self, verb)(payload), None
        except DRIVER_ERRORS as exc:
            return None, exc

    def nodes(self, work: Any) -> Awaitable[list[list[Any]] | None]:
        return aon_nodes(work)

    async def close(self) -> None:
        """Release what the I/O holds (nothing: the client is the store's)."""


async def arun(io: AsyncClientIO, program: Program[T]) -> T:
    """Run an operation's program with an asyncio client: its result."""
    return await adrive(program, io.perform)


async def alisting(
    open_listing: Callable[[], Awaitable[tuple[AsyncClientIO, Program[None]]]],
    errors: DriverErrors,
) -> AsyncIterator[str]:
    """Run a listing's program with an asyncio client: the keys it emits, as one async
    generator, so that each key costs a single hop (see `listing`)."""
    async with errors:
        io, program = await open_listing()
        try:
            request, keys = step(program)
            for key in keys:
                yield key
            while request is not None:
                request, keys = step(program, *await io.perform(request))
                for key in keys:
                    yield key
        finally:
            await io.close()


def _pipeline(client: Any, commands: Iterable[tuple[Any, ...]]) -> Any:
    """A non-transactional pipeline of `client` (standalone or cluster) holding `commands`."""
    pipe = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    return pipe
