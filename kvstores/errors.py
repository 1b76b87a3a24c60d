"""The kvstores errors: everything kvstores raises, except `TypeError`, is a `KVStoreError`."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "BackendUnavailableError",
    "ConfigurationError",
    "InvalidKeyError",
    "InvalidValueError",
    "KVStoreError",
]


class KVStoreError(Exception):
    """Root of every error kvstores raises (wrong argument types raise `TypeError` instead)."""


class ConfigurationError(KVStoreError, ValueError):
    """A store cannot be built as asked: an unknown URL scheme or option, a malformed URL,
    an invalid namespace, ttl or timeout, a table, collection, keyspace or database name
    its server's rules refuse or reserve, a file store rooted at a file."""


class InvalidKeyError(KVStoreError, ValueError):
    """A key is empty, longer than 1024 characters, or contains NUL."""


class InvalidValueError(KVStoreError, ValueError):
    """A value is over the backend's size limit or otherwise cannot be stored."""


class BackendUnavailableError(KVStoreError, ConnectionError):
    """The backend's server could not be reached.

    The message names the backend and the URL, with any password masked (and `secrets`,
    credentials given outside the URL); the driver's exception is chained as ``__cause__``.
    """

    def __init__(
        self, backend: str, url: str, reason: object = None, *, secrets: Iterable[str] = ()
    ) -> None:
        from kvstores._urls import mask_secrets, mask_url  # errors must not import the core eagerly

        self.backend = backend
        self.url = mask_url(url)
        # Drivers sometimes echo the DSN in their messages: mask the password there too.
        detail = f": {mask_secrets(str(reason), url, secrets)}" if reason is not None else ""
        super().__init__(f"{backend} backend unavailable at {self.url}{detail}")
