"""The ``kvstores`` command line, run as a subprocess (``python -m kvstores ...``) on memory,
file and SQLite stores: formats, exit statuses, copy and resume, ping, bench, errors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from kvstores import LocalFileStore, from_url

pytest.importorskip("click")
pytest.importorskip("tqdm")
pytest.importorskip("sqlalchemy")

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["ls", "get", "put", "rm", "copy", "bench", "ping"]
SUMMARY = re.compile(
    r"copied ([\d,]+) keys? \(([\d,]+) bytes?\) in [\d.]+ s; "
    r"skipped ([\d,]+) already in DST, ([\d,]+) vanished from SRC"
)
SMALL_BENCH = ["--keys", "40", "--batches", "1,10", "--rounds", "1", "--max-calls", "10"]
posix_only = pytest.mark.skipif(os.name != "posix", reason="sends SIGINT")


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KVSTORES_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def kv(
    *args: str,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m kvstores ARGS``."""
    return subprocess.run(
        [sys.executable, "-m", "kvstores", *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        env=_env(env),
        cwd=cwd,
        timeout=timeout,
    )


def start(*args: str) -> subprocess.Popen[bytes]:
    """Start ``python -m kvstores ARGS`` with Ctrl-C delivered as KeyboardInterrupt (even if
    this test runs in a shell's background, where SIGINT is ignored and inherited so)."""
    return subprocess.Popen(
        [sys.executable, "-m", "kvstores", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def one_error_line(result: subprocess.CompletedProcess[bytes]) -> str:
    """The single ``kvstores: error: ...`` line of a failed run (no traceback)."""
    assert result.returncode == 1, result
    err = result.stderr.decode()
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("kvstores: error: ")]
    assert len(lines) == 1, err
    return lines[0]


def summary(out: bytes) -> tuple[int, int, int, int]:
    """(copied, bytes, skipped, vanished) of a copy's summary line."""
    match = SUMMARY.search(out.decode())
    assert match, out
    copied, size, skipped, vanished = (int(g.replace(",", "")) for g in match.groups())
    return copied, size, skipped, vanished


def dataset(n: int = 3000) -> dict[str, bytes]:
    """Unicode, awkward and newline keys; values holding every byte value; one empty value."""
    every_byte = bytes(range(256))
    tails = ["ascii", "caf\u00e9", "cafe\u0301", "日本語", "emoji 🎉", "a:b/c%_*?[x]\\"]
    tails.append("new\nline")
    data = {}
    for i in range(n):
        rotated = every_byte[i % 256 :] + every_byte[: i % 256]
        data[f"k{i:05d}/{tails[i % len(tails)]}"] = rotated * (1 + i % 3)
    data["empty"] = b""
    return data


def file_store_with(path: Path, data: Mapping[str, bytes]) -> None:
    store = LocalFileStore(path)
    store.mset(list(data.items()))


def contents(url: str) -> dict[str, bytes]:
    with from_url(url) as store:
        keys = list(store.yield_keys())
        values = store.mget(keys)
    found = {k: v for k, v in zip(keys, values, strict=True) if v is not None}
    assert len(found) == len(keys)
    return found


def key_files(path: Path) -> int:
    """How many keys a LocalFileStore directory holds (names starting with . or ~ are not)."""
    if not path.exists():
        return 0
    return sum(1 for name in os.listdir(path) if not name.startswith((".", "~")))


# Help, version, the missing extra


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
def test_help_for_every_command(command: list[str]) -> None:
    result = kv(*command, "--help")
    assert result.returncode == 0, result
    assert result.stdout.startswith(b"Usage: kvstores")
    assert result.stderr == b""


def test_help_lists_every_command() -> None:
    out = kv("--help").stdout.decode()
    for command in COMMANDS:
        assert re.search(rf"^  {command}\s", out, re.MULTILINE), command


def test_version() -> None:
    result = kv("--version")
    assert result.returncode == 0
    assert result.stdout.decode().startswith("kvstores, version ")


def test_missing_extra_is_one_line_and_exit_2() -> None:
    code = textwrap.dedent(
        """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "tqdm":
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        sys.meta_path.insert(0, Block())
        from kvstores.__main__ import main
        main()
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "ls"], capture_output=True, env=_env(), timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.decode() == (
        'kvstores: the command line needs its extra: pip install "kvstores[cli]"\n'
    )


def test_no_command_shows_the_help_and_exits_2() -> None:
    result = kv()
    assert result.returncode == 2
    assert b"Commands:" in result.stderr


def test_unknown_command_is_a_usage_error() -> None:
    result = kv("frobnicate")
    assert result.returncode == 2
    assert b"No such command" in result.stderr


# ls, get, put, rm


def test_put_get_ls_rm_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kv.db'}"
    every_byte = bytes(range(256))
    assert kv("--url", url, "put", "text", "héllo wörld").returncode == 0
    assert kv("--url", url, "put", "bin", "-", stdin=every_byte).returncode == 0
    assert kv("--url", url, "put", "empty", "-", stdin=b"").returncode == 0
    assert kv("--url", url, "put", "a/1", "x").returncode == 0

    assert kv("--url", url, "get", "text").stdout == "héllo wörld".encode()
    assert kv("--url", url, "get", "bin").stdout == every_byte
    empty = kv("--url", url, "get", "empty")
    assert (empty.returncode, empty.stdout) == (0, b"")
    both = kv("--url", url, "get", "text", "bin")
    assert (both.returncode, both.stdout) == (0, "héllo wörld".encode() + every_byte)

    assert sorted(kv("--url", url, "ls").stdout.decode().splitlines()) == [
        "a/1",
        "bin",
        "empty",
        "text",
    ]
    assert kv("--url", url, "ls", "--prefix", "a/").stdout == b"a/1\n"
    assert len(kv("--url", url, "ls", "--limit", "2").stdout.splitlines()) == 2
    assert kv("--url", url, "ls", "--limit", "0").stdout == b""

    overwrite = kv("--url", url, "put", "text", "new")
    assert overwrite.returncode == 0
    assert kv("--url", url, "get", "text").stdout == b"new"

    removed = kv("--url", url, "rm", "text", "bin", "never-there")
    assert (removed.returncode, removed.stdout, removed.stderr) == (0, b"", b"")
    assert sorted(kv("--url", url, "ls").stdout.split()) == [b"a/1", b"empty"]


def test_get_missing_keys_prints_the_found_ones_then_exits_3(tmp_path: Path) -> None:
    url = f"file://{tmp_path}"
    file_store_with(tmp_path, {"a": b"A", "b": b"B"})
    result = kv("--url", url, "get", "a", "nope", "b", "gone\nkey")
    assert result.returncode == 3
    assert result.stdout == b"AB"
    assert result.stderr.decode().splitlines() == [
        "kvstores: not found: nope",
        'kvstores: not found: "gone\\nkey"',
    ]


def test_get_json_lines(tmp_path: Path) -> None:
    file_store_with(tmp_path, {"t": "π ≈ 3.14".encode(), "b": b"\xff\x00\x01", "e": b""})
    result = kv("--url", f"file://{tmp_path}", "get", "--json", "t", "b", "e", "missing")
    assert result.returncode == 3
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert lines == [
        {"key": "t", "value": "π ≈ 3.14"},
        {"key": "b", "value_base64": "/wAB"},
        {"key": "e", "value": ""},
        {"key": "missing", "value": None},
    ]


def test_ls_quotes_awkward_keys_and_null_separates(tmp_path: Path) -> None:
    keys = ["plain é 日本", "new\nline", "cr\rx", '"quoted', 'in"side', "tab\tkey", "back\\slash"]
    keys += ["nel\x85x", "ls\u2028x", "del\x7fx"]
    file_store_with(tmp_path, dict.fromkeys(keys, b"v"))
    url = f"file://{tmp_path}"

    lines = kv("--url", url, "ls").stdout.decode("utf-8").split("\n")
    assert lines[-1] == ""
    lines = lines[:-1]
    assert len(lines) == len(keys)  # one line per key, whatever the key holds
    decoded = [json.loads(line) if line.startswith('"') else line for line in lines]
    assert sorted(decoded) == sorted(keys)
    as_is = {"plain é 日本", 'in"side', "back\\slash"}
    assert as_is <= set(lines)  # only keys that need it are quoted

    raw = kv("--url", url, "ls", "-0").stdout
    assert raw.endswith(b"\0")
    assert sorted(raw[:-1].decode().split("\0")) == sorted(keys)
    assert kv("--url", url, "ls", "--null", "--prefix", "new").stdout == b"new\nline\0"


def test_put_then_get_round_trips_binary_through_stdin(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kv.db'}"
    blob = os.urandom(100_000) + b"\r\n\x00"
    assert kv("--url", url, "put", "blob", "-", stdin=blob).returncode == 0
    assert kv("--url", url, "get", "blob").stdout == blob


def test_default_store_is_kvstores_db_in_the_current_directory(tmp_path: Path) -> None:
    assert kv("put", "k", "v", cwd=tmp_path).returncode == 0
    assert (tmp_path / "kvstores.db").exists()
    assert kv("get", "k", cwd=tmp_path).stdout == b"v"
    assert contents(f"sqlite:///{tmp_path / 'kvstores.db'}") == {"k": b"v"}


def test_url_precedence_option_then_env_then_default(tmp_path: Path) -> None:
    (tmp_path / "env").mkdir()
    (tmp_path / "opt").mkdir()
    env = {"KVSTORES_URL": f"file://{tmp_path / 'env'}"}
    assert kv("put", "k", "from-env", env=env, cwd=tmp_path).returncode == 0
    assert kv("--url", f"file://{tmp_path / 'opt'}", "put", "k", "opt", env=env).returncode == 0
    assert kv("get", "k", env=env).stdout == b"from-env"
    assert kv("get", "k", "--url", f"file://{tmp_path / 'opt'}", env=env).stdout == b"opt"
    sub = kv("--url", "memory://", "get", "k", "--url", f"file://{tmp_path / 'opt'}")
    assert sub.stdout == b"opt"  # the command's --url wins over the global one
    assert not (tmp_path / "kvstores.db").exists()


def test_reading_commands_do_not_create_the_default_file(tmp_path: Path) -> None:
    listing = kv("ls", cwd=tmp_path)
    assert (listing.returncode, listing.stdout) == (0, b"")
    assert b"note: no kvstores.db" in listing.stderr
    assert kv("get", "k", cwd=tmp_path).returncode == 3
    assert kv("rm", "k", cwd=tmp_path).returncode == 0
    assert not (tmp_path / "kvstores.db").exists()


def test_memory_store_lives_one_process() -> None:
    assert kv("--url", "memory://", "put", "k", "v").returncode == 0
    assert kv("--url", "memory://", "get", "k").returncode == 3
    assert kv("--url", "memory://", "ls").stdout == b""


# copy


def test_copy_file_to_sqlite_and_back(tmp_path: Path) -> None:
    data = dataset()
    total_bytes = sum(map(len, data.values()))
    file_store_with(tmp_path / "src", data)
    src = f"file://{tmp_path / 'src'}"
    sql = f"sqlite:///{tmp_path / 'copy.db'}"
    back = f"file://{tmp_path / 'back'}"

    there = kv("copy", src, sql, "--batch", "333")
    assert there.returncode == 0, there
    assert summary(there.stdout) == (len(data), total_bytes, 0, 0)
    assert there.stderr == b""  # no progress bar when stderr is not a terminal
    assert contents(sql) == data

    home = kv("copy", sql, back)
    assert home.returncode == 0, home
    assert summary(home.stdout) == (len(data), total_bytes, 0, 0)
    assert contents(back) == data

    again = kv("copy", "--resume", sql, back, "--quiet")
    assert summary(again.stdout) == (0, 0, len(data), 0)


def test_copy_with_prefix(tmp_path: Path) -> None:
    file_store_with(tmp_path / "src", {"a/1": b"1", "a/2": b"2", "b/1": b"3", "a": b"4"})
    dst = f"sqlite:///{tmp_path / 'dst.db'}"
    result = kv("copy", f"file://{tmp_path / 'src'}", dst, "--prefix", "a/")
    assert summary(result.stdout) == (2, 2, 0, 0)
    assert contents(dst) == {"a/1": b"1", "a/2": b"2"}


def test_copy_overwrites_unless_resume(tmp_path: Path) -> None:
    file_store_with(tmp_path / "src", {"k": b"new", "other": b"o"})
    file_store_with(tmp_path / "dst", {"k": b"old", "theirs": b"t"})
    src, dst = f"file://{tmp_path / 'src'}", f"file://{tmp_path / 'dst'}"

    resumed = kv("copy", "--resume", src, dst)
    assert summary(resumed.stdout) == (1, 1, 1, 0)
    assert contents(dst) == {"k": b"old", "other": b"o", "theirs": b"t"}

    plain = kv("copy", src, dst)
    assert summary(plain.stdout) == (2, 4, 0, 0)
    assert contents(dst) == {"k": b"new", "other": b"o", "theirs": b"t"}


def test_copy_resume_after_a_partial_copy(tmp_path: Path) -> None:
    data = dataset(2000)
    file_store_with(tmp_path / "src", data)
    src, dst = f"file://{tmp_path / 'src'}", f"sqlite:///{tmp_path / 'dst.db'}"
    first = kv("copy", src, dst, "--prefix", "k00")  # k00000 .. k00999: half of it
    assert summary(first.stdout)[0] == 1000

    rest = kv("copy", "--resume", src, dst, "--batch", "128")
    assert summary(rest.stdout) == (
        len(data) - 1000,
        sum(len(v) for k, v in data.items() if not k.startswith("k00")),
        1000,
        0,
    )
    assert contents(dst) == data


@posix_only
def test_copy_resume_after_ctrl_c(tmp_path: Path) -> None:
    data = dataset()
    with from_url(f"sqlite:///{tmp_path / 'src.db'}") as source:
        source.mset(list(data.items()))
    src, dst_dir = f"sqlite:///{tmp_path / 'src.db'}", tmp_path / "dst"
    dst = f"file://{dst_dir}"

    # 25 keys a batch, at most 500 keys/s: 6 s for everything; interrupted after 100 keys.
    process = start("copy", src, dst, "--batch", "25", "--max-rate", "500")
    try:
        deadline = time.monotonic() + 60
        while key_files(dst_dir) < 100 and process.poll() is None:
            assert time.monotonic() < deadline, "the copy never started"
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, (out, err)
    assert out.startswith(b"interrupted: copied ")
    assert b"--resume" in err
    assert b"Traceback" not in err
    copied_before = summary(out)[0]
    present = key_files(dst_dir)
    assert 100 <= present < len(data)
    assert copied_before <= present  # the batch in flight may be partly written

    resumed = kv("copy", "--resume", src, dst)
    assert resumed.returncode == 0, resumed
    copied, _, skipped, vanished = summary(resumed.stdout)
    assert (copied, skipped, vanished) == (len(data) - present, present, 0)
    assert contents(dst) == data


def test_copy_to_itself_is_a_usage_error(tmp_path: Path) -> None:
    url = f"file://{tmp_path}"
    result = kv("copy", url, url)
    assert result.returncode == 2
    assert b"same store" in result.stderr


def test_copy_from_an_unreachable_store_masks_the_password(tmp_path: Path) -> None:
    result = kv("copy", "redis://me:hunter2@127.0.0.1:1/0", f"file://{tmp_path}")
    line = one_error_line(result)
    assert "hunter2" not in (result.stdout + result.stderr).decode()
    assert "***" in line


# ping


def test_ping_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kv.db'}"
    result = kv("ping", url)
    assert result.returncode == 0, result
    lines = result.stdout.decode().splitlines()
    assert lines[0] == f"store:    {url} (SQLByteStore)"
    assert [line.split(":")[0] for line in lines] == [
        "store",
        "connect",
        "server",
        "write",
        "read",
        "delete",
        "ok",
    ]
    assert re.fullmatch(r"server:   sqlite \d+\.\d+\.\d+", lines[2])
    for line in lines[1], *lines[3:6]:
        assert re.fullmatch(r"\w+: +\d+\.\d\d ms", line), line
    assert contents(url) == {}  # nothing left behind


def test_ping_memory_and_file(tmp_path: Path) -> None:
    memory = kv("ping", "memory://")
    assert memory.returncode == 0
    assert b"server:   unknown" in memory.stdout
    result = kv("ping", f"file://{tmp_path}")
    assert result.returncode == 0, result
    assert list(tmp_path.rglob("*")) == [tmp_path / "~ns"]  # its scratch namespace is gone


def test_ping_bad_sqlite_path_fails_cleanly(tmp_path: Path) -> None:
    result = kv("ping", f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'kv.db'}")
    line = one_error_line(result)
    assert line.startswith("kvstores: error: ping failed at connect: ")
    assert not (tmp_path / "no").exists()


def test_ping_unreachable_redis_fails_fast_and_masks_the_password() -> None:
    began = time.monotonic()
    result = kv("ping", "redis://user:secret@127.0.0.1:1/0", timeout=30)
    assert time.monotonic() - began < 10
    line = one_error_line(result)
    assert b"secret" not in result.stdout + result.stderr
    try:
        import kvstores.redis  # noqa: F401
    except ImportError:
        assert "kvstores[redis]" in line
    else:
        assert "ping failed at connect" in line
        assert "unavailable" in line
        assert "redis://user:***@127.0.0.1:1/0" in line


def test_ping_timeout_option() -> None:
    result = kv("ping", "--timeout", "0.5", "redis://127.0.0.1:1/0", timeout=30)
    assert result.returncode == 1
    assert kv("ping", "--timeout", "0", "memory://").returncode == 2


# bench


def test_bench_memory() -> None:
    result = kv("bench", "memory://", *SMALL_BENCH)
    assert result.returncode == 0, result
    out = result.stdout.decode()
    assert out.startswith("bench memory:// (InMemoryByteStore), in the scratch namespace ")
    table = out[out.index("backend ") :].splitlines()
    assert table[0].split() == ["backend", "op", "batch", "keys/s", "ms/call"]
    rows = [line.split() for line in table[2:]]
    assert {(row[1], row[2]) for row in rows} >= {("mset", "1"), ("amget_hits", "10")}
    assert ("yield_keys", "-") in {(row[1], row[2]) for row in rows}
    assert all(float(row[3].replace(",", "")) > 0 for row in rows)


def test_bench_options(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kv.db'}"
    result = kv("bench", url, *SMALL_BENCH, "--ops", "mget", "--no-async", "--markdown")
    assert result.returncode == 0, result
    rows = [line for line in result.stdout.decode().splitlines() if line.startswith("| ")]
    assert rows[0] == "| backend | op | batch | keys/s | ms/call |"
    assert [row.split(" | ")[1:3] for row in rows[1:]] == [
        ["mget_hits", "1"],
        ["mget_hits", "10"],
        ["mget_misses", "1"],
        ["mget_misses", "10"],
    ]
    assert kv("bench", url, "--ops", "nope").returncode == 2
    assert kv("bench", url, "--batches", "0").returncode == 2


def test_bench_leaves_the_users_keys_alone_and_nothing_behind(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kv.db'}"
    with from_url(url) as store:
        store.mset([("mine", b"keep me"), ("a/0000000", b"a workload key name")])
    with from_url(url + "?namespace=other") as other:
        other.mset([("theirs", b"too")])
    result = kv("bench", url, *SMALL_BENCH)
    assert result.returncode == 0, result
    assert contents(url) == {"mine": b"keep me", "a/0000000": b"a workload key name"}
    assert contents(url + "?namespace=other") == {"theirs": b"too"}
    import sqlite3

    with sqlite3.connect(tmp_path / "kv.db") as db:
        (rows,) = db.execute("SELECT count(*) FROM kvstores").fetchone()
    assert rows == 3


def test_bench_on_files_removes_its_namespace(tmp_path: Path) -> None:
    file_store_with(tmp_path, {"mine": b"1"})
    result = kv("bench", f"file://{tmp_path}", *SMALL_BENCH)
    assert result.returncode == 0, result
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["mine", "~ns"]


@posix_only
@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_bench_interrupted_cleans_up(tmp_path: Path, signal_number: int) -> None:
    file_store_with(tmp_path, {"mine": b"1"})
    process = start("bench", f"file://{tmp_path}", "--keys", "3000", "--rounds", "50")
    try:
        deadline = time.monotonic() + 60
        while process.poll() is None:
            namespaces = list((tmp_path / "~ns").glob("kvstores-bench-*"))
            if namespaces and key_files(namespaces[0]) >= 100:
                break
            assert time.monotonic() < deadline, "the benchmark never wrote"
            time.sleep(0.02)
        process.send_signal(signal_number)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, (out, err)
    assert b"kvstores: interrupted" in err
    assert b"Traceback" not in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["mine", "~ns"]


# Errors


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--url", "nosuch://u:pw1234@h/x", "ls"], "unknown kvstores URL scheme 'nosuch'"),
        (["--url", "not a url", "ls"], "not a store URL"),
        (["--url", "memory://", "put", "x" * 1025, "v"], "1025 characters long"),
        (["--url", "memory://", "get", ""], "empty"),
        (["ping", "sqlite:///kv.db?ttl=abc"], "ttl='abc'"),
        (["bench", "postgresql://u:pw1234@127.0.0.1:1/db", "--keys", "20"], ""),
    ],
)
def test_errors_are_one_masked_line(args: list[str], expected: str, tmp_path: Path) -> None:
    result = kv(*args, cwd=tmp_path)
    line = one_error_line(result)
    assert expected in line
    assert b"pw1234" not in result.stdout + result.stderr


def test_password_from_the_environment_is_masked() -> None:
    env = {"KVSTORES_URL": "mysql://admin:s3cr3t-pw@127.0.0.1:1/db?timeout=2"}
    result = kv("ls", env=env)
    one_error_line(result)
    assert b"s3cr3t-pw" not in result.stdout + result.stderr


def test_debug_shows_the_traceback_masked() -> None:
    result = kv("--debug", "ping", "redis://user:secret@127.0.0.1:1/0", timeout=30)
    assert result.returncode == 1
    assert b"Traceback (most recent call last)" in result.stderr
    assert result.stderr.decode().splitlines()[-1].startswith("kvstores: error: ")
    assert b"secret" not in result.stdout + result.stderr


def test_broken_pipe_is_quiet(tmp_path: Path) -> None:
    file_store_with(tmp_path, {f"k{i}": b"" for i in range(20_000)})
    process = subprocess.Popen(
        [sys.executable, "-m", "kvstores", "--url", f"file://{tmp_path}", "ls"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    assert process.stdout is not None
    assert process.stderr is not None
    process.stdout.readline()
    process.stdout.close()  # like `kvstores ls | head -1`
    err = process.stderr.read()
    process.wait(timeout=60)
    assert b"Traceback" not in err
    assert b"error" not in err
