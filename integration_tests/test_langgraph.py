"""`kvstores.langgraph.LangGraphStore` on every server backend: the LangGraph kit
(`kvstores.testing.langgraph_kit`) on a fresh namespace of each server's byte store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from integration_tests.conftest import server_url
from integration_tests.test_langchain import SERVERS

pytest.importorskip("langgraph.store.base")

import kvstores
from kvstores import ByteStore
from kvstores.testing.langgraph_kit import LangGraphStoreTests


@pytest.fixture(params=sorted(SERVERS))
def byte_store(request: pytest.FixtureRequest) -> Iterator[ByteStore]:
    store = kvstores.from_url(server_url(SERVERS[request.param]), namespace=uuid.uuid4().hex)
    yield store
    store.mdelete(list(store.yield_keys()))
    store.close()


class TestLangGraphStoreOnServers(LangGraphStoreTests):
    random_ops = 150
