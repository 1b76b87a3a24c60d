"""LangChain drop-in: every store is a `langchain_core.stores.BaseStore`, passes LangChain's
standard store suites, and works inside `CacheBackedEmbeddings` and `ParentDocumentRetriever`."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("langchain_core")  # the extra "langchain"; nox installs it

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.stores import BaseStore as LangChainBaseStore
from langchain_tests.integration_tests import BaseStoreAsyncTests, BaseStoreSyncTests

import kvstores
from kvstores import ByteStore, InMemoryByteStore, LocalFileStore
from kvstores.encoding import decode_document, document_store, encode_document
from kvstores.langchain import float32_cache_backed_embeddings

THREE = (b"foo", b"bar", b"buzz")


@pytest.fixture(params=["memory", "file", "sqlite"])
def byte_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ByteStore]:
    if request.param == "memory":
        store: ByteStore = InMemoryByteStore()
    elif request.param == "file":
        store = LocalFileStore(tmp_path / "files")
    else:
        store = kvstores.from_url(f"sqlite:///{tmp_path / 'lc.db'}")
    yield store
    store.close()


class TestLangChainStandardSync(BaseStoreSyncTests[bytes]):
    @pytest.fixture
    def kv_store(self, byte_store: ByteStore) -> ByteStore:
        return byte_store

    @pytest.fixture
    def three_values(self) -> tuple[bytes, bytes, bytes]:
        return THREE


class TestLangChainStandardAsync(BaseStoreAsyncTests[bytes]):
    @pytest.fixture
    async def kv_store(self, byte_store: ByteStore) -> ByteStore:
        return byte_store

    @pytest.fixture
    def three_values(self) -> tuple[bytes, bytes, bytes]:
        return THREE


@pytest.mark.parametrize(
    "first", ["import kvstores", "import langchain_core.stores", "import langchain_core"]
)
def test_drop_in_whichever_is_imported_first(first: str) -> None:
    code = textwrap.dedent(
        f"""
        {first}
        import kvstores
        from langchain_core.stores import BaseStore
        from kvstores.encoding import json_store
        stores = [kvstores.from_url("memory://"), kvstores.LocalFileStore("/tmp/kv-lc"),
                  json_store(kvstores.InMemoryByteStore())]
        print(all(isinstance(s, BaseStore) for s in stores))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_import_kvstores_does_not_import_langchain() -> None:
    code = "import sys, kvstores; print('langchain_core' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_what_langchain_sends(byte_store: ByteStore) -> None:
    key = "model-x:v1/" + hashlib.sha256(b"text").hexdigest()
    assert isinstance(byte_store, LangChainBaseStore)
    assert byte_store.mget([]) == []
    byte_store.mset([(key, b"1"), ("a b/ü:*?", b"2"), (key, b"3")])  # repeated texts
    byte_store.mset([("query", b"q")])  # one-item batch
    assert byte_store.mget([key, "a b/ü:*?", "query"]) == [b"3", b"2", b"q"]


class CountingEmbeddings(Embeddings):
    """A deterministic model that records every text it embeds."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.seen += texts
        return [[len(t) / 8, 0.5, -1.0, float(sum(map(ord, t)) % 97)] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def _cache_builders() -> list[Callable[[CountingEmbeddings, ByteStore], Embeddings]]:
    from langchain_classic.embeddings import CacheBackedEmbeddings

    def langchain_json(model: CountingEmbeddings, store: ByteStore) -> Embeddings:
        return CacheBackedEmbeddings.from_bytes_store(
            model, store, namespace="model-x:", key_encoder="sha256"
        )

    def kvstores_float32(model: CountingEmbeddings, store: ByteStore) -> Embeddings:
        return float32_cache_backed_embeddings(model, store, namespace="model-x:")  # type: ignore[no-any-return]

    return [langchain_json, kvstores_float32]


@pytest.mark.parametrize("build", _cache_builders(), ids=["from_bytes_store", "float32"])
def test_cache_backed_embeddings_embeds_each_text_once(
    byte_store: ByteStore, build: Callable[[CountingEmbeddings, ByteStore], Embeddings]
) -> None:
    model = CountingEmbeddings()
    cached = build(model, byte_store)
    # LangChain embeds a text repeated within one call as often as it appears; what the store
    # must give is that a text seen by an earlier call is never embedded again.
    first = cached.embed_documents(["alpha", "beta"])
    assert model.seen == ["alpha", "beta"]
    second = cached.embed_documents(["beta", "gamma", "alpha", "gamma"])
    assert sorted(set(model.seen[2:])) == ["gamma"]
    assert second[0] == first[1]
    assert second[2] == first[0]
    assert second[1] == second[3]

    async def run() -> list[list[float]]:
        return await cached.aembed_documents(["gamma", "delta", "alpha"])

    seen_before = len(model.seen)
    asynced = asyncio.run(run())
    assert model.seen[seen_before:] == ["delta"]
    assert asynced[0] == second[1]
    assert len(list(byte_store.yield_keys(prefix="model-x:"))) == 4


def test_float32_vectors_are_smaller_than_langchain_json(tmp_path: Path) -> None:
    from langchain_classic.embeddings import CacheBackedEmbeddings

    class Wide(CountingEmbeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [[(i * 0.7311 + len(t)) % 1.0 - 0.5 for i in range(1536)] for t in texts]

    json_store, f32_store = InMemoryByteStore(), InMemoryByteStore()
    CacheBackedEmbeddings.from_bytes_store(
        Wide(), json_store, key_encoder="sha256"
    ).embed_documents(["x"])
    float32_cache_backed_embeddings(Wide(), f32_store).embed_documents(["x"])
    (json_bytes,) = [v for v in json_store.mget(list(json_store.yield_keys())) if v]
    (f32_bytes,) = [v for v in f32_store.mget(list(f32_store.yield_keys())) if v]
    assert len(f32_bytes) == 4 * 1536
    assert len(json_bytes) / len(f32_bytes) > 4


def test_parent_document_retriever_returns_parents(byte_store: ByteStore) -> None:
    from langchain_classic.retrievers import ParentDocumentRetriever
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from langchain_core.vectorstores import InMemoryVectorStore
    from langchain_text_splitters import CharacterTextSplitter

    retriever = ParentDocumentRetriever(
        vectorstore=InMemoryVectorStore(DeterministicFakeEmbedding(size=16)),
        byte_store=byte_store,
        child_splitter=CharacterTextSplitter(separator=" ", chunk_size=12, chunk_overlap=0),
    )
    parents = [
        Document(page_content="cats purr softly and sleep all day", metadata={"n": 1}),
        Document(page_content="rockets need fuel to reach orbit", metadata={"n": 2}),
    ]
    retriever.add_documents(parents, ids=["cats", "rockets"])
    assert sorted(byte_store.yield_keys()) == ["cats", "rockets"]
    found = retriever.invoke("cats purr softly")
    assert found
    assert {d.page_content for d in found} <= {p.page_content for p in parents}
    assert all(d.metadata["n"] in (1, 2) for d in found)


def test_multi_vector_retriever_takes_a_document_store(byte_store: ByteStore) -> None:
    from langchain_classic.retrievers import MultiVectorRetriever
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from langchain_core.vectorstores import InMemoryVectorStore

    docstore = document_store(byte_store)
    vectorstore = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    retriever = MultiVectorRetriever(vectorstore=vectorstore, docstore=docstore, id_key="doc_id")
    docstore.mset([("d1", Document(page_content="the full parent", metadata={"k": [1, 2]}))])
    vectorstore.add_documents([Document(page_content="summary", metadata={"doc_id": "d1"})])
    (found,) = retriever.invoke("summary")
    assert found.page_content == "the full parent"
    assert found.metadata == {"k": [1, 2]}


def test_document_codec_round_trips() -> None:
    doc = Document(page_content="héllo", metadata={"a": [1, 2.5, None], "b": {"c": "d"}}, id="x1")
    again = decode_document(encode_document(doc))
    assert (again.page_content, again.metadata, again.id) == (doc.page_content, doc.metadata, "x1")
    assert json.loads(encode_document(doc))["id"] == "x1"


@pytest.mark.parametrize(
    "metadata", [{"when": object()}, {"t": (1, 2)}, {1: "int key"}, {"nan": float("nan")}]
)
def test_unstorable_metadata_is_refused_at_write_time(metadata: dict[object, object]) -> None:
    inner = InMemoryByteStore()
    store = document_store(inner)
    with pytest.raises(TypeError, match="metadata"):
        store.mset(
            [("ok", Document(page_content="fine")), ("bad", Document("x", metadata=metadata))]
        )
    assert list(inner.yield_keys()) == []


def test_missing_langchain_classic_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """`kvstores[langchain]` brings langchain-core only: the message names the package that
    holds CacheBackedEmbeddings, not the extra that is already installed."""
    monkeypatch.setitem(sys.modules, "langchain_classic.embeddings", None)
    monkeypatch.setitem(sys.modules, "langchain.embeddings", None)
    with pytest.raises(ImportError, match="pip install langchain-classic"):
        float32_cache_backed_embeddings(CountingEmbeddings(), InMemoryByteStore())


def test_missing_langchain_core_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode_document(Document(page_content="x"))
    monkeypatch.setitem(sys.modules, "langchain_core.documents", None)
    with pytest.raises(ImportError, match=r'pip install "kvstores\[langchain\]"'):
        decode_document(data)
