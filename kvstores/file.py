"""`LocalFileStore`: one file per key under a root directory, written atomically."""

from __future__ import annotations

import codecs
import contextlib
import itertools
import os
import re
import struct
import threading
import time
from collections.abc import AsyncIterator, Generator, Iterator
from operator import attrgetter
from pathlib import Path
from typing import Any

from kvstores.backend import (
    BackendStore,
    ConfigurationError,
    KVStoreError,
    page_sizes,
    path_from_url,
    shorten_key,
    store_options,
    to_thread,
)

__all__ = ["LocalFileStore"]

# File names are the key escaped to [a-z0-9_.-] and %xx (lowercase hex of each UTF-8 byte),
# so they are the same on case-insensitive and unicode-normalising filesystems, never hold a
# separator, and never are "." or "..". The escaping works character by character, so a key
# starts with a prefix exactly when its name starts with the prefix's name, and listing with
# a prefix is a filter over one os.scandir stream.
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-.")
_NAME_CHARS = re.compile(r"[a-z0-9_.%\-\x00]*")  # those of escaped names, and NUL to join them
_NAME_LIMIT = 140  # under every common filesystem's limit (ext4 255, eCryptfs 143)
_HEAD = _NAME_LIMIT - 65  # a long name: the first _HEAD characters, "~", sha256 of the key
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0)
_FIRST_READ = 64 * 1024  # one read takes a value up to this size whole
_NAME_OF = attrgetter("name")  # a directory entry's name
_NAMESPACES = "~ns"  # names starting with "~" or "." are never keys: dirs, markers, temp files
_TTL_MARKER = "~ttl"  # present once a store with a ttl wrote here: listings must read headers

# A file is a header, then the value. Header: one flags byte; with _HAS_EXPIRY, an 8-byte
# big-endian float (Unix time); with _HAS_KEY, a 4-byte length and the UTF-8 key (long names).
_HAS_EXPIRY = 1
_HAS_KEY = 2
_PLAIN = b"\x00"
_EXPIRY = struct.Struct(">d")
_KEY_LENGTH = struct.Struct(">I")


class _Escapes(dict[int, str]):
    """A `str.translate` table escaping every code point outside `_SAFE`."""

    def __missing__(self, code_point: int) -> str:
        char = chr(code_point)
        escaped = char if char in _SAFE else "".join(f"%{b:02x}" for b in char.encode())
        if code_point < 128:  # cache ASCII only, so the table stays small
            self[code_point] = escaped
        return escaped


_ESCAPES = _Escapes()


def _escape(text: str) -> str:
    name = text.translate(_ESCAPES)
    return "%2e" + name[1:] if name.startswith(".") else name


def _file_name(key: str) -> str:
    name = _escape(key)
    if len(name) <= _NAME_LIMIT:  # shorten_key's own test, without its call
        return name
    return shorten_key(name, _NAME_LIMIT, head=_HEAD, sep="~", key=key)


def _unescape(name: str) -> str | None:
    """The key a file name stands for; `None` for a name that is not an escaped key."""
    if _NAME_CHARS.fullmatch(name) is None:  # not a name this store writes
        return None
    keys = _unescape_names(name, 1)
    return None if keys is None else keys[0]


def _unescape_names(joined: str, count: int) -> list[str] | None:
    """`count` names joined by NUL (in no file name and no key), decoded in one call.

    `None` if any of them does not decode or decodes to a NUL: such a name is not ours.
    """
    if "%" in joined:
        # Names hold no backslash (it is escaped), so turning each "%" into a backslash-x
        # escape and decoding those bytes at C speed is exact, and several times faster than
        # urllib's unquote.
        try:
            joined = codecs.escape_decode(joined.replace("%", "\\x"))[0].decode()
        except (ValueError, UnicodeDecodeError):
            return None
    keys = joined.split("\x00") if count else []
    return keys if len(keys) == count else None


class LocalFileStore(BackendStore[bytes]):
    """Bytes in files under `root`: one file per key, written to a temporary file then renamed.

    Every key maps to a file strictly inside the root (namespaces in ``root/~ns/<name>``),
    reversibly, so `yield_keys` returns the original keys. Writes are atomic per key
    (`os.replace`) but not fsync'ed: a process crash never leaves a half-written value, a
    power loss may lose recent writes. With a `ttl`, expired entries are invisible and their
    files removed when read; `purge_expired()` removes them all.
    """

    backend_name = "file"

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        namespace: str | None = None,
        ttl: float | None = None,
    ) -> None:
        super().__init__(namespace=namespace, ttl=ttl)
        self.root = Path(root).absolute()
        # The nearest existing ancestor decides: a file there is a mistake now, not at the
        # first write.
        existing = next(path for path in (self.root, *self.root.parents) if path.exists())
        if not existing.is_dir():
            raise ConfigurationError(
                f"the root of a LocalFileStore must be a directory: {self.root}"
            )
        directory = self.root
        if self.namespace is not None:
            directory = directory / _NAMESPACES / _file_name(self.namespace)
        self._dir = str(directory)
        self._dir_prefix = os.path.join(self._dir, "")
        self._marker = os.path.join(self._dir, _TTL_MARKER)
        self._marked = False
        self._temp_ids = itertools.count()
        self._temp_prefix = f".tmp-{os.getpid()}-"

    @property
    def directory(self) -> Path:
        """The directory holding this store's files: the root, or with a namespace its
        directory ``root/~ns/<escaped namespace>``."""
        return Path(self._dir)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> LocalFileStore:
        """``file:///abs/dir`` or ``file://rel/dir``; `timeout` is ignored."""
        rest, options = store_options("file", url, options)
        path = path_from_url(rest)
        if not path:
            raise ConfigurationError(f"a file:// URL needs a directory, got {url!r}")
        options.pop("timeout", None)
        return cls(path, **options)

    def __repr__(self) -> str:
        return f"LocalFileStore({str(self.root)!r}, namespace={self.namespace!r}, ttl={self.ttl!r})"

    # Reading

    def _path(self, key: str) -> str:
        return self._dir_prefix + _file_name(key)

    def _read(self, path: str) -> bytes | None:
        # os.open and os.read, not open(): a file object costs more than reading a small file.
        try:
            fd = os.open(path, _READ_FLAGS)
        except FileNotFoundError:
            return None
        try:
            data = os.read(fd, _FIRST_READ)
            if len(data) == _FIRST_READ:  # a large value: the rest in reads of its size
                parts = [data]
                rest = max(os.fstat(fd).st_size - _FIRST_READ + 1, _FIRST_READ)
                while chunk := os.read(fd, rest):
                    parts.append(chunk)
                data = b"".join(parts)
        finally:
            os.close(fd)
        return data

    def _decode(self, path: str, data: bytes, key: str | None) -> bytes | None:
        """The value in a file's bytes; `None` if expired (the file is then removed)."""
        flags = data[0] if data else -1
        if flags == 0:
            return data[1:]
        if not 0 < flags <= _HAS_EXPIRY | _HAS_KEY:
            raise KVStoreError(f"{path} is not a kvstores file")
        offset = 1
        if flags & _HAS_EXPIRY:
            (expires,) = _EXPIRY.unpack_from(data, offset)
            offset += _EXPIRY.size
            if expires <= time.time():
                self._remove_expired(path, expires)
                return None
        if flags & _HAS_KEY:
            (length,) = _KEY_LENGTH.unpack_from(data, offset)
            offset += _KEY_LENGTH.size
            stored_key = data[offset : offset + length].decode()
            offset += length
            if key is not None and stored_key != key:
                return None  # a different key with the same long name: not ours
        return data[offset:]

    def _mget(self, keys: list[str]) -> list[bytes | None]:
        values: list[bytes | None] = []
        for key in keys:
            path = self._path(key)
            data = self._read(path)
            values.append(None if data is None else self._decode(path, data, key))
        return values

    def _remove_expired(self, path: str, expires: float) -> None:
        # Best effort, and only if the file still holds the expired entry, not a newer write.
        try:
            data = self._read(path)
            if data and data[0] & _HAS_EXPIRY and _EXPIRY.unpack_from(data, 1)[0] == expires:
                os.unlink(path)
        except OSError:
            pass

    # Writing

    def _header(self, key: str, name: str) -> bytes:
        flags = 0
        parts = [b""]
        if self.ttl is not None:
            flags |= _HAS_EXPIRY
            parts.append(_EXPIRY.pack(time.time() + self.ttl))
        if "~" in name:
            flags |= _HAS_KEY
            encoded = key.encode()
            parts += [_KEY_LENGTH.pack(len(encoded)), encoded]
        if not flags:
            return _PLAIN
        parts[0] = bytes([flags])
        return b"".join(parts)

    def _mset(self, items: dict[str, bytes]) -> None:
        if self.ttl is not None and not self._marked:
            self._mark_ttl()
        directory = self._dir
        for key, value in items.items():
            name = _file_name(key)
            temp = os.path.join(
                directory, f"{self._temp_prefix}{threading.get_ident()}-{next(self._temp_ids)}"
            )
            try:
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileNotFoundError:
                os.makedirs(directory, exist_ok=True)
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                try:
                    _write_all(fd, self._header(key, name) + value)
                finally:
                    os.close(fd)
                os.replace(temp, os.path.join(directory, name))
            except BaseException:
                _unlink_quietly(temp)
                raise

    def _mark_ttl(self) -> None:
        os.makedirs(self._dir, exist_ok=True)
        with open(self._marker, "ab"):
            pass
        self._marked = True

    def _mdelete(self, keys: list[str]) -> None:
        for key in keys:
            _unlink_quietly(self._path(key))

    # Listing

    def _yield_keys(self, prefix: str) -> Iterator[str]:
        for keys, _ in self._key_pages(prefix):
            for key in keys:  # noqa: UP028 - a loop beats `yield from` a list on 3.11
                yield key

    async def _ayield_keys(self, prefix: str) -> AsyncIterator[str]:
        # One worker-thread hop per page of names, the first also opening the directory: no
        # hop only to create the iterator, none per key, none to learn that it ended.
        pages = self._key_pages(prefix)
        try:
            last = False
            while not last:
                keys, last = await to_thread(next, pages)
                for key in keys:
                    yield key
        finally:
            # Still running in its thread if this was cancelled mid-hop: it then closes the
            # directory once that hop ends and the generator is dropped.
            with contextlib.suppress(ValueError):
                pages.close()

    def _key_pages(self, prefix: str) -> Generator[tuple[list[str], bool], None, None]:
        """The keys starting with `prefix`, a page of directory entries at a time (pages of
        `page_sizes`), each with whether it is the last: one os.scandir, names only."""
        name_prefix = _escape(prefix) if prefix else ""
        try:
            entries = os.scandir(self._dir)
        except FileNotFoundError:
            yield [], True
            return
        with entries:
            expiring = os.path.exists(self._marker)
            # Headers to read, or long names whose head the prefix runs past: name by name.
            one_by_one = expiring or len(name_prefix) > _HEAD
            for size in page_sizes(self.page_size):
                names = list(map(_NAME_OF, itertools.islice(entries, size)))
                last = len(names) < size
                if one_by_one:
                    yield self._names_keys(names, name_prefix, prefix, expiring), last
                else:
                    yield self._page_keys(names, name_prefix, prefix), last
                if last:
                    return

    def _page_keys(self, names: list[str], name_prefix: str, prefix: str) -> list[str]:
        """The keys among a page of names (no expiry to check, a prefix of at most `_HEAD`
        characters), filtered by the escaped prefix then decoded in one C-level call."""
        if name_prefix:  # a long name's head holds the prefix whole too: it is kept
            names = [name for name in names if name.startswith(name_prefix)]
        joined = "\x00".join(names)
        if (
            _NAME_CHARS.fullmatch(joined) is None  # long names, "~ns", not ours
            or joined.startswith(".")  # temporary files
            or "\x00." in joined
        ):
            return self._names_keys(names, name_prefix, prefix, False)
        keys = _unescape_names(joined, len(names))
        if keys is None:  # a name that does not decode is not ours: one by one
            keys = [key for name in names if (key := _unescape(name)) is not None]
        return keys

    def _names_keys(
        self, names: list[str], name_prefix: str, prefix: str, expiring: bool
    ) -> list[str]:
        return [
            key
            for name in names
            if (key := self._name_key(name, name_prefix, prefix, expiring)) is not None
        ]

    def _name_key(self, name: str, name_prefix: str, prefix: str, expiring: bool) -> str | None:
        """The key of one directory entry if it is a live key starting with `prefix`."""
        if name[0] in ".~":
            return None
        if "~" in name:  # a long name: the key is in the file
            head = name.partition("~")[0]
            if head.startswith(name_prefix) or name_prefix.startswith(head):
                key = self._stored_key(self._dir_prefix + name)
                if key is not None and key.startswith(prefix):
                    return key
            return None
        if not name.startswith(name_prefix) or (
            expiring and self._expired(self._dir_prefix + name)
        ):
            return None
        return _unescape(name)

    def _read_header(self, path: str) -> bytes | None:
        try:
            with open(path, "rb", buffering=0) as file:
                head = file.read(1 + _EXPIRY.size + _KEY_LENGTH.size + 4 * 1024 + 4)
        except FileNotFoundError:
            return None
        return head or None

    def _expired(self, path: str) -> bool:
        head = self._read_header(path)
        if head is None:
            return True  # deleted since it was listed
        return bool(head[0] & _HAS_EXPIRY) and _EXPIRY.unpack_from(head, 1)[0] <= time.time()

    def _stored_key(self, path: str) -> str | None:
        head = self._read_header(path)
        if head is None or not head[0] & _HAS_KEY:
            return None
        offset = 1
        if head[0] & _HAS_EXPIRY:
            if _EXPIRY.unpack_from(head, offset)[0] <= time.time():
                return None
            offset += _EXPIRY.size
        (length,) = _KEY_LENGTH.unpack_from(head, offset)
        offset += _KEY_LENGTH.size
        return head[offset : offset + length].decode()

    def purge_expired(self) -> int:
        """Remove the files of every expired entry in this namespace; returns how many."""
        removed = 0
        try:
            entries = os.scandir(self._dir)
        except FileNotFoundError:
            return 0
        with entries:
            for entry in entries:
                if entry.name[0] in ".~":
                    continue
                head = self._read_header(entry.path)
                if head and head[0] & _HAS_EXPIRY:
                    expires = _EXPIRY.unpack_from(head, 1)[0]
                    if expires <= time.time():
                        self._remove_expired(entry.path, expires)
                        removed += 1
        return removed


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _unlink_quietly(path: str) -> None:
    try:  # noqa: SIM105 - contextlib.suppress costs more than the unlink of a missing file
        os.unlink(path)
    except FileNotFoundError:
        pass
