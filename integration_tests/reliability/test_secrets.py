"""Secrets never leak: a password (AstraDB: a token) given to a store appears in nothing kvstores
lets a user see when things go wrong.

For every server backend, stores are built with a secret of their own, given every way the
backend takes one (the URL's password, a credential query parameter, keyword options,
AstraDB's ``$ASTRA_DB_APPLICATION_TOKEN``), a secret that needs percent-encoding in a URL,
in three failing situations:

- ``closed``: nothing listens on the port;
- ``wrong``: the real server, with a wrong password or token (PostgreSQL, MariaDB and the
  Data API emulator check it; Redis, FerretDB and Cassandra run here without authentication:
  whatever they do with a password they were not asked for, it must not leak either);
- ``silent``: a port that accepts the connection and never answers (`silent_listener`, from
  ``integration_tests/conftest.py``), with ``timeout=1`` (the backend's first way only: its
  timeouts cost seconds an operation).

Every operation runs sync and async (construction three ways, ``repr``, ``str``, ``mget``,
``mset``, ``mdelete``, ``yield_keys`` with and without a prefix, ``server_version``,
``close``/``aclose``); what is collected: ``str`` and ``repr`` of every exception and the fully
formatted traceback chain (``__cause__`` and ``__context__`` included) and the repr of each
exception in it, every log record of every logger at DEBUG (with its exception and stack),
every warning, whatever was written to
the process's stdout and stderr, and the output of the command line (``python -m kvstores``:
``get`` with ``--debug`` through ``$KVSTORES_URL``, ``ls --url``, ``ping``) on the same URL.
The secret must appear nowhere, and every failing operation must raise a `KVStoreError`
(`BackendUnavailableError` where the server cannot be reached).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import pytest

import kvstores
from integration_tests.conftest import server_url
from kvstores import BackendUnavailableError, KVStoreError

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 1.0
TOKEN_VARIABLE = "ASTRA_DB_APPLICATION_TOKEN"  # kvstores.astradb.connect.TOKEN_VARIABLE


@dataclass(frozen=True)
class Backend:
    """A server backend: its URL variable, its module, and the ways a secret reaches its
    stores, each with whether the test server checks that secret (else a wrong one may
    well work: Redis, FerretDB and Cassandra run here without authentication, and libpq
    only needs ``sslpassword`` for an encrypted key). The ways: ``userinfo`` (the URL's
    password), ``query`` (a credential query parameter, the URL's password then left out
    where it stands for it), ``keyword`` (keyword options), ``environment`` (AstraDB's
    ``$ASTRA_DB_APPLICATION_TOKEN``)."""

    name: str
    variable: str
    module: str
    ways: dict[str, bool]
    #: The secret URL query parameter of the ``query`` way.
    query: str = ""
    #: The keyword options of the ``keyword`` way, for a secret.
    keywords: Callable[[str], dict[str, Any]] = lambda secret: {}
    #: Characters of the secret past ASCII: PyMySQL sends passwords as Latin-1 (kvstores
    #: refuses others when the store is built, see tests/test_sql.py), a token travels in
    #: an HTTP header, so ASCII (see tests/test_astradb_unit.py).
    beyond_ascii: str = "é☃"


def _connect_args(secret: str) -> dict[str, Any]:
    return {"engine_options": {"connect_args": {"password": secret}}}


BACKENDS = {
    b.name: b
    for b in [
        Backend(
            "postgresql",
            "KVSTORES_TEST_POSTGRES_URL",
            "kvstores.sql",
            {"userinfo": True, "query": False, "keyword": True},
            query="sslpassword",
            keywords=_connect_args,
        ),
        Backend(
            "mariadb",
            "KVSTORES_TEST_MYSQL_URL",
            "kvstores.sql",
            {"userinfo": True, "query": True, "keyword": True},
            query="password",
            keywords=_connect_args,
            beyond_ascii="é",
        ),
        Backend(
            "redis",
            "KVSTORES_TEST_REDIS_URL",
            "kvstores.redis",
            {"userinfo": False, "keyword": False},
            keywords=lambda secret: {"password": secret},
        ),
        Backend(
            "redis-cluster",
            "KVSTORES_TEST_REDIS_CLUSTER_URL",
            "kvstores.redis",
            {"userinfo": False, "keyword": False},
            keywords=lambda secret: {"password": secret},
        ),
        Backend(
            "mongodb",
            "KVSTORES_TEST_MONGODB_URL",
            "kvstores.mongodb",
            {"userinfo": False, "query": False, "keyword": False},
            query="tlsCertificateKeyFilePassword",
            keywords=lambda secret: {"username": "kvuser", "password": secret},
        ),
        Backend(
            "cassandra", "KVSTORES_TEST_CASSANDRA_URL", "kvstores.cassandra", {"userinfo": False}
        ),
        Backend(
            "astradb",
            "KVSTORES_TEST_ASTRADB_URL",
            "kvstores.astradb",
            {"query": True, "keyword": True, "environment": True},
            query="token",
            keywords=lambda secret: {"token": secret},
            beyond_ascii="",
        ),
    ]
}
SITUATIONS = ("closed", "wrong", "silent")


def new_secret(backend: Backend) -> tuple[str, str]:
    """A secret no message could hold by chance, and its core, which every spelling of it
    (percent-encoded, escaped) contains. Its characters need percent-encoding in a URL, as
    many real passwords and tokens do (``AstraCS:…:…``)."""
    core = f"Sk{uuid.uuid4().hex[:20]}"
    return f"{core}:@/%+#?&={backend.beyond_ascii}x", core


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def with_secret(
    url: str, backend: Backend, way: str, secret: str, *, netloc: str | None = None
) -> str:
    """`url` on `netloc` (``host:port``) if given, with `secret` where `way` puts it."""
    parts = urlsplit(url)
    password = parts.password
    host = netloc or parts.netloc.rpartition("@")[2]
    query = [
        (n, v)
        for n, v in parse_qsl(parts.query, keep_blank_values=True)
        if n not in ("token", backend.query)
    ]
    if way == "userinfo":
        password = secret
    elif way == "query":
        query.append((backend.query, secret))
        if backend.query in ("password", "token"):
            password = None
    elif way == "keyword":
        password = None
    userinfo = ""
    if password is not None:
        user = parts.username or ("" if parts.scheme.startswith("redis") else "kvuser")
        userinfo = f"{user}:{quote(password, safe='')}@"
    elif parts.username:
        userinfo = f"{parts.username}@"
    return urlunsplit((parts.scheme, userinfo + host, parts.path, urlencode(query), ""))


def with_timeout(url: str) -> str:
    return url + ("&" if "?" in url else "?") + f"timeout={TIMEOUT:g}"


# What a user can see


@dataclass
class Seen:
    """Everything a user could see of a store's failures, each text with where it came from."""

    texts: list[tuple[str, str]] = field(default_factory=list)
    #: (operation, exception) of every operation that raised.
    errors: list[tuple[str, BaseException]] = field(default_factory=list)
    #: Operations that returned normally.
    succeeded: list[str] = field(default_factory=list)

    def add(self, where: str, text: str) -> None:
        self.texts.append((where, text))

    def call(self, where: str, action: Callable[[], Any]) -> Any:
        """Run `action`, keeping its error (str, repr, the formatted chain) if it raises."""
        try:
            result = action()
        except Exception as exc:  # noqa: BLE001 - every error is evidence
            self.failed(where, exc)
            return None
        self.succeeded.append(where)
        return result

    async def acall(self, where: str, action: Callable[[], Any]) -> Any:
        try:
            result = await action()
        except Exception as exc:  # noqa: BLE001 - every error is evidence
            self.failed(where, exc)
            return None
        self.succeeded.append(where)
        return result

    def failed(self, where: str, exc: BaseException) -> None:
        self.errors.append((where, exc))
        self.add(f"{where}: str", str(exc))
        self.add(f"{where}: repr", repr(exc))
        self.add(f"{where}: traceback", "".join(traceback.format_exception(exc)))
        # The chain's exceptions themselves (as a traceback follows it), beyond what the
        # traceback prints of them: their repr, which error reporters show.
        seen: set[int] = set()
        inner: BaseException | None = exc
        while inner is not None and id(inner) not in seen:
            seen.add(id(inner))
            self.add(f"{where}: repr of the chained {type(inner).__name__}", repr(inner))
            hidden = inner.__suppress_context__
            inner = inner.__cause__ or (None if hidden else inner.__context__)

    def leaks(self, secret: str) -> list[str]:
        """Where `secret` appears, with the text around it."""
        found = []
        for where, text in self.texts:
            at = text.find(secret)
            if at >= 0:
                found.append(f"{where}: …{text[max(0, at - 150) : at + 60]}…")
        return found


@contextlib.contextmanager
def every_logger_at_debug() -> Iterator[None]:
    """Every logger, those made meanwhile included, logs everything and propagates it to the
    root (where caplog listens), none disabled: drivers set their own loggers' levels (at
    import, SQLAlchemy sets ``sqlalchemy`` to WARN) and make loggers as they go."""
    loggers = [
        logger
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    saved = [(logger, logger.propagate, logger.disabled) for logger in loggers]
    for logger in loggers:
        logger.propagate = True
        logger.disabled = False
    enabled = logging.Logger.isEnabledFor
    logging.Logger.isEnabledFor = lambda self, level: True  # type: ignore[method-assign]
    try:
        yield
    finally:
        logging.Logger.isEnabledFor = enabled  # type: ignore[method-assign]
        for logger, propagate, disabled in saved:
            logger.propagate = propagate
            logger.disabled = disabled


SYNC_OPERATIONS = ("mget", "mset", "mdelete", "yield_keys", "yield_keys(prefix)", "server_version")
ASYNC_OPERATIONS = ("amget", "amset", "amdelete", "ayield_keys", "ayield_keys(prefix)")


def _sync_operations(store: Any) -> dict[str, Callable[[], Any]]:
    return {
        "mget": lambda: store.mget(["k"]),
        "mset": lambda: store.mset([("k", b"v")]),
        "mdelete": lambda: store.mdelete(["k"]),
        "yield_keys": lambda: list(store.yield_keys()),
        "yield_keys(prefix)": lambda: list(store.yield_keys(prefix="p")),
        "server_version": store.server_version,
    }


async def _keys(store: Any, prefix: str | None = None) -> list[str]:
    return [key async for key in store.ayield_keys(prefix=prefix)]


def _async_operations(store: Any) -> dict[str, Callable[[], Any]]:
    return {
        "amget": lambda: store.amget(["k"]),
        "amset": lambda: store.amset([("k", b"v")]),
        "amdelete": lambda: store.amdelete(["k"]),
        "ayield_keys": lambda: _keys(store),
        "ayield_keys(prefix)": lambda: _keys(store, "p"),
    }


def exercise(url: str, module: str, seen: Seen, **options: Any) -> None:
    """Build stores from `url` every way and run every operation, sync and async."""
    cls = getattr(__import__(module, fromlist=["*"]), _class_of(module))
    options = {"timeout": TIMEOUT, **options}
    builders = {
        "kvstores.from_url": lambda: kvstores.from_url(url, **options),
        f"{cls.__name__}.from_url": lambda: cls.from_url(url, **options),
        f"{cls.__name__}(url)": lambda: cls(url, **options),
    }
    stores = []
    for name, build in builders.items():
        store = seen.call(name, build)
        if store is not None:
            stores.append(store)
            seen.add(f"{name}: repr(store)", repr(store))
            seen.add(f"{name}: str(store)", str(store))
    if not stores:
        return
    store = stores[0]
    for name, operation in _sync_operations(store).items():
        seen.call(name, operation)
    seen.call("close", store.close)

    async def run_async() -> None:
        fresh = stores[1]
        for name, operation in _async_operations(fresh).items():
            await seen.acall(name, operation)
        await seen.acall("aclose", fresh.aclose)

    asyncio.run(run_async())
    for other in stores[2:]:
        seen.call("close (unused)", other.close)


def _class_of(module: str) -> str:
    return {
        "kvstores.sql": "SQLByteStore",
        "kvstores.redis": "RedisByteStore",
        "kvstores.mongodb": "MongoDBByteStore",
        "kvstores.cassandra": "CassandraByteStore",
        "kvstores.astradb": "AstraDBByteStore",
    }[module]


def command_line(url: str, seen: Seen, env: dict[str, str]) -> None:
    """Run ``get`` (``--debug``, URL from ``$KVSTORES_URL``), ``ls --url`` and ``ping`` on `url`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("KVSTORES_")}
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), base.get("PYTHONPATH")]))
    base.update(env)
    timed = with_timeout(url)
    runs = {
        "cli get --debug": (["--debug", "get", "k"], {"KVSTORES_URL": timed}),
        "cli ls": (["ls", "--url", timed], {}),
        "cli ping": (["ping", url, "--timeout", f"{TIMEOUT:g}", "--debug"], {}),
    }
    for name, (args, extra) in runs.items():
        done = subprocess.run(
            [sys.executable, "-m", "kvstores", *args],
            capture_output=True,
            env={**base, **extra},
            cwd=ROOT,
            timeout=120,
            check=False,
        )
        output = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
        seen.add(f"{name} (exit {done.returncode})", output)
        if "Traceback" in output and "--debug" not in args:
            seen.add(f"{name}: a traceback without --debug", output)


# The test


def _url_for(
    backend: Backend, situation: str, way: str, secret: str, listener: tuple[str, int]
) -> str:
    netloc = None
    if situation == "closed":
        netloc = f"127.0.0.1:{closed_port()}"
    elif situation == "silent":
        netloc = "{}:{}".format(*listener)
    return with_secret(server_url(backend.variable), backend, way, secret, netloc=netloc)


def _cases() -> list[Any]:
    """Every backend, situation and way of giving the secret; a port that never answers
    only with the backend's first way (its timeouts cost seconds an operation)."""
    cases = []
    for name, backend in BACKENDS.items():
        for situation in SITUATIONS:
            ways = list(backend.ways)[:1] if situation == "silent" else list(backend.ways)
            for way in ways:
                case_id = f"{name}-{situation}-{way}"
                cases.append(pytest.param(backend, situation, way, id=case_id))
    return cases


@pytest.mark.parametrize(("backend", "situation", "way"), _cases())
def test_no_secret_in_anything_a_user_sees(
    backend: Backend,
    situation: str,
    way: str,
    silent_listener: tuple[str, int],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip(backend.module)
    secret, core = new_secret(backend)
    url = _url_for(backend, situation, way, secret, silent_listener)
    options: dict[str, Any] = {}
    env: dict[str, str] = {}
    monkeypatch.delenv(TOKEN_VARIABLE, raising=False)
    if way == "keyword":
        options = backend.keywords(secret)
    elif way == "environment":
        monkeypatch.setenv(TOKEN_VARIABLE, secret)
        env[TOKEN_VARIABLE] = secret

    seen = Seen()
    caplog.set_level(logging.DEBUG)
    with every_logger_at_debug(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exercise(url, backend.module, seen, **options)
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    for record in caplog.records:
        seen.add(f"log {record.name}", formatter.format(record))
    for warning in caught:
        seen.add(f"warning {warning.category.__name__}", str(warning.message))
    out, err = capfd.readouterr()
    seen.add("stdout", out)
    seen.add("stderr", err)
    if way != "keyword":  # the command line takes no keyword options
        command_line(url, seen, env)

    assert seen.leaks(core) == [], "the secret leaked"
    assert seen.texts, "nothing was collected"
    odd = [(w, repr(e)) for w, e in seen.errors if not isinstance(e, KVStoreError)]
    assert odd == [], "errors that are not KVStoreErrors"
    operations = {*SYNC_OPERATIONS, *ASYNC_OPERATIONS}
    failures = {w: e for w, e in seen.errors if w in operations}
    if backend.name == "astradb":  # the Data API reports no version: nothing is sent
        operations.discard("server_version")
    if situation in ("closed", "silent"):
        assert set(failures) == operations, f"operations that did not fail: {seen.succeeded}"
        wrong = {
            w: repr(e) for w, e in failures.items() if not isinstance(e, BackendUnavailableError)
        }
        assert wrong == {}, "unreachable, yet not BackendUnavailableError"
    elif backend.ways[way]:  # the server checks the secret
        assert set(failures) == operations, f"operations that did not fail: {seen.succeeded}"
