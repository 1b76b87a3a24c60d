"""The conformance kit on `LocalFileStore`, plus what only a file store must show: every key
stays inside the root, writes are atomic, expired files are reclaimed."""

from __future__ import annotations

import hashlib
import os
import struct
import time
import uuid
from pathlib import Path

import pytest

from kvstores import ByteStore, from_url
from kvstores.file import LocalFileStore
from kvstores.testing import AsyncByteStoreTests, ByteStoreTests, StoreFactory, make_state_machine
from kvstores.testing.conformance import AWKWARD_KEYS


@pytest.fixture
def make_store(tmp_path: Path) -> StoreFactory:
    root = tmp_path / "store"
    return lambda namespace=None, ttl=None: LocalFileStore(root, namespace=namespace, ttl=ttl)


# The kit's raw storage hooks: plain file I/O under the layout README and kvstores/file.py
# document, computed here from those rules (never with the store's own helpers).

_NAME_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-.")
_HAS_EXPIRY, _HAS_KEY = 1, 2  # header flags: an 8-byte big-endian float; a 4-byte length, key


def documented_file_name(text: str) -> str:
    """`[a-z0-9_-]` and a non-leading `.` as they are, every other character `%xx` per UTF-8
    byte; a name over 140 characters: its first 75, `~`, and the SHA-256 of the text."""
    name = "".join(c if c in _NAME_SAFE else "".join(f"%{b:02x}" for b in c.encode()) for c in text)
    if name.startswith("."):
        name = "%2e" + name[1:]
    if len(name) > 140:
        name = f"{name[:75]}~{hashlib.sha256(text.encode()).hexdigest()}"
    return name


class LocalFileRaw:
    root: Path

    @pytest.fixture(autouse=True)
    def _raw_root(self, tmp_path: Path) -> None:
        self.root = tmp_path / "store"  # make_store's root

    def raw_path(self, store: ByteStore, key: str) -> Path:
        assert isinstance(store, LocalFileStore)
        directory = self.root
        if store.namespace is not None:
            directory = directory / "~ns" / documented_file_name(store.namespace)
        return directory / documented_file_name(key)

    def raw_get(self, store: ByteStore, key: str) -> bytes | None:
        path = self.raw_path(store, key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        flags, offset = data[0], 1
        assert flags <= _HAS_EXPIRY | _HAS_KEY, f"{path.name}: header {flags}"
        if flags & _HAS_EXPIRY:
            offset += 8
        if flags & _HAS_KEY:
            (length,) = struct.unpack_from(">I", data, offset)
            stored_key = data[offset + 4 : offset + 4 + length].decode()
            assert stored_key == key, f"{path.name} holds the key {stored_key!r}"
            offset += 4 + length
        else:
            assert "~" not in path.name, f"{path.name}: a long name without its key"
        return data[offset:]

    def raw_set(self, store: ByteStore, key: str, value: bytes) -> None:
        path = self.raw_path(store, key)
        header = b"\x00"
        if "~" in path.name:
            encoded = key.encode()
            header = bytes([_HAS_KEY]) + struct.pack(">I", len(encoded)) + encoded
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(header + value)

    def raw_delete(self, store: ByteStore, key: str) -> None:
        self.raw_path(store, key).unlink(missing_ok=True)


class TestLocalFileStore(LocalFileRaw, ByteStoreTests):
    pass


class TestLocalFileStoreAsync(LocalFileRaw, AsyncByteStoreTests):
    pass


def _fresh_store() -> LocalFileStore:
    return LocalFileStore(
        Path(os.environ.get("TMPDIR", "/tmp")) / "kvstores-stateful", namespace=uuid.uuid4().hex
    )


TestLocalFileStateful = make_state_machine(_fresh_store).TestCase


def _files_under(path: Path) -> set[Path]:
    return {p for p in path.rglob("*") if p.is_file()}


TRAVERSAL_KEYS = [
    "../outside",
    "../../etc/passwd",
    "..",
    ".",
    "/etc/passwd",
    "/",
    "a/../../b",
    "..\\..\\outside",
    "~/x",
    "$HOME",
    "..%2f..%2fescaped",
    "%2e%2e/x",
    "a" * 1024,
    "/" * 1024,
    "." * 1024,
]


def test_every_key_stays_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "sentinel").write_bytes(b"untouched")
    store = LocalFileStore(root)
    store.mset([(k, k.encode()) for k in TRAVERSAL_KEYS + AWKWARD_KEYS])
    outside = _files_under(tmp_path) - _files_under(root)
    assert outside == {tmp_path / "sentinel"}
    for path in _files_under(root):
        assert path.parent == root  # flat: no key creates a directory
        assert path.resolve().is_relative_to(root.resolve())
    assert store.mget(TRAVERSAL_KEYS) == [k.encode() for k in TRAVERSAL_KEYS]
    assert sorted(store.yield_keys()) == sorted(set(TRAVERSAL_KEYS + AWKWARD_KEYS))
    store.mdelete(TRAVERSAL_KEYS + AWKWARD_KEYS)
    assert _files_under(root) == set()
    assert (tmp_path / "sentinel").read_bytes() == b"untouched"


def test_namespaces_stay_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for namespace in ["..", "../..", "/etc", "a/../../b", "." * 256]:
        LocalFileStore(root, namespace=namespace).mset([("k", b"v")])
    assert all(p.resolve().is_relative_to(root.resolve()) for p in _files_under(tmp_path))


def test_file_names_are_case_and_normalisation_proof(tmp_path: Path) -> None:
    # On a case-insensitive or normalising filesystem (macOS, Windows) these would collide if the
    # names kept case or non-ASCII characters; the escaping gives distinct lowercase ASCII names.
    store = LocalFileStore(tmp_path)
    keys = ["Key", "key", "KEY", "é", "e\u0301"]
    store.mset([(k, k.encode()) for k in keys])
    names = os.listdir(tmp_path)
    assert len({n.lower() for n in names}) == len(keys)
    assert all(n.isascii() for n in names)


def test_readable_file_names(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path)
    store.mset([("model-x:v1/0123abcd", b"v")])
    assert os.listdir(tmp_path) == ["model-x%3av1%2f0123abcd"]


def test_write_is_atomic_and_leaves_no_temporary_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalFileStore(tmp_path)
    store.mset([("k", b"old")])

    def failing_replace(src: str, dst: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk on fire"):
        store.mset([("k", b"new")])
    monkeypatch.undo()
    assert store.mget(["k"]) == [b"old"]
    assert os.listdir(tmp_path) == ["k"]


def test_data_persists_across_instances_and_urls(tmp_path: Path) -> None:
    LocalFileStore(tmp_path, namespace="n").mset([("k", b"v")])
    assert from_url(f"file://{tmp_path}?namespace=n").mget(["k"]) == [b"v"]
    assert from_url(f"file://{tmp_path}").mget(["k"]) == [None]


def test_relative_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = from_url("file://rel/dir")
    assert isinstance(store, LocalFileStore)
    store.mset([("k", b"v")])
    assert (tmp_path / "rel" / "dir" / "k").exists()


def test_expired_files_are_removed(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path, ttl=0.05)
    store.mset([("a", b"1"), ("b", b"2"), ("c" * 1024, b"3")])
    time.sleep(0.1)
    assert store.mget(["a"]) == [None]
    assert not (tmp_path / "a").exists()  # removed lazily by the read
    assert store.purge_expired() == 2
    assert [n for n in os.listdir(tmp_path) if not n.startswith("~")] == []


def test_long_keys_share_a_head_but_not_a_file(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path)
    keys = ["x" * 500 + "1", "x" * 500 + "2", "x" * 100]
    store.mset([(k, k[-1].encode()) for k in keys])
    assert store.mget(keys) == [b"1", b"2", b"x"]
    assert sorted(store.yield_keys(prefix="x" * 200)) == sorted(keys[:2])
    assert sorted(store.yield_keys(prefix="x" * 500 + "2")) == [keys[1]]


def test_unknown_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "k").write_bytes(b"\x7fjunk")
    with pytest.raises(Exception, match="not a kvstores file"):
        LocalFileStore(tmp_path).mget(["k"])


@pytest.mark.parametrize("prefix", ["", "k", "k/1", "é"])
def test_listing_pages_skip_files_that_are_not_keys(tmp_path: Path, prefix: str) -> None:
    """Listing decodes a page of names at once; a page holding a file that is not a key's
    (a temporary file, a namespace, a name with a backslash or a bad escape) must lose only
    that file, on whichever page it falls."""
    store = LocalFileStore(tmp_path)
    other = LocalFileStore(tmp_path, namespace="other")
    keys = [f"k/{i}" for i in range(2500)] + ["é/1", "k\n1", "k" + "\u00e9" * 300]
    store.mset([(k, b"v") for k in keys])
    other.mset([("k/x", b"v")])
    for junk in [".tmp-1-2-3", "k%2fbad\\n", "k%zz", "k%ff", "k%2f%00", "k\\x41", "é%2f2"]:
        (tmp_path / junk).write_bytes(b"\x00v")
    expected = sorted(k for k in keys if k.startswith(prefix))
    assert sorted(store.yield_keys(prefix=prefix)) == expected
    assert list(other.yield_keys(prefix=prefix)) == (["k/x"] if "k/x".startswith(prefix) else [])


def test_listing_with_a_prefix_longer_than_a_long_names_head(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path)
    keys = ["%" * 300 + "a", "%" * 300 + "b", "%" * 30]  # "%" escapes to 3 characters
    store.mset([(k, b"v") for k in keys])
    assert sorted(store.yield_keys(prefix="%" * 100)) == sorted(keys[:2])
    assert list(store.yield_keys(prefix="%" * 300 + "b")) == [keys[1]]


def test_async_listing_pages_match_the_sync_listing(tmp_path: Path) -> None:
    """`ayield_keys` runs a page of names per worker-thread hop (pages growing from
    `page_size`): every page boundary, prefix and early stop must list what the sync one does."""
    import asyncio

    store = LocalFileStore(tmp_path)
    store.page_size = 3
    keys = [f"k/{i}" for i in range(100)] + ["j/1", "k" + "é" * 200]
    store.mset([(k, b"v") for k in keys])
    (tmp_path / ".tmp-1-2-3").write_bytes(b"\x00v")

    async def collect(prefix: str | None, stop: int | None = None) -> list[str]:
        found = []
        async for key in store.ayield_keys(prefix=prefix):
            found.append(key)
            if len(found) == stop:
                break
        return found

    for prefix in (None, "k", "k/1", "j", "x"):
        expected = sorted(store.yield_keys(prefix=prefix))
        assert sorted(asyncio.run(collect(prefix))) == expected
        assert sorted(store.yield_keys(prefix=prefix)) == sorted(
            k for k in keys if k.startswith(prefix or "")
        )
    assert len(asyncio.run(collect(None, stop=5))) == 5
    missing = LocalFileStore(tmp_path / "missing")
    assert list(missing.yield_keys()) == []

    async def collect_missing() -> list[str]:
        return [key async for key in missing.ayield_keys()]

    assert asyncio.run(collect_missing()) == []


@pytest.mark.parametrize("ttl", [None, 100.0])
def test_values_around_the_first_read_size_come_back_whole(
    tmp_path: Path, ttl: float | None
) -> None:
    """A file is read with one 64 KiB read, then, if that filled, reads of its remaining
    size: values at and across that boundary come back whole."""
    store = LocalFileStore(tmp_path, ttl=ttl)
    sizes = [0, 1, 65535, 65536, 65537, 131072, 131073, 3_000_001]
    values = {f"k{size}": os.urandom(size) for size in sizes}
    store.mset(list(values.items()))
    assert store.mget(list(values)) == list(values.values())
    assert store.mget(["absent"]) == [None]
