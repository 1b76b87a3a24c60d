"""URLs, options, clients and errors of the AstraDB stores: everything that touches astrapy's
configuration, so that `kvstores.astradb.store` only sends commands."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit

from kvstores.backend import (
    COMMON_OPTIONS,
    ConfigurationError,
    DriverErrors,
    check_name,
    check_options,
    cql_name_rule,
    mask_url,
    require,
)

require("astrapy", "astradb")

import httpx  # noqa: E402
from astrapy import AsyncCollection, Collection, DataAPIClient, Database  # noqa: E402
from astrapy.api_options import APIOptions, TimeoutOptions  # noqa: E402
from astrapy.exceptions import (  # noqa: E402
    CollectionInsertManyException,
    DataAPIException,
    DataAPIResponseException,
    DataAPITimeoutException,
)

__all__ = [
    "COLLECTION_NAME",
    "DEFAULT_COLLECTION",
    "DEFAULT_KEYSPACE",
    "KEYSPACE_NAME",
    "TOKEN_VARIABLE",
    "AsyncCollection",
    "Collection",
    "CollectionInsertManyException",
    "DataAPIResponseException",
    "Database",
    "Settings",
    "close_http",
    "error_codes",
    "errors_for",
    "open_database",
    "parse_url",
]

DEFAULT_COLLECTION = "kvstores"
DEFAULT_KEYSPACE = "default_keyspace"
TOKEN_VARIABLE = "ASTRA_DB_APPLICATION_TOKEN"
STORE_OPTIONS = ("collection", "keyspace", "token")
#: scheme → (transport, astrapy environment): Astra, or a self-hosted Data API.
SCHEMES = {
    "astradb": ("https", "prod"),
    "astradb+http": ("http", "other"),
    "astradb+https": ("https", "other"),
}


#: The Data API's rules for keyspace and collection names (Cassandra's).
KEYSPACE_NAME = cql_name_rule("astradb", "keyspace", keyspace=True)
COLLECTION_NAME = cql_name_rule("astradb", "collection")


class Settings(NamedTuple):
    endpoint: str  #: ``https://host`` or ``http://host:port``
    environment: str  #: astrapy's: ``prod`` (Astra) or ``other`` (a self-hosted Data API)
    keyspace: str
    collection: str
    token: str

    def __repr__(self) -> str:  # the token masked
        fields = self._replace(token="***")._asdict()
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in fields.items()) + ")"


def parse_url(url: str, options: Mapping[str, Any]) -> Settings:
    """Check an ``astradb://endpoint-host/keyspace?collection=…&token=…`` (Astra, https) or
    ``astradb+http://host:port/keyspace?…`` (a self-hosted Data API) URL, its namespace/ttl/
    timeout already taken out, and the keyword options (which win). The token is
    ``token=``, else ``$ASTRA_DB_APPLICATION_TOKEN``.

    Raises:
        ConfigurationError: another scheme, no host, an unknown option, no token.
    """
    scheme, sep, rest = url.partition("://")
    if scheme.lower() not in SCHEMES or not sep:
        raise ConfigurationError(
            f"not an AstraDB URL (astradb://, astradb+http://, astradb+https://): {mask_url(url)!r}"
        )
    transport, environment = SCHEMES[scheme.lower()]
    rest, _, query = rest.partition("?")
    host, _, path = rest.partition("/")
    if not host or "@" in host:
        raise ConfigurationError(
            f"astradb: the URL needs a host and no user or password (the token is token=): "
            f"{mask_url(url)!r}"
        )
    try:
        port = urlsplit(f"//{host}").port  # a port that is not a number raises
    except ValueError:
        port = 0
    if port == 0:
        raise ConfigurationError(f"astradb: bad port in {mask_url(url)!r}")
    given: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    given.update(options)
    check_options(
        "astradb", [n for n in given if n not in STORE_OPTIONS], (*STORE_OPTIONS, *COMMON_OPTIONS)
    )
    token = given.get("token") or os.environ.get(TOKEN_VARIABLE)
    if not token:
        raise ConfigurationError(f"astradb: no token: give token=... or set ${TOKEN_VARIABLE}")
    check_token(str(token))
    keyspace = given.get("keyspace")
    if keyspace is None:
        keyspace = unquote(path).strip("/") or DEFAULT_KEYSPACE
    collection = given.get("collection")
    return Settings(
        endpoint=f"{transport}://{host}",
        environment=environment,
        keyspace=check_name(KEYSPACE_NAME, keyspace),
        collection=check_name(
            COLLECTION_NAME, DEFAULT_COLLECTION if collection is None else collection
        ),
        token=str(token),
    )


def check_token(token: str) -> None:
    """A token travels in an HTTP header: printable ASCII without spaces, as Astra's are
    (``AstraCS:…``). Any other (a newline read from a file with it, a non-ASCII character)
    would fail every request with an error quoting the whole header, the token included;
    it is refused at once, its text never shown."""
    if not (token.isascii() and token.isprintable() and " " not in token):
        raise ConfigurationError(
            "astradb: the token must be printable ASCII without spaces (Astra's tokens are "
            "AstraCS:…); this one has whitespace, a control or a non-ASCII character "
            "(a newline read from a file with it?)"
        )


def open_database(settings: Settings, timeout: float) -> Database:
    """An astrapy `Database` for the settings (no request yet), every request bounded by
    `timeout`."""
    ms = max(1, int(timeout * 1000))
    options = APIOptions(
        timeout_options=TimeoutOptions(
            request_timeout_ms=ms,
            general_method_timeout_ms=max(ms, 30_000),
            collection_admin_timeout_ms=max(ms, 60_000),
            keyspace_admin_timeout_ms=max(ms, 30_000),
        )
    )
    client = DataAPIClient(settings.token, environment=settings.environment, api_options=options)
    return client.get_database(settings.endpoint, keyspace=settings.keyspace)


def close_http(*objects: Any) -> None:
    """Close the HTTP connections of astrapy's sync `Database`s and `Collection`s: each
    holds an httpx client of its own, which astrapy closes only when the object is garbage
    collected (its async twins have ``__aexit__``; the sync ones have nothing)."""
    for obj in objects:
        client = getattr(getattr(obj, "_api_commander", None), "client", None)
        if client is not None:
            client.close()


def error_codes(exc: BaseException) -> set[str]:
    """The Data API error codes a response exception carries (empty for other errors)."""
    descriptors = getattr(exc, "error_descriptors", None) or []
    codes = {str(d.error_code) for d in descriptors if getattr(d, "error_code", None)}
    for inner in getattr(exc, "exceptions", None) or []:  # an insert_many's root errors
        codes |= error_codes(inner)
    return codes


class AstraErrors(DriverErrors):
    """astrapy's errors: a transport failure or a timeout → `BackendUnavailableError`, any
    other → `KVStoreError`; the Data API's error codes in the message."""

    def reason(self, exc: BaseException) -> str:
        text = super().reason(exc)
        missing = [code for code in sorted(error_codes(exc)) if code not in text]
        return f"{text} ({', '.join(missing)})" if missing else text


def errors_for(url: str, token: str | None = None) -> AstraErrors:
    """The errors of a store on `url`; `token`, when it is not in the URL (a keyword, the
    environment), is masked like the URL's."""
    return AstraErrors(
        "astradb",
        url,
        unavailable=(httpx.TransportError, DataAPITimeoutException),
        failed=(DataAPIException, httpx.HTTPError),
        secrets=() if token is None else (token,),
    )
