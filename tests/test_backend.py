"""The toolkit for backend authors, `kvstores.backend`: what the built-in backends share."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from typing import Any

import pytest

import kvstores.backend as toolkit
from kvstores.backend import (
    BackendUnavailableError,
    Done,
    DriverErrors,
    KVStoreError,
    Outcome,
    PerLoop,
    adrive,
    advance,
    drive,
    error_reason,
    namespace_prefix,
    shorten_key,
)


def test_everything_exported_exists() -> None:
    missing = [name for name in toolkit.__all__ if not hasattr(toolkit, name)]
    assert missing == []


def test_importing_the_toolkit_imports_no_driver() -> None:
    import subprocess
    import sys

    code = (
        "import sys, kvstores.backend\n"
        "drivers = {'redis', 'sqlalchemy', 'pymongo', 'cassandra', 'astrapy', 'psycopg'}\n"
        "print(sorted(drivers & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# Keys


def test_namespace_prefixes_are_unambiguous() -> None:
    assert namespace_prefix(None) == "kvstores::"
    assert namespace_prefix("emb") == "kvstores:3:emb:"
    assert namespace_prefix("a:b", "app") == "app:3:a:b:"
    # "a" + key ":b:k" and "a:b" + key "k" would collide without the length.
    assert namespace_prefix("a") + "b:k" != namespace_prefix("a:b") + "k"
    assert not namespace_prefix("a:b").startswith(namespace_prefix("a"))


def test_short_keys_are_kept_as_they_are() -> None:
    assert shorten_key("k" * 256, 256) == "k" * 256


def test_long_keys_become_head_and_digest() -> None:
    key = "k" * 300
    short = shorten_key(key, 256)
    assert short == "k" * 256 + hashlib.sha256(key.encode()).hexdigest()
    assert shorten_key(key + "x", 256) != short  # the digest tells them apart


def test_a_shortened_escaped_name_hashes_the_key() -> None:
    key = "é" * 100
    escaped = key.encode().hex()  # 400 characters standing for the key
    short = shorten_key(escaped, 140, head=75, sep="~", key=key)
    assert short == escaped[:75] + "~" + hashlib.sha256(key.encode()).hexdigest()
    assert len(short) == 140


# Errors


class Down(ConnectionError):
    pass


class Refused(RuntimeError):
    pass


URL = "redis://user:hunter22@db.example:6379/0"


def test_a_reason_is_never_empty() -> None:
    assert error_reason(Down()) == "Down"
    assert error_reason(Down("  gone ")) == "Down: gone"


def test_unreachable_becomes_backend_unavailable_with_the_password_masked() -> None:
    errors = DriverErrors("redis", URL, unavailable=(Down,), failed=(Refused,))
    with pytest.raises(BackendUnavailableError) as caught, errors:
        raise Down(f"cannot reach {URL}")
    assert "hunter22" not in str(caught.value)
    assert "Down: cannot reach" in str(caught.value)
    assert isinstance(caught.value.__cause__, Down)
    assert caught.value.backend == "redis"


def test_a_refusal_becomes_kvstore_error_naming_where() -> None:
    errors = DriverErrors("redis", URL, unavailable=(Down,), failed=(Refused,))
    with pytest.raises(KVStoreError) as caught, errors:
        raise Refused("WRONGTYPE for hunter22")
    assert not isinstance(caught.value, BackendUnavailableError)
    assert str(caught.value) == (
        "redis error at redis://user:***@db.example:6379/0: Refused: WRONGTYPE for ***"
    )
    table = DriverErrors("sqlite", "sqlite://", unavailable=(), failed=(Refused,), where="here")
    assert str(table.convert(Refused("x"))) == "sqlite error here: Refused: x"


def test_secrets_given_outside_the_url_are_masked_too() -> None:
    """A token from the environment or a password keyword never reaches the URL: the map
    masks it in both kinds of error, however the driver spells it."""
    errors = DriverErrors(
        "astradb", "astradb://h/ks", unavailable=(Down,), failed=(Refused,), secrets=["tok\n1"]
    )
    down = errors.convert(Down("Illegal header value b'tok\\n1'"))
    refused = errors.convert(Refused("bad token tok\n1"))
    assert isinstance(down, BackendUnavailableError)
    assert (
        str(down)
        == "astradb backend unavailable at astradb://h/ks: Down: Illegal header value b'***'"
    )
    assert str(refused) == "astradb error at astradb://h/ks: Refused: bad token ***"


def test_other_errors_pass_through_and_the_map_is_reusable() -> None:
    errors = DriverErrors("redis", URL, unavailable=(Down,))
    with pytest.raises(KeyError), errors:
        raise KeyError("mine")
    with errors:
        pass

    async def main() -> None:
        with pytest.raises(BackendUnavailableError):
            async with errors:
                raise Down()

    asyncio.run(main())


# One client per event loop


class Client:
    def __init__(self, log: list[str], n: int) -> None:
        self.log = log
        self.n = n

    async def aclose(self) -> None:
        asyncio.get_running_loop()  # closed in a loop: its own
        self.log.append(f"closed {self.n}")


class Clients:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.made = 0
        self.loops: dict[int, asyncio.AbstractEventLoop] = {}

    def make(self) -> Client:
        self.made += 1
        self.loops[self.made] = asyncio.get_running_loop()
        return Client(self.log, self.made)

    async def aclose(self, client: Client) -> None:
        assert asyncio.get_running_loop() is self.loops[client.n]
        await client.aclose()

    def forget(self, client: Client) -> None:
        self.log.append(f"forgot {client.n}")

    def per_loop(self) -> PerLoop[Client]:
        return PerLoop(self.make, self.aclose, self.forget)


def test_one_client_per_loop_closed_when_its_loop_shuts_down() -> None:
    clients = Clients()
    per_loop = clients.per_loop()

    async def use() -> int:
        first = await per_loop.get()
        assert await per_loop.get() is first  # the same loop: the same client
        return first.n

    assert asyncio.run(use()) == 1
    assert clients.log == ["closed 1"]  # asyncio.run shut its loop down: closed in it
    assert len(per_loop) == 0
    assert asyncio.run(use()) == 2  # a new loop, a new client
    assert clients.log == ["closed 1", "closed 2"]


def test_concurrent_loops_get_their_own_clients() -> None:
    clients = Clients()
    per_loop = clients.per_loop()
    got: list[int] = []
    ready = threading.Barrier(2)

    async def use() -> None:
        client = await per_loop.get()
        await asyncio.to_thread(ready.wait)  # both loops hold their client at once
        got.append(client.n)

    threads = [threading.Thread(target=asyncio.run, args=(use(),)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(got) == [1, 2]
    assert sorted(clients.log) == ["closed 1", "closed 2"]


def test_close_runs_an_idle_loop_to_close_its_client() -> None:
    clients = Clients()
    per_loop = clients.per_loop()
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(per_loop.get())
        per_loop.close()  # from sync code, while the loop is idle
        assert clients.log == ["closed 1"]
        assert len(per_loop) == 0
    finally:
        loop.close()


def test_a_client_of_a_closed_loop_is_forgotten() -> None:
    clients = Clients()
    per_loop = clients.per_loop()
    loop = asyncio.new_event_loop()
    loop.run_until_complete(per_loop.get())
    loop.close()  # without shutting down its async generators
    assert asyncio.run(per_loop.get()).n == 2  # and a new loop drops the stale one
    assert clients.log == ["forgot 1", "closed 2"]
    loop = asyncio.new_event_loop()
    loop.run_until_complete(per_loop.get())
    loop.close()
    per_loop.close()
    assert clients.log[-1] == "forgot 3"


def test_aclose_all_awaits_the_running_loops_client() -> None:
    clients = Clients()
    per_loop = clients.per_loop()

    async def main() -> None:
        await per_loop.get()
        await per_loop.aclose_all()
        assert clients.log == ["closed 1"]
        assert (await per_loop.get()).n == 2  # usable again afterwards

    asyncio.run(main())
    assert clients.log == ["closed 1", "closed 2"]


def test_forget_all_does_no_io() -> None:
    clients = Clients()
    per_loop = clients.per_loop()
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(per_loop.get())
        per_loop.forget_all()
        assert clients.log == ["forgot 1"]
        loop.run_until_complete(loop.shutdown_asyncgens())  # nothing left to close
        assert clients.log == ["forgot 1"]
    finally:
        loop.close()


# Programs


def _doubling(items: list[int]) -> Any:
    """A program: asks for each item's double, recovers from a refused request."""
    total = 0
    for item in items:
        try:
            total += yield ("double", item)
        except ValueError:
            total -= 1000
    return total


def _perform(request: tuple[str, int]) -> Outcome:
    _, item = request
    if item < 0:
        return None, ValueError("negative")
    return item * 2, None


async def _aperform(request: tuple[str, int]) -> Outcome:
    await asyncio.sleep(0)
    return _perform(request)


def test_drive_and_adrive_run_the_same_program() -> None:
    assert drive(_doubling([1, 2, 3]), _perform) == 12
    assert asyncio.run(adrive(_doubling([1, 2, 3]), _aperform)) == 12
    # An error a request raised is thrown into the program where it yielded.
    assert drive(_doubling([1, -1]), _perform) == 2 - 1000
    assert asyncio.run(adrive(_doubling([1, -1]), _aperform)) == 2 - 1000


def test_an_error_the_program_does_not_handle_propagates() -> None:
    def program() -> Any:
        yield ("double", -1)
        return 0

    with pytest.raises(ValueError, match="negative"):
        drive(program(), _perform)


def test_advance_steps_by_hand() -> None:
    program = _doubling([5])
    assert advance(program) == ("double", 5)
    done = advance(program, 10)
    assert isinstance(done, Done)
    assert done.value == 10


def test_merge_common_options_keywords_win() -> None:
    merged = toolkit.merge_common_options(
        "x://h/db?namespace=a&ttl=5&timeout=2&other=1", namespace=None, ttl=9.0, timeout=None
    )
    assert merged == ("x://h/db?other=1", "a", 9.0, 2.0)
    assert toolkit.merge_common_options("x://h", namespace="n", ttl=None, timeout=None) == (
        "x://h",
        "n",
        None,
        None,
    )
