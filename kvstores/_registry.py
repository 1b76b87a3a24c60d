"""`from_url`: a table of URL schemes, imported lazily, plus third-party entry points."""

from __future__ import annotations

import importlib
import re
from types import ModuleType
from typing import Any

from kvstores._base import ByteStore
from kvstores._urls import mask_url, split_common_options
from kvstores.errors import ConfigurationError

__all__ = ["ENTRY_POINT_GROUP", "from_url", "known_schemes", "require"]

ENTRY_POINT_GROUP = "kvstores.backends"
_SCHEME = re.compile(r"[a-z][a-z0-9+._-]*")

# scheme -> "module:Class"; the module is imported only when its scheme is used.
_SCHEMES: dict[str, str] = {
    "memory": "kvstores.memory:InMemoryByteStore",
    "file": "kvstores.file:LocalFileStore",
    "redis": "kvstores.redis:RedisByteStore",
    "rediss": "kvstores.redis:RedisByteStore",
    "unix": "kvstores.redis:RedisByteStore",
    "redis+cluster": "kvstores.redis:RedisByteStore",
    "rediss+cluster": "kvstores.redis:RedisByteStore",
    "mongodb": "kvstores.mongodb:MongoDBByteStore",
    "mongodb+srv": "kvstores.mongodb:MongoDBByteStore",
    "cassandra": "kvstores.cassandra:CassandraByteStore",
    "astradb": "kvstores.astradb:AstraDBByteStore",
    "astradb+http": "kvstores.astradb:AstraDBByteStore",
    "astradb+https": "kvstores.astradb:AstraDBByteStore",
}
_SQL = "kvstores.sql:SQLByteStore"
# The SQLAlchemy dialects `SQLByteStore` supports: "dialect" or "dialect+driver".
_SQL_DIALECTS = frozenset({"sqlite", "postgresql", "postgres", "mysql", "mariadb"})


def require(module: str, extra: str | None = None, *, package: str | None = None) -> ModuleType:
    """Import an optional module, or raise `ImportError` saying what installs it: the
    kvstores `extra` (``pip install "kvstores[redis]"``) or, for a module no extra brings,
    the `package` (``pip install aiosqlite``)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        fix = f'pip install "kvstores[{extra}]"' if extra else f"pip install {package or module}"
        raise ImportError(f"kvstores needs {module!r} here: {fix}") from exc


def _plugins() -> dict[str, Any]:
    from importlib.metadata import entry_points  # 15-20 ms: only when a plugin may be needed

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_schemes() -> list[str]:
    """Every scheme `from_url` accepts: the built-in ones and those of installed plugins."""
    return sorted(set(_SCHEMES) | _SQL_DIALECTS | set(_plugins()))


def store_class(scheme: str) -> Any:
    """The class `from_url` builds for a URL scheme (importing its module, so its driver):
    a built-in one, or the one an installed plugin registers under the ``kvstores.backends``
    entry-point group. Raises `ConfigurationError` for an unknown scheme."""
    target = _SCHEMES.get(scheme)
    if target is None and scheme.partition("+")[0] in _SQL_DIALECTS:
        target = _SQL
    if target is not None:
        module, _, name = target.partition(":")
        return getattr(importlib.import_module(module), name)
    plugin = _plugins().get(scheme)
    if plugin is not None:
        return plugin.load()
    raise ConfigurationError(
        f"unknown kvstores URL scheme {scheme!r}; known schemes: {', '.join(known_schemes())}"
    )


def from_url(url: str, **kwargs: Any) -> ByteStore:
    """Build the byte store a URL names, e.g. ``redis://host:6379/0?namespace=emb&ttl=3600``.

    ``namespace``, ``ttl`` and ``timeout`` in the query work for every scheme (``timeout``
    matters to networked ones only); keyword arguments override the query. The returned
    store owns its connection and closes it in `close()`.

    Raises:
        ConfigurationError: (a `ValueError`) the scheme is unknown (the message lists the
            known ones), the URL is malformed, or an option is unknown to the backend.
        ImportError: the backend's driver is missing (the message names the extra to install).
    """
    if not isinstance(url, str):
        raise TypeError(f"url must be str, not {type(url).__name__}")
    # Not urlsplit: it stops a scheme at "_", and SQLAlchemy drivers have them
    # ("postgresql+psycopg_async://").
    scheme, separator, _ = url.partition("://")
    scheme = scheme.lower()
    if not separator or not _SCHEME.fullmatch(scheme):
        raise ConfigurationError(f"not a store URL (expected scheme://…): {mask_url(url)!r}")
    cls = store_class(scheme)
    rest, options = split_common_options(url)
    options.update(kwargs)
    factory = getattr(cls, "from_url", cls)
    store: ByteStore = factory(rest, **options)
    return store
