"""kvstores: one small, batch-first key-value interface over the databases you already run.

`BaseStore` / `ByteStore` is the interface, `from_url` builds a store from a URL, and each
backend lives in its own module behind its own pip extra (`kvstores.redis`, `kvstores.sql`,
…). Importing this package imports no driver.
"""

from __future__ import annotations

from kvstores import _langchain_hook
from kvstores._base import BackendStore, BaseStore, ByteStore
from kvstores._registry import from_url, known_schemes
from kvstores.encoding import EncoderBackedStore
from kvstores.errors import (
    BackendUnavailableError,
    InvalidKeyError,
    InvalidValueError,
    KVStoreError,
)
from kvstores.file import LocalFileStore
from kvstores.memory import InMemoryByteStore, InMemoryStore

__all__ = [
    "BackendStore",
    "BackendUnavailableError",
    "BaseStore",
    "ByteStore",
    "EncoderBackedStore",
    "InMemoryByteStore",
    "InMemoryStore",
    "InvalidKeyError",
    "InvalidValueError",
    "KVStoreError",
    "LocalFileStore",
    "from_url",
    "known_schemes",
]

__version__ = "0.1.0"

_langchain_hook.install()
