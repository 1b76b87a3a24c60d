"""A store's URL: the families and drivers it is served by, checked before anything connects."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from kvstores.backend import (
    COMMON_OPTIONS,
    ConfigurationError,
    check_options,
    require,
    split_common_options,
)
from kvstores.sql.dialect import Dialect
from kvstores.sql.mysql import MySQL
from kvstores.sql.postgresql import PostgreSQL
from kvstores.sql.sqlite import SQLite

_FAMILIES: tuple[type[Dialect], ...] = (SQLite, PostgreSQL, MySQL)
#: SQLAlchemy's dialect name -> the family serving it.
DIALECTS = {name: family for family in _FAMILIES for name in family.names}
_ALIASES = {alias: family.names[0] for family in _FAMILIES for alias in family.aliases}
_BY_SYNC_DRIVER = {family.sync_driver: family for family in _FAMILIES}
# Any driver a URL may name -> the sync driver with the same SQL and parameters.
_SYNC_OF = {driver: sync for family in _FAMILIES for driver, sync in family.sync_of.items()}
_MODULE_OF = {driver: module for family in _FAMILIES for driver, module in family.modules.items()}

# URL query parameters. Besides the store's own (``table`` and the options every kvstores
# URL takes), a URL may carry what its driver takes; any other name is refused when the
# store is built, so that a typo (``namespce=a``) is an error rather than a parameter the
# driver ignores or refuses only at the first call.
_STORE_QUERY = frozenset({"table", *COMMON_OPTIONS})
# SQLAlchemy's `create_engine` takes engine plugins from any URL (``plugin=name``).
_SQLALCHEMY_QUERY = frozenset({"plugin"})


def dialect_class(name: str) -> type[Dialect]:
    """The family of SQLAlchemy's dialect `name`."""
    family = DIALECTS.get(name)
    if family is None:
        raise ConfigurationError(
            f"SQLByteStore supports SQLite, PostgreSQL and MySQL/MariaDB, not {name!r}"
        )
    return family


def split_url(raw: str | URL) -> tuple[URL, dict[str, Any]]:
    """The URL, its driver named, without ``namespace``, ``ttl`` and ``timeout``, and
    those parsed."""
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError) as exc:
        raise ConfigurationError(f"not an SQLAlchemy URL: {exc}") from None
    options: dict[str, Any] = {}
    if any(name in url.query for name in COMMON_OPTIONS):
        pairs = [
            (name, value)
            for name, values in url.query.items()
            for value in ((values,) if isinstance(values, str) else values)
        ]
        options = split_common_options("?" + urlencode(pairs))[1]
        url = url.difference_update_query(options)
    backend, _, driver = url.drivername.partition("+")
    backend = _ALIASES.get(backend, backend)
    family = DIALECTS.get(backend)
    if not driver and family is not None and family.default_driver is not None:
        driver = family.default_driver
    drivername = f"{backend}+{driver}" if driver else url.drivername
    return url.set(drivername=drivername), options


def check_url(url: URL) -> URL:
    """Check a URL before anything connects: its dialect, its driver (imported, or an
    `ImportError` saying what installs it) and its query. A URL naming an async driver
    (``sqlite+aiosqlite://``, ``postgresql+psycopg_async://``, ``mysql+aiomysql://``, …)
    needs that driver installed, as SQLAlchemy would; the store's sync engine uses the
    matching sync driver, its async calls the async driver it drives for the dialect
    (psycopg, aiomysql; SQLite: a worker thread). Returns the URL of the sync engine."""
    backend, _, driver = url.drivername.partition("+")
    dialect_class(backend)
    if driver in _SYNC_OF and driver not in _BY_SYNC_DRIVER:
        module, extra, package = _MODULE_OF[driver]
        require(module, extra, package=package)
        url = url.set(drivername=f"{backend}+{_SYNC_OF[driver]}")
    try:
        driver = url.get_driver_name()
    except Exception as exc:  # SQLAlchemy knows no such dialect or driver
        raise ConfigurationError(f"not a driver SQLAlchemy knows: {url.drivername!r}") from exc
    if driver not in _BY_SYNC_DRIVER:
        raise ConfigurationError(
            f"SQLByteStore needs the pysqlite, psycopg or pymysql driver, not {driver!r}"
        )
    if driver in _MODULE_OF:
        module, extra, package = _MODULE_OF[driver]
        require(module, extra, package=package)
    _check_query(url, _BY_SYNC_DRIVER[driver])
    return url


def _check_query(url: URL, family: type[Dialect]) -> None:
    """Refuse query parameters neither the store nor the URL's driver (`family`'s sync
    driver) takes."""
    given = list(url.query)
    if not given:
        return
    known = family.query_parameters()
    family.check_query(url, given)
    check_options(url.drivername, given, _STORE_QUERY | _SQLALCHEMY_QUERY | known)


def sync_url(url: URL) -> URL:
    """The URL of the sync engine serving a given `AsyncEngine` of `url`."""
    backend, _, driver = url.drivername.partition("+")
    sync = _SYNC_OF.get(driver)
    if sync is None:
        raise ConfigurationError(f"no sync driver known for the async driver {driver!r}")
    family = DIALECTS.get(backend)
    if family is not None:
        family.check_async_engine_url(url)
    return url.set(drivername=f"{backend}+{sync}")
