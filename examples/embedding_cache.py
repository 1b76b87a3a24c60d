"""Cache embedding vectors in a LocalFileStore and show hits and misses.

Run: python examples/embedding_cache.py [DIRECTORY]

The "embedding model" here is a deterministic stand-in (a hash of the text spread over 8
floats), so the example runs anywhere; swap in a real model's `embed` to use it for real.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
import time

from kvstores import BaseStore, LocalFileStore
from kvstores.encoding import float32_vector_store

calls = 0


def embed(texts: list[str]) -> list[list[float]]:
    """A stand-in embedding model that counts how often it is called."""
    global calls
    calls += len(texts)
    time.sleep(0.01 * len(texts))  # a real model is slow: that is why we cache
    return [[b / 255 for b in hashlib.sha256(t.encode()).digest()[:8]] for t in texts]


def cached_embed(store: BaseStore[str, list[float]], texts: list[str]) -> list[list[float]]:
    """Look every text up in one batch, embed each missing text once, store them in one batch."""
    keys = ["stand-in-model/" + hashlib.sha256(t.encode()).hexdigest() for t in texts]
    cached = store.mget(keys)
    missing = list(dict.fromkeys(t for t, v in zip(texts, cached, strict=True) if v is None))
    print(f"  {len(texts) - sum(v is None for v in cached)} hits, {len(missing)} texts to embed")
    fresh = dict(zip(missing, embed(missing), strict=True)) if missing else {}
    store.mset([(k, fresh[t]) for k, t in zip(keys, texts, strict=True) if t in fresh])
    return [v if v is not None else fresh[t] for v, t in zip(cached, texts, strict=True)]


def main() -> None:
    directory = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="kvstores-example-")
    store = float32_vector_store(LocalFileStore(directory, namespace="embeddings"))
    print(f"vectors cached under {directory}")
    print("first call:")
    cached_embed(store, ["the cat sat", "on the mat", "the cat sat"])
    print("second call:")
    cached_embed(store, ["the cat sat", "on the mat", "a new sentence"])
    print(f"the model embedded {calls} texts for 6 requests")
    print(f"cached keys: {len(list(store.yield_keys()))}")


if __name__ == "__main__":
    main()
