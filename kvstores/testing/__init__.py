"""The kvstores conformance kit: pytest classes that check SPEC §2 against any byte store.

A backend's test file supplies a ``make_store`` fixture and subclasses the kit::

    import pytest
    from kvstores.testing import AsyncByteStoreTests, ByteStoreTests, StoreFactory

    @pytest.fixture
    def make_store(tmp_path) -> StoreFactory:
        def make(namespace=None, ttl=None):
            return LocalFileStore(tmp_path, namespace=namespace, ttl=ttl)
        return make

    class TestLocalFileStore(ByteStoreTests): ...
    class TestLocalFileStoreAsync(AsyncByteStoreTests): ...

``make_store(namespace=..., ttl=...)`` must return a new store on the same underlying data
each time it is called within one test, and that data must start empty for every test.
The kit closes the stores it made.

Raw storage hooks: a store that writes every key under a wrong name, and reads it back the
same wrong way, passes every test that only asks the store. A test class may therefore give
methods that reach the backend's storage without the store, under the layout the backend
documents (plain file I/O, a raw SQL connection, a raw client)::

    class TestLocalFileStore(ByteStoreTests):  # documented_path: the file the docs name
        def raw_get(self, store, key):  # -> bytes | None, any expiry ignored
            path = documented_path(store.root, store.namespace, key)
            return path.read_bytes()[1:] if path.exists() else None  # after a 1-byte header

        def raw_set(self, store, key, value):  # no expiry; replaces any entry
            documented_path(store.root, store.namespace, key).write_bytes(b"\0" + value)

        def raw_delete(self, store, key):  # optional
            documented_path(store.root, store.namespace, key).unlink(missing_ok=True)

The kit then checks that values the store writes (ordinary, awkward and long keys, with and
without a namespace, with a ttl) are what the storage holds and that its deletes reach it,
and that entries written raw are read by `mget`, listed by `yield_keys` (with and without a
prefix) and removed by `mdelete`, in their own namespace only. Before writing raw, the kit
writes and deletes a key through the store, so whatever it creates on first use (a table, a
directory) exists. A hook may keep what it needs on the test instance from an autouse
fixture of the class (an engine, a root, a client). Without the hooks, those tests skip
with the reason.

`make_state_machine` builds a Hypothesis state machine that compares a store with a dict;
`run_in_threads` runs calls at once in threads and re-raises what they raised.
"""

from kvstores._registry import require

require("pytest", "testing")  # the kit is pytest classes and a Hypothesis machine
require("hypothesis", "testing")

import pytest  # noqa: E402

# The kit's asserts show what differed, as a test module's do.
pytest.register_assert_rewrite("kvstores.testing.conformance", "kvstores.testing.stateful")

from kvstores.testing.conformance import (  # noqa: E402 - after the import guard
    AsyncByteStoreTests,
    ByteStoreTests,
    StoreFactory,
    run_in_threads,
)
from kvstores.testing.stateful import make_state_machine  # noqa: E402

__all__ = [
    "AsyncByteStoreTests",
    "ByteStoreTests",
    "StoreFactory",
    "make_state_machine",
    "run_in_threads",
]
