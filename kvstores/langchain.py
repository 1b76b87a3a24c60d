"""LangChain helpers (extra ``langchain``): an embedding cache that stores float32 vectors.

Every kvstores store already is a `langchain_core.stores.BaseStore` (see
`kvstores._langchain_hook`), so it can be passed wherever LangChain takes one; this module
only adds what LangChain lacks.
"""

from __future__ import annotations

import hashlib
import importlib
from typing import TYPE_CHECKING, Any

from kvstores._base import BaseStore
from kvstores.encoding import EncoderBackedStore, decode_float32, encode_float32

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings

__all__ = ["float32_cache_backed_embeddings"]


def _cache_backed_embeddings_class() -> Any:
    # LangChain 1.x keeps it in langchain-classic, 0.x in langchain.
    for module in ("langchain_classic.embeddings", "langchain.embeddings"):
        try:
            cls = getattr(importlib.import_module(module), "CacheBackedEmbeddings", None)
        except ImportError:
            continue
        if cls is not None:
            return cls
    raise ImportError(
        "float32_cache_backed_embeddings needs LangChain's CacheBackedEmbeddings: "
        "pip install langchain-classic"
    )


def float32_cache_backed_embeddings(
    underlying_embeddings: Embeddings,
    store: BaseStore[str, bytes],
    *,
    namespace: str = "",
    batch_size: int | None = None,
    cache_queries: bool = False,
) -> Any:
    """A LangChain `CacheBackedEmbeddings` whose vectors are float32 bytes in `store`.

    Like ``CacheBackedEmbeddings.from_bytes_store(..., key_encoder="sha256")`` — keys are
    ``namespace + sha256(text)`` — but each vector takes 4 bytes a number instead of about
    18 as a JSON list. Use the model name as `namespace` so models never share vectors.
    `cache_queries=True` caches `embed_query` too (same store and keys).
    """
    cls = _cache_backed_embeddings_class()

    def key(text: str) -> str:
        return namespace + hashlib.sha256(text.encode()).hexdigest()

    vectors: EncoderBackedStore[str, list[float]] = EncoderBackedStore(
        store, key, encode_float32, decode_float32
    )
    return cls(
        underlying_embeddings,
        vectors,
        batch_size=batch_size,
        query_embedding_store=vectors if cache_queries else None,
    )
