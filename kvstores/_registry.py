"""`from_url`: a table of URL schemes, imported lazily, plus third-party entry points."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from kvstores._base import ByteStore
from kvstores._urls import mask_url, split_common_options

__all__ = ["ENTRY_POINT_GROUP", "from_url", "known_schemes", "require"]

ENTRY_POINT_GROUP = "kvstores.backends"

# scheme -> "module:Class"; the module is imported only when its scheme is used.
_SCHEMES: dict[str, str] = {
    "memory": "kvstores.memory:InMemoryByteStore",
    "file": "kvstores.file:LocalFileStore",
    "redis": "kvstores.redis:RedisByteStore",
    "rediss": "kvstores.redis:RedisByteStore",
    "unix": "kvstores.redis:RedisByteStore",
    "redis+cluster": "kvstores.redis:RedisByteStore",
    "rediss+cluster": "kvstores.redis:RedisByteStore",
}
_SQL = "kvstores.sql:SQLByteStore"
# SQLAlchemy dialects: "dialect" or "dialect+driver" goes to the SQL backend.
_SQL_DIALECTS = frozenset(
    {"sqlite", "postgresql", "postgres", "mysql", "mariadb", "oracle", "mssql"}
)


def require(module: str, extra: str) -> ModuleType:
    """Import an optional driver, or raise `ImportError` saying which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f'this kvstores backend needs {module!r}: pip install "kvstores[{extra}]"'
        ) from exc


def _plugins() -> dict[str, Any]:
    from importlib.metadata import entry_points  # 15-20 ms: only when a plugin may be needed

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_schemes() -> list[str]:
    """Every scheme `from_url` accepts: the built-in ones and those of installed plugins."""
    return sorted(set(_SCHEMES) | _SQL_DIALECTS | set(_plugins()))


def _resolve(scheme: str) -> Any:
    target = _SCHEMES.get(scheme)
    if target is None and scheme.partition("+")[0] in _SQL_DIALECTS:
        target = _SQL
    if target is not None:
        module, _, name = target.partition(":")
        return getattr(importlib.import_module(module), name)
    plugin = _plugins().get(scheme)
    if plugin is not None:
        return plugin.load()
    if _is_sqlalchemy_dialect(scheme):
        return _resolve("sqlite")  # any other SQLAlchemy URL: the SQL backend
    raise ValueError(
        f"unknown kvstores URL scheme {scheme!r}; known schemes: {', '.join(known_schemes())}"
    )


def _is_sqlalchemy_dialect(scheme: str) -> bool:
    """Whether an installed SQLAlchemy knows the dialect (third-party dialects included)."""
    try:
        from sqlalchemy.dialects import registry
    except ImportError:
        return False
    try:
        registry.load(scheme.replace("+", "."))
    except Exception:  # noqa: BLE001 - any failure means "not a dialect"
        return False
    return True


def from_url(url: str, **kwargs: Any) -> ByteStore:
    """Build the byte store a URL names, e.g. ``redis://host:6379/0?namespace=emb&ttl=3600``.

    ``namespace``, ``ttl`` and ``timeout`` in the query work for every scheme (``timeout``
    matters to networked ones only); keyword arguments override the query. The returned
    store owns its connection and closes it in `close()`.

    Raises:
        ValueError: the scheme is unknown (the message lists the known ones), or the URL
            is malformed.
        ImportError: the backend's driver is missing (the message names the extra to install).
    """
    if not isinstance(url, str):
        raise TypeError(f"url must be str, not {type(url).__name__}")
    scheme = urlsplit(url).scheme.lower()
    if not scheme or "://" not in url:
        raise ValueError(f"not a store URL (expected scheme://…): {mask_url(url)!r}")
    store_class = _resolve(scheme)
    rest, options = split_common_options(url)
    options.update(kwargs)
    factory = getattr(store_class, "from_url", store_class)
    store: ByteStore = factory(rest, **options)
    return store
