"""LangChain's standard store suites and a real CacheBackedEmbeddings on every server backend."""

from __future__ import annotations

import pytest

pytest.importorskip("langchain_core")

from langchain_core.embeddings import Embeddings
from langchain_core.stores import BaseStore as LangChainBaseStore
from langchain_tests.integration_tests import BaseStoreAsyncTests, BaseStoreSyncTests

from kvstores import ByteStore


class TestLangChainStandardSync(BaseStoreSyncTests[bytes]):
    @pytest.fixture
    def kv_store(self, byte_store: ByteStore) -> ByteStore:
        return byte_store

    @pytest.fixture
    def three_values(self) -> tuple[bytes, bytes, bytes]:
        return b"foo", b"bar", b"buzz"


class TestLangChainStandardAsync(BaseStoreAsyncTests[bytes]):
    @pytest.fixture
    async def kv_store(self, byte_store: ByteStore) -> ByteStore:
        return byte_store

    @pytest.fixture
    def three_values(self) -> tuple[bytes, bytes, bytes]:
        return b"foo", b"bar", b"buzz"


class CountingEmbeddings(Embeddings):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.seen += texts
        return [[float(len(t)), 0.25, -0.5] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


async def test_cache_backed_embeddings_on_the_server(byte_store: ByteStore) -> None:
    from langchain_classic.embeddings import CacheBackedEmbeddings

    assert isinstance(byte_store, LangChainBaseStore)
    model = CountingEmbeddings()
    cached = CacheBackedEmbeddings.from_bytes_store(
        model, byte_store, namespace="model-x:v1/", key_encoder="sha256"
    )
    first = cached.embed_documents(["a", "bb"])
    again = await cached.aembed_documents(["bb", "ccc", "a"])
    assert model.seen == ["a", "bb", "ccc"]
    assert again[0] == first[1]
    assert again[2] == first[0]
    assert len(list(byte_store.yield_keys(prefix="model-x:v1/"))) == 3
