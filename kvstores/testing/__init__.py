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
The kit closes the stores it made. `make_state_machine` builds a Hypothesis state machine
that compares a store with a dict; `run_in_threads` runs calls at once in threads and
re-raises what they raised.
"""

from kvstores._registry import require

require("pytest", "testing")  # the kit is pytest classes and a Hypothesis machine
require("hypothesis", "testing")

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
