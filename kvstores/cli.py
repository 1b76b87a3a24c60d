"""The ``kvstores`` command: look inside a store, copy one to another, ping it, time it.

``kvstores [--url URL] COMMAND ...`` (also ``python -m kvstores``); needs the ``cli`` extra
(click, tqdm and SQLAlchemy for the default store). ``kvstores COMMAND --help`` documents
each command; the README's "Command line" section documents the formats and exit statuses.

- ``ls``, ``get``, ``put``, ``rm`` work on the store named by ``--url`` (given before or
  after the command), else ``$KVSTORES_URL``, else the SQLite file ``./kvstores.db``
  (`DEFAULT_URL`).
- ``copy SRC DST``, ``bench URL`` and ``ping URL`` take their URLs as arguments.
- Only ``put`` and copy's DST create a SQLite database: ``ls``, ``get``, ``rm`` and copy's
  SRC refuse one that does not exist (an error naming the file), and ``bench`` and ``ping``
  remove the database file they had to create.

Exit statuses: 0 success, 1 error (one line ``kvstores: error: ...`` on stderr, never a
traceback unless ``--debug``, given before or after the command), 2 usage error, 3 ``get``:
a key is absent, 130 interrupted. Every URL printed and every error message has its
password masked (`kvstores.backend.mask_secrets`).
"""

from __future__ import annotations

import base64
import importlib
import io
import json
import os
import re
import secrets
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click

from kvstores import __version__, from_url
from kvstores.backend import (
    BackendStore,
    ByteStore,
    KVStoreError,
    chunked,
    mask_secrets,
    mask_url,
    split_common_options,
)
from kvstores.copying import CopyStats, copy_keys
from kvstores.file import LocalFileStore

# tqdm ships no type information; imported here, at the top, so that a missing tqdm is
# reported by `kvstores.__main__` as a missing extra.
tqdm: Callable[..., Any] = importlib.import_module("tqdm").tqdm

__all__ = [
    "DEFAULT_URL",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_USAGE",
    "CopyStats",
    "cli",
    "copy_keys",
    "display_key",
    "run",
    "server_version",
]

T = TypeVar("T")

DEFAULT_URL = "sqlite:///kvstores.db"
"""The store of ``ls``/``get``/``put``/``rm`` without ``--url`` or ``$KVSTORES_URL``: a SQLite
file in the current directory."""
URL_ENV = "KVSTORES_URL"

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_INTERRUPTED = 130

PING_TIMEOUT = 5.0
MAX_BENCH_VALUE_SIZE = 64 * 1024 * 1024


# The session: what the error handler needs to know about one invocation.


@dataclass
class _Session:
    """One invocation: the URLs it names (to mask their secrets) and the global options."""

    urls: list[str] = field(default_factory=list)
    url: str | None = None  # the global --url
    debug: bool = False

    def mask(self, text: str) -> str:
        for url in self.urls:
            text = mask_secrets(text, url)
        return text


def _urls_in(args: Sequence[str]) -> list[str]:
    """Every URL-looking argument (``--url=...`` included) and ``$KVSTORES_URL``."""
    found = []
    for arg in [*args, os.environ.get(URL_ENV, "")]:
        if arg.startswith("-") and "=" in arg:
            arg = arg.partition("=")[2]
        if "://" in arg:
            found.append(arg)
    return found


class CLIError(Exception):
    """A failure reported as one line ``kvstores: error: <message>`` and `EXIT_ERROR`."""


def _say(message: str) -> None:
    """A ``kvstores: ...`` line on stderr, the secrets of the invocation's URLs masked."""
    context = click.get_current_context(silent=True)
    session = context.find_object(_Session) if context is not None else None
    click.echo(f"kvstores: {session.mask(message) if session else message}", err=True)


def _one_line(text: str) -> str:
    return re.sub(r"\s*\n\s*", " ", text).strip()


# Keys on a terminal

_QUOTE = re.compile('[\x00-\x1f\x7f-\x9f\u2028\u2029]|^"')
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029]")


def display_key(key: str) -> str:
    """A key as ``ls`` prints it: as is, or as a JSON string if it needs quoting.

    A key is quoted when it starts with ``"`` or contains a control character (C0, DEL, C1,
    U+2028 or U+2029), so that every printed line is exactly one key and a line starting
    with ``"`` is a JSON string (``json.loads`` gives the key back).
    """
    if not _QUOTE.search(key):
        return key
    quoted = json.dumps(key, ensure_ascii=False)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m[0]):04x}", quoted)


# Opening stores


def _store_url(ctx: click.Context, url: str | None) -> tuple[str, bool]:
    """The URL of ls/get/put/rm and whether it is the implicit default."""
    session = ctx.find_object(_Session)
    for candidate in (url, session.url if session else None, os.environ.get(URL_ENV)):
        if candidate:
            return candidate, False
    return DEFAULT_URL, True


@contextmanager
def _opened(url: str, **options: Any) -> Iterator[ByteStore]:
    store = from_url(url, **options)
    try:
        yield store
    finally:
        store.close()


@contextmanager
def _user_store(ctx: click.Context, url: str | None, *, writes: bool) -> Iterator[ByteStore]:
    """The store of ls/get/put/rm. A command that only reads or deletes refuses a SQLite
    database that does not exist rather than create it (`_require_database`)."""
    resolved, implicit = _store_url(ctx, url)
    if not writes:
        _require_database(resolved, implicit=implicit)
    with _opened(resolved) as store:
        yield store


def _sqlite_file(url: str) -> str | None:
    """The file a ``sqlite`` URL opens (`kvstores.sql.sqlite_file_of`); `None` for any other
    URL, an in-memory database or one `from_url` will refuse (it then says why)."""
    if url.partition("://")[0].lower().partition("+")[0] != "sqlite":
        return None
    from kvstores.sql import sqlite_file_of

    try:
        return sqlite_file_of(split_common_options(url)[0])
    except KVStoreError:
        return None


def _require_database(url: str, *, implicit: bool = False, role: str = "") -> None:
    """Refuse a SQLite `url` whose file does not exist: a reading command must not create it
    (nor show an empty store because of a typo in its path). `role`: ``"SRC"`` for copy."""
    path = _sqlite_file(url)
    if path is None or os.path.exists(path):
        return
    where = os.path.abspath(path)
    if role:
        raise CLIError(f"{role}: no SQLite database at {where}")
    default = f" (the default store: no --url or ${URL_ENV} given)" if implicit else ""
    raise CLIError(f"no SQLite database at {where}{default}; kvstores put creates it")


@contextmanager
def _removing_new_database(url: str) -> Iterator[None]:
    """Remove at the end (whatever happens) the SQLite file of `url`, with its -wal, -shm and
    -journal files, if it did not exist at the start: a scratch run leaves no database behind."""
    path = _sqlite_file(url)
    if path is None or os.path.exists(path):
        yield
        return
    try:
        yield
    finally:
        for name in (path, f"{path}-wal", f"{path}-shm", f"{path}-journal"):
            try:
                os.unlink(name)
            except FileNotFoundError:
                pass
            except OSError as exc:
                _say(f"warning: could not remove {name}, created for this run: {exc}")


def _scratch_namespace(kind: str) -> str:
    return f"kvstores-{kind}-{secrets.token_hex(4)}"


def _drop_scratch(store: ByteStore, written: Sequence[str]) -> None:
    """Delete every key of a scratch namespace: those written, then whatever is listed."""
    for chunk in chunked(written, 1000):
        store.mdelete(chunk)
    leftovers = list(store.yield_keys())
    for chunk in chunked(leftovers, 1000):
        store.mdelete(chunk)
    if isinstance(store, LocalFileStore) and store.namespace is not None:
        # The namespace's directory, which only this process wrote to: its markers and
        # temporary files (names starting with "~" or "." are never keys; a write cut short
        # by Ctrl-C leaves its temporary file), then the directory itself.
        with suppress(OSError):
            for entry in os.scandir(store.directory):
                if entry.name.startswith(("~", ".")) and entry.is_file():
                    os.unlink(entry.path)
            os.rmdir(store.directory)


@contextmanager
def _scratch(url: str, namespace: str, written: list[str], **options: Any) -> Iterator[ByteStore]:
    """A store on `url` in a scratch `namespace`, emptied and closed at the end, whatever
    happens (Ctrl-C included).

    The caller adds to `written` the keys it may write before writing them; while it is
    empty nothing is cleaned up (so an unreachable server is not waited for twice).
    """
    store = from_url(url, namespace=namespace, **options)
    try:
        yield store
    finally:
        try:
            if written:
                _drop_scratch(store, written)
        except BaseException as exc:
            _say(
                f"warning: could not empty the scratch namespace {namespace!r}: "
                f"{_one_line(str(exc)) or type(exc).__name__}"
            )
            if not isinstance(exc, Exception):
                raise
        finally:
            store.close()


# The command group


class _Group(click.Group):
    """Commands listed in the order they are defined, not alphabetically."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
_URL_HELP = (
    f"The store: a kvstores URL such as sqlite:///cache.db, file:///var/cache/app or "
    f"redis://host:6379/0. Default: ${URL_ENV}, else {DEFAULT_URL} (./kvstores.db)."
)


@click.group(cls=_Group, context_settings=_CONTEXT)
@click.option("--url", metavar="URL", help=_URL_HELP)
@click.option(
    "--debug", is_flag=True, help="Show a traceback with errors (also after the command)."
)
@click.version_option(__version__, "-V", "--version", prog_name="kvstores")
@click.pass_context
def cli(ctx: click.Context, url: str | None, debug: bool) -> None:
    """Look inside a kvstores store, copy it, check a server is reachable, time it.

    \b
    ls, get, put, rm   on the store of --url, else $KVSTORES_URL, else ./kvstores.db
    copy SRC DST       copy every key (or those with --prefix) from one store to another
    bench URL          time the store's operations in a scratch namespace
    ping URL           a write, read and delete round trip, with the server's version

    Passwords in URLs are masked in everything printed. Exit status: 0 ok, 1 error,
    2 usage error, 3 `get` found a key absent, 130 interrupted.
    """
    session = ctx.ensure_object(_Session)
    session.debug = session.debug or debug
    session.url = url


_url_option = click.option("--url", metavar="URL", help="The store (overrides the global --url).")


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    session = ctx.find_object(_Session)
    if value and session is not None:
        session.debug = True


_debug_option = click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    callback=_set_debug,
    help="Show a traceback with errors (as --debug before the command).",
)


# ls, get, put, rm


@cli.command("ls", short_help="List the keys (one per line; --prefix, --limit, -0).")
@click.option("--prefix", metavar="P", help="Only the keys that start with P (a literal string).")
@click.option("--limit", type=click.IntRange(min=0), metavar="N", help="At most N keys.")
@click.option(
    "-0",
    "--null",
    is_flag=True,
    help="End each key with NUL instead of a newline, and never quote it (for xargs -0).",
)
@_url_option
@_debug_option
@click.pass_context
def ls_command(
    ctx: click.Context, prefix: str | None, limit: int | None, null: bool, url: str | None
) -> None:
    """List the keys, one per line, in no particular order (pipe to sort).

    A key that contains a control character (a newline, say) or starts with a double quote
    is printed as a JSON string ("a\\nb"), so each line is one key; with -0 every key is
    printed as is, NUL-terminated.
    """
    out = sys.stdout.buffer
    end = b"\0" if null else b"\n"
    with _user_store(ctx, url, writes=False) as store:
        keys = store.yield_keys(prefix=prefix)
        if limit is not None:
            keys = islice(keys, limit)
        for key in keys:
            text = key if null else display_key(key)
            out.write(text.encode("utf-8", "surrogateescape") + end)
    out.flush()


@cli.command("get", short_help="Write the values of keys to stdout (raw, or --json).")
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='One JSON object per key and line: {"key": K, "value": TEXT} for a UTF-8 value, '
    '{"key": K, "value_base64": B64} for other bytes, {"key": K, "value": null} if absent.',
)
@_url_option
@_debug_option
@click.pass_context
def get_command(ctx: click.Context, keys: tuple[str, ...], as_json: bool, url: str | None) -> None:
    """Write the values of KEY... to stdout, raw, one after the other.

    Into a pipe or a file, nothing is added: with one key, stdout is exactly the stored
    bytes (kvstores get k > file). On a terminal, each value ends with a newline (one is
    added if it has none). For several keys, --json tells the values apart. A key that is
    absent is named on stderr, after the values found are written, and the exit status is 3.
    """
    with _user_store(ctx, url, writes=False) as store:
        values = store.mget(list(keys))
    out = sys.stdout.buffer
    on_terminal = sys.stdout.isatty()
    for key, value in zip(keys, values, strict=True):
        if as_json:
            out.write(_json_line(key, value).encode("utf-8", "surrogateescape") + b"\n")
        elif value is not None:
            out.write(value)
            if on_terminal and not value.endswith(b"\n"):
                out.write(b"\n")
    out.flush()
    missing = [key for key, value in zip(keys, values, strict=True) if value is None]
    for key in missing:
        _say(f"not found: {display_key(key)}")
    if missing:
        ctx.exit(EXIT_NOT_FOUND)


def _json_line(key: str, value: bytes | None) -> str:
    entry: dict[str, str | None] = {"key": key}
    if value is None:
        entry["value"] = None
    else:
        try:
            entry["value"] = value.decode("utf-8")
        except UnicodeDecodeError:
            entry["value_base64"] = base64.b64encode(value).decode("ascii")
    return json.dumps(entry, ensure_ascii=False)


@cli.command("put", short_help="Set a key to a value (- reads it from stdin).")
@click.argument("key")
@click.argument("value")
@_url_option
@_debug_option
@click.pass_context
def put_command(ctx: click.Context, key: str, value: str, url: str | None) -> None:
    """Set KEY to VALUE (its UTF-8 bytes), or to the bytes of stdin if VALUE is -.

    An existing value is replaced. A ttl comes from the URL (?ttl=SECONDS). To store the
    one-character value "-", pipe it: printf %s - | kvstores put KEY -
    """
    data = sys.stdin.buffer.read() if value == "-" else os.fsencode(value)
    with _user_store(ctx, url, writes=True) as store:
        store.mset([(key, data)])


@cli.command("rm", short_help="Delete keys (absent keys are ignored).")
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
@_url_option
@_debug_option
@click.pass_context
def rm_command(ctx: click.Context, keys: tuple[str, ...], url: str | None) -> None:
    """Delete KEY...; keys that are absent are ignored (like rm -f). Prints nothing."""
    with _user_store(ctx, url, writes=False) as store:
        store.mdelete(list(keys))


# copy


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def show_progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


@cli.command("copy", short_help="Copy keys and values from one store to another.")
@click.argument("src", metavar="SRC")
@click.argument("dst", metavar="DST")
@click.option("--prefix", metavar="P", help="Only the keys that start with P (a literal string).")
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    metavar="N",
    help="Keys per batch (one batch of values is held in memory: lower it for big values).",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Skip the keys DST already has (whatever their value): continue an interrupted copy.",
)
@click.option(
    "--max-rate",
    type=click.FloatRange(min=0, min_open=True),
    metavar="KEYS_PER_S",
    help="At most this many keys per second, to spare a busy server.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar (the summary line stays).")
@_debug_option
@click.pass_context
def copy_command(
    ctx: click.Context,
    src: str,
    dst: str,
    prefix: str | None,
    batch: int,
    resume: bool,
    max_rate: float | None,
    quiet: bool,
) -> None:
    """Copy the keys and values of the store SRC into the store DST (both URLs).

    Streams batches: list keys in SRC, read their values, upsert them into DST. Keys that
    DST already has are overwritten, unless --resume. Writes are idempotent, so nothing
    is lost if a copy is interrupted: run it again (with --resume to skip what is done).
    A progress bar (keys/s, bytes/s; a percentage and an ETA where SRC counts its keys
    without listing them) shows on stderr when it is a terminal; a summary line always
    ends on stdout:

    copied N keys (B bytes) in S s; skipped K already in DST, V vanished from SRC
    """
    if src == dst:
        raise click.UsageError("SRC and DST are the same store")
    _require_database(src, role="SRC")
    stats = CopyStats()
    show = show_progress(quiet)
    bar: Any = None
    interrupted = False

    def on_batch(done: CopyStats) -> None:
        seconds = max(done.seconds, 1e-9)
        skipped = f", {done.skipped:,} skipped" if done.skipped else ""
        bar.set_description_str(
            f"copy: {done.copied:,} keys, {_size(done.bytes)}{skipped}; "
            f"{done.listed / seconds:,.0f} keys/s, {_size(done.bytes / seconds)}/s",
            refresh=False,
        )
        if bar.total is not None and done.listed > bar.total:
            bar.total = done.listed  # keys were added to SRC since they were counted
        bar.update(done.listed - bar.n)

    try:
        with _opened(src) as source, _opened(dst) as target:
            bar = _copy_bar(_count_keys(source, prefix) if show else None, show)
            copy_keys(
                source,
                target,
                prefix=prefix,
                batch=batch,
                resume=resume,
                max_rate=max_rate,
                stats=stats,
                on_batch=on_batch,
            )
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar is not None:
            bar.close()
    if interrupted:
        click.echo(f"interrupted: {stats.summary()}")
        _say("interrupted; run the same command with --resume to copy the rest")
        ctx.exit(EXIT_INTERRUPTED)
    click.echo(stats.summary())


def _count_keys(store: ByteStore, prefix: str | None) -> int | None:
    """How many keys a copy lists, where the store counts them cheaply (else `None`): a
    progress bar's total. A failure to count is no reason not to copy."""
    try:
        return store.count_keys(prefix=prefix)
    except KVStoreError:
        return None


def _copy_bar(total: int | None, show: bool) -> Any:
    """Copy's progress bar on stderr: with a `total`, a bar with its percentage and ETA."""
    bar_format = "{desc} [{elapsed}]"
    if total is not None:
        bar_format = "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]"
    return tqdm(
        desc="copy",
        total=total,
        file=sys.stderr,
        disable=not show,
        bar_format=bar_format,
    )


# bench


def _csv_ints(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        numbers = sorted({int(item) for item in value.split(",") if item.strip()})
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not numbers or numbers[0] < 1:
        raise click.BadParameter("batches are positive integers, e.g. 1,100,1000")
    return tuple(numbers)


def _csv_ops(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    from kvstores.benchmark import check_ops

    ops = tuple(item.strip() for item in value.split(",") if item.strip())
    try:
        check_ops(ops)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return ops


@cli.command("bench", short_help="Time a store's operations in a scratch namespace.")
@click.argument("url", metavar="URL")
@click.option(
    "--keys",
    type=click.IntRange(min=20),
    metavar="N",
    default=2000,
    show_default=True,
    help="Keys in the workload.",
)
@click.option(
    "--value-size",
    type=click.IntRange(min=0, max=MAX_BENCH_VALUE_SIZE),
    metavar="BYTES",
    default=1024,
    show_default=True,
    help="Bytes per value.",
)
@click.option(
    "--batches",
    "--batch",
    default="1,100,1000",
    show_default=True,
    callback=_csv_ints,
    metavar="N[,N...]",
    help="Keys per call: one or more, comma-separated.",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    metavar="N",
    default=3,
    show_default=True,
    help="Rounds per op and batch; the best (or median) is reported.",
)
@click.option(
    "--ops",
    default="",
    callback=_csv_ops,
    metavar="OPS",
    help="A comma-separated subset of mset, mget, yield_keys, mdelete and their async twins "
    "(amset, ...); default: all.",
)
@click.option("--no-async", is_flag=True, help="Skip the async ops.")
@click.option(
    "--max-calls",
    type=click.IntRange(min=1),
    metavar="N",
    default=500,
    show_default=True,
    help="Calls per op at most (caps the keys of small batches).",
)
@click.option(
    "--min-time",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    default=0.0,
    show_default=True,
    help="Seconds a round repeats its op, keeping its fastest run (0: one run per round).",
)
@click.option(
    "--stat",
    type=click.Choice(["best", "median"]),
    default="best",
    show_default=True,
    help="Which round is reported.",
)
@click.option("--markdown", is_flag=True, help="Print a markdown table.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@_debug_option
def bench_command(
    url: str,
    keys: int,
    value_size: int,
    batches: tuple[int, ...],
    rounds: int,
    ops: tuple[str, ...],
    no_async: bool,
    max_calls: int,
    min_time: float,
    stat: str,
    markdown: bool,
    quiet: bool,
) -> None:
    """Time mset, mget (hits and misses), yield_keys and mdelete, and their async twins, on
    the store URL, and print keys per second and milliseconds per call.

    It runs in a new scratch namespace (kvstores-bench-<random>; the URL's own namespace
    is not used) and deletes every key it wrote there at the end, also when interrupted:
    your other keys are never read, listed or touched. A SQLite database that did not
    exist is removed at the end.
    """
    from kvstores.benchmark import (
        Case,
        Config,
        Progress,
        Workload,
        describe,
        format_table,
        plan,
        run,
    )

    config = Config(
        keys=keys,
        value_size=value_size,
        batches=batches,
        rounds=rounds,
        ops=ops,
        use_async=not no_async,
        max_calls=max_calls,
        min_time=min_time,
        stat=stat,
    )
    workload = Workload.make(config.keys, config.value_size)
    label = urlsplit(url).scheme.lower()
    written: list[str] = []
    namespace = _scratch_namespace("bench")
    with _removing_new_database(url), _scratch(url, namespace, written) as store:
        store.mget(workload.missing[:1])  # reachable? (nothing to clean up if not)
        written += [*workload.keys, *workload.missing]
        click.echo(
            f"bench {mask_url(url)} ({type(store).__name__}), "
            f"in the scratch namespace {namespace} (deleted afterwards)"
        )
        click.echo(describe(config, baseline=False), nl=False)
        click.echo("\n")
        bar = tqdm(
            desc="bench",
            total=len(plan(config)) * config.rounds,
            unit=" rounds",
            file=sys.stderr,
            disable=not show_progress(quiet),
            leave=False,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} rounds "
            "[{elapsed}<{remaining}]",
        )

        def on_round(event: Progress) -> None:
            bar.total = event.total
            bar.set_description_str(f"{event.op} batch={event.batch or '-'}", refresh=False)
            bar.update(event.done - bar.n)

        try:
            results = run([Case(label, store)], config, progress=on_round, workload=workload)
        finally:
            bar.close()
    click.echo(format_table(results, stat=stat, markdown=markdown))


# ping


def server_version(store: object) -> str:
    """The server's name and version (`BackendStore.server_version`), else ``"unknown"``:
    best effort, any failure included."""
    try:
        version = store.server_version() if isinstance(store, BackendStore) else None
    except Exception:  # noqa: BLE001 - best effort: any failure is "unknown"
        version = None
    return version or "unknown"


@cli.command("ping", short_help="Write, read and delete a key; show latency and version.")
@click.argument("url", metavar="URL")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help=f"Seconds to connect (default: the URL's ?timeout=, else {PING_TIMEOUT:g}).",
)
@_debug_option
def ping_command(url: str, timeout: float | None) -> None:
    """Check that the store URL is reachable: connect, write, read and delete one key in a
    scratch namespace, printing the time of each step and the server's version:

    \b
    store:    URL (StoreClass)
    connect:  1.23 ms
    server:   redis 7.2.4   (or unknown)
    write:    0.45 ms
    read:     0.21 ms
    delete:   0.30 ms
    ok

    Exit status 1, with the failing step named, when any step fails. A SQLite database
    that did not exist is removed at the end.
    """
    if timeout is None:
        timeout = split_common_options(url)[1].get("timeout", PING_TIMEOUT)
    key, value = "ping", secrets.token_bytes(16)
    written: list[str] = []
    scratch = _scratch(url, _scratch_namespace("ping"), written, timeout=timeout)
    with _removing_new_database(url), scratch as store:
        click.echo(f"{'store:':<9} {mask_url(url)} ({type(store).__name__})")

        def step(name: str, action: Callable[[], T]) -> T:
            start = time.perf_counter()
            try:
                result = action()
            except (KVStoreError, ValueError, OSError) as exc:
                raise CLIError(f"ping failed at {name}: {exc}") from exc
            click.echo(f"{name + ':':<9} {(time.perf_counter() - start) * 1000:.2f} ms")
            return result

        step("connect", lambda: store.mget([key]))
        click.echo(f"{'server:':<9} {server_version(store)}")
        written.append(key)
        step("write", lambda: store.mset([(key, value)]))
        if step("read", lambda: store.mget([key])) != [value]:
            raise CLIError("ping failed at read: the value read is not the value written")
        step("delete", lambda: store.mdelete([key]))
        if store.mget([key]) != [None]:
            raise CLIError("ping failed at delete: the key is still there")
    click.echo("ok")


# Running


def _report(session: _Session, message: str) -> None:
    if session.debug:
        click.echo(session.mask(traceback.format_exc()), err=True, nl=False)
    _say(f"error: {_one_line(session.mask(message))}")


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line on `argv` (default: ``sys.argv[1:]``); return the exit status.

    SIGTERM is handled as Ctrl-C (a copy reports its progress, a benchmark cleans up).
    Warnings (a driver's, say) are printed as one masked line ``kvstores: warning: ...``.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    with suppress(ValueError):  # ValueError: not the main thread
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.default_int_handler)  # KeyboardInterrupt
    session = _Session(urls=_urls_in(args), debug=bool(os.environ.get("KVSTORES_DEBUG")))
    with warnings.catch_warnings():
        warnings.showwarning = _warning_printer(session)
        return _run(args, session)


def _warning_printer(session: _Session) -> Callable[..., None]:
    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        text = _one_line(session.mask(f"{category.__name__}: {message}"))
        click.echo(f"kvstores: warning: {text}", err=True)

    return show


def _run(args: list[str], session: _Session) -> int:
    try:
        status = cli.main(args=args, prog_name="kvstores", standalone_mode=False, obj=session)
    except click.ClickException as exc:  # usage errors, in click's words, masked
        buffer = io.StringIO()
        exc.show(file=buffer)
        click.echo(session.mask(buffer.getvalue()), err=True, nl=False)
        return exc.exit_code
    except click.Abort:  # Ctrl-C (click turns KeyboardInterrupt into Abort)
        _say("interrupted")
        return EXIT_INTERRUPTED
    except CLIError as exc:
        _report(session, str(exc))
        return EXIT_ERROR
    except (KVStoreError, ValueError, ImportError, OSError, TypeError, RuntimeError) as exc:
        _report(session, str(exc) or type(exc).__name__)
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - a driver's own error, say: one line too
        _report(session, f"{type(exc).__name__}: {exc}")
        return EXIT_ERROR
    return status if isinstance(status, int) else 0
