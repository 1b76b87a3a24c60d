"""URLs, options, clients and errors of the MongoDB stores: everything that touches pymongo's
configuration, so that `kvstores.mongodb.store` only sends operations."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from typing import Any, NamedTuple, TypeAlias
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from kvstores.backend import (
    COMMON_OPTIONS,
    BackendUnavailableError,
    ConfigurationError,
    DriverErrors,
    KVStoreError,
    NameRule,
    check_name,
    check_options,
    error_reason,
    mask_secrets,
    mask_url,
    require,
    secret_values,
)

require("pymongo", "mongodb")

import pymongo.common  # noqa: E402
from bson.codec_options import CodecOptions  # noqa: E402
from bson.errors import BSONError  # noqa: E402
from pymongo import AsyncMongoClient, MongoClient, ReplaceOne  # noqa: E402
from pymongo.asynchronous.collection import AsyncCollection  # noqa: E402
from pymongo.errors import (  # noqa: E402
    BulkWriteError,
    ConnectionFailure,
    CursorNotFound,
    OperationFailure,
    PyMongoError,
)
from pymongo.errors import ConfigurationError as PyMongoConfigurationError  # noqa: E402
from pymongo.synchronous.collection import Collection  # noqa: E402

PyMongoCollection = Collection

__all__ = [
    "DEFAULT_COLLECTION",
    "DEFAULT_DATABASE",
    "AsyncCollection",
    "AsyncMongoClient",
    "CursorNotFound",
    "MongoClient",
    "OperationFailure",
    "PyMongoCollection",
    "ReplaceOne",
    "SyncCollection",
    "Target",
    "check_names",
    "client_options",
    "errors_for",
    "parse_url",
]

SyncCollection: TypeAlias = "Collection[dict[str, Any]]"
AsyncColl: TypeAlias = "AsyncCollection[dict[str, Any]]"
Target: TypeAlias = (
    "str | MongoClient[Any] | AsyncMongoClient[Any] | Collection[Any] | AsyncCollection[Any]"
)

DEFAULT_DATABASE = "kvstores"
DEFAULT_COLLECTION = "kvstores"
SCHEMES = ("mongodb", "mongodb+srv")
#: How the stores decode documents, whatever the client's own codec options: plain dicts.
CODEC_OPTIONS: CodecOptions[dict[str, Any]] = CodecOptions(document_class=dict)
#: Options of kvstores' own, besides namespace/ttl/timeout.
STORE_OPTIONS = ("collection", "database")
#: The pymongo options `timeout` sets, in milliseconds, unless given.
TIMEOUT_OPTIONS = ("serverSelectionTimeoutMS", "connectTimeoutMS", "socketTimeoutMS")


def _pymongo_options() -> frozenset[str]:
    """Every option name pymongo's clients take (URI options and keyword arguments),
    lower case: pymongo matches them case-insensitively."""
    names = getattr(pymongo.common, "VALIDATORS", None) or pymongo.common.URI_OPTIONS_VALIDATOR_MAP
    return frozenset(name.lower() for name in names) | {"host", "port"}


KNOWN = _pymongo_options()


def _check(names: Iterable[str]) -> None:
    """Refuse option names neither kvstores nor pymongo takes (pymongo only warns); the
    message names them as given (pymongo matches its own case-insensitively)."""
    ours = {*STORE_OPTIONS, *COMMON_OPTIONS}
    unknown = [name for name in names if name not in ours and name.lower() not in KNOWN]
    check_options("mongodb", unknown, {*KNOWN, *ours})


class ParsedURL(NamedTuple):
    url: str  #: the URL pymongo gets: kvstores' own parameters taken out
    database: str | None
    collection: str | None


def parse_url(url: str) -> ParsedURL:
    """Split a ``mongodb://`` / ``mongodb+srv://`` URL (its namespace/ttl/timeout already
    taken out) into what pymongo gets, the database of its path and ``collection=``.

    Raises:
        ConfigurationError: another scheme, or an unknown query parameter.
    """
    scheme = url.partition("://")[0].lower()
    if scheme not in SCHEMES or "://" not in url:
        raise ConfigurationError(
            f"not a MongoDB URL (mongodb:// or mongodb+srv://): {mask_url(url)!r}"
        )
    base, _, rest = url.partition("?")
    query, hash_sign, fragment = rest.partition("#")
    pairs = parse_qsl(query, keep_blank_values=True)
    _check(name for name, _ in pairs)
    collection = next((v for n, v in pairs if n == "collection"), None)
    kept = [(n, v) for n, v in pairs if n not in STORE_OPTIONS]
    database = next((v for n, v in pairs if n == "database"), None)
    path = unquote(urlsplit(base).path).lstrip("/")
    kept_query = urlencode(kept, quote_via=quote, safe="/:,")
    driver_url = base + ("?" + kept_query if kept_query else "") + hash_sign + fragment
    # A name given empty (``?collection=``) is refused by `check_names`, not defaulted.
    return ParsedURL(driver_url, (path or None) if database is None else database, collection)


#: MongoDB's rules for database names: none of ``/\\. "$*<>:|?`` (Windows' too: a database
#: is a directory there) nor NUL, under 64 bytes; ``admin``, ``local`` and ``config`` are
#: the server's own (names differing in case only are one database to MongoDB).
DATABASE_NAME = NameRule(
    "mongodb",
    "database",
    re.compile(r'[^/\\. "$*<>:|?\x00]+'),
    'a name without any of /\\. "$*<>:|? or NUL',
    63,
    reserved=frozenset({"admin", "local", "config"}),
    fold_case=True,
)
#: Collection names: no ``$`` nor NUL, no empty part between dots (pymongo refuses a
#: leading, trailing or doubled dot); ``system.`` names are the server's own.
COLLECTION_NAME = NameRule(
    "mongodb",
    "collection",
    re.compile(r"[^$\x00.]+(?:\.[^$\x00.]+)*"),
    "a name without $ or NUL, not starting or ending with a dot, nor with two in a row",
    255,
    reserved_prefixes=("system.",),
)
#: ``<database>.<collection>``, a namespace, is at most 255 bytes (MongoDB 4.4 and later).
MAX_NAMESPACE_BYTES = 255


def check_names(database: str, collection: str) -> tuple[str, str]:
    """A database and a collection name a user gave, checked before anything is sent."""
    check_name(DATABASE_NAME, database)
    check_name(COLLECTION_NAME, collection)
    size = len(f"{database}.{collection}".encode())
    if size > MAX_NAMESPACE_BYTES:
        raise ConfigurationError(
            f"mongodb: {database}.{collection[:40]}… is {size} bytes; MongoDB takes a database "
            f"and collection of {MAX_NAMESPACE_BYTES} bytes at most together"
        )
    return database, collection


def client_options(url: str, timeout: float, options: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of the clients a store builds: `options` (checked), plus the
    timeouts `timeout` sets where neither `options` nor the URL's query sets them."""
    _check(options)
    given = {name.lower() for name in options}
    given |= {name.lower() for name, _ in parse_qsl(url.partition("?")[2])}
    built = dict(options)
    for name in TIMEOUT_OPTIONS:
        if name.lower() not in given:
            built[name] = int(timeout * 1000)
    return built


def build_client(cls: type[Any], url: str, options: dict[str, Any]) -> Any:
    """``cls(url, **options)``: a MongoClient (not yet connected) or an AsyncMongoClient.

    Raises:
        ConfigurationError: pymongo refuses an option or the URL, or warns about a URL
            option's value (pymongo ignores such a value, with a warning only).
    """
    secrets = secret_values(options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            client = cls(url, connect=False, **options)
        except (PyMongoConfigurationError, ValueError, TypeError) as exc:
            reason = mask_secrets(error_reason(exc), url, secrets)
            raise ConfigurationError(f"mongodb: {mask_url(url)}: {reason}") from exc
    refused = [w for w in caught if w.category is UserWarning and "pymongo" in w.filename]
    if refused:
        reason = mask_secrets(str(refused[0].message), url, secrets)
        raise ConfigurationError(f"mongodb: {mask_url(url)}: {reason}")
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return client


def sync_twin(client: AsyncMongoClient[Any]) -> MongoClient[Any] | None:
    """A MongoClient with the settings an AsyncMongoClient was built with (`None` if this
    pymongo does not keep them)."""
    settings = getattr(client, "_init_kwargs", None)
    if not isinstance(settings, dict):
        return None
    return MongoClient(**{**settings, "connect": False})


def describe(target: Any) -> str:
    """A URL-like name of a client's seeds, for messages (no credentials: pymongo's seeds
    are addresses)."""
    settings = getattr(target, "_topology_settings", None)
    seeds = getattr(settings, "seeds", None)
    if seeds:
        return "mongodb://" + ",".join(f"{host}:{port}" for host, port in sorted(seeds))
    return f"<{type(target).__name__}>"


class MongoErrors(DriverErrors):
    """pymongo's errors: `ConnectionFailure` (server selection and network timeouts
    included) → `BackendUnavailableError`, any other → `KVStoreError`; a bulk write's
    message carries its first write error."""

    def reason(self, exc: BaseException) -> str:
        if isinstance(exc, BulkWriteError):
            errors = exc.details.get("writeErrors") or [{}]
            first = errors[0]
            detail = f"{first.get('errmsg', '')} (code {first.get('code')})"
            return f"BulkWriteError: {len(errors)} write error(s), the first: {detail}"
        return error_reason(exc)

    def convert(self, exc: BaseException) -> KVStoreError:
        # A mongodb+srv:// host whose DNS records cannot be had is a server that cannot be
        # reached, though pymongo reports it as a ConfigurationError (from dnspython's).
        cause = exc.__cause__
        if isinstance(exc, PyMongoConfigurationError) and type(cause).__module__.startswith("dns."):
            return BackendUnavailableError(
                self.backend, self.url, self.reason(exc), secrets=self.secrets
            )
        return super().convert(exc)


def errors_for(url: str, secrets: Iterable[str] = ()) -> MongoErrors:
    """The errors of a store on `url`; `secrets`: credentials given as options (``password``,
    ``tlsCertificateKeyFilePassword``), masked like the URL's."""
    return MongoErrors(
        "mongodb",
        url,
        unavailable=(ConnectionFailure,),
        failed=(PyMongoError, BSONError),
        secrets=secrets,
    )


def own_collection(collection: Any) -> Any:
    """A user's collection with the stores' codec options (its concerns kept)."""
    return collection.with_options(codec_options=CODEC_OPTIONS)


def collection_of(client: Any, database: str, collection: str) -> Any:
    """A client's collection, with the stores' codec options."""
    return client[database].get_collection(collection, codec_options=CODEC_OPTIONS)
