"""`kvstores.langgraph.LangGraphStore` on the memory, file and SQLite byte stores: the
LangGraph kit (`kvstores.testing.langgraph_kit`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("langgraph.store.base")

from kvstores import ByteStore
from kvstores.file import LocalFileStore
from kvstores.memory import InMemoryByteStore
from kvstores.sql import SQLByteStore
from kvstores.testing.langgraph_kit import LangGraphStoreTests


@pytest.fixture(params=["memory", "file", "sqlite"])
def byte_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ByteStore]:
    store: ByteStore
    if request.param == "memory":
        store = InMemoryByteStore()
    elif request.param == "file":
        store = LocalFileStore(tmp_path / "files")
    else:
        store = SQLByteStore.from_url(f"sqlite:///{tmp_path / 'lg.db'}")
    yield store
    store.close()


class TestLangGraphStore(LangGraphStoreTests):
    pass
