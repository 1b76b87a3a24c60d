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
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from kvstores import InMemoryByteStore, LocalFileStore, from_url

pytest.importorskip("click")
pytest.importorskip("tqdm")
pytest.importorskip("sqlalchemy")

from kvstores import cli  # after the importorskips: needs click and tqdm

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


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """For tests calling `kvstores.cli.run` in this process: restore what it changes."""
    for name in [n for n in os.environ if n.startswith("KVSTORES_")]:
        monkeypatch.delenv(name)
    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)


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


@pytest.mark.parametrize("command", [["ls"], ["get", "k"], ["rm", "k"]])
def test_reading_commands_refuse_a_missing_default_database(
    tmp_path: Path, command: list[str]
) -> None:
    result = kv(*command, cwd=tmp_path)
    line = one_error_line(result)
    assert f"no SQLite database at {tmp_path / 'kvstores.db'}" in line
    assert "--url" in line  # it says where the default comes from
    assert result.stdout == b""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["ls"], ["get", "k"], ["rm", "k"]])
@pytest.mark.parametrize("given_by", ["--url", "--url after", "KVSTORES_URL"])
def test_reading_commands_refuse_a_missing_sqlite_database(
    tmp_path: Path, command: list[str], given_by: str
) -> None:
    path = tmp_path / "sub" / "kv.db"
    url = f"sqlite:///{path}"
    if given_by == "--url":
        result = kv("--url", url, *command, cwd=tmp_path)
    elif given_by == "--url after":
        result = kv(*command, "--url", url, cwd=tmp_path)
    else:
        result = kv(*command, env={"KVSTORES_URL": url}, cwd=tmp_path)
    line = one_error_line(result)
    assert f"no SQLite database at {path}" in line
    assert list(tmp_path.iterdir()) == []  # no file, no directory


def test_relative_sqlite_path_is_named_in_full(tmp_path: Path) -> None:
    line = one_error_line(kv("--url", "sqlite:///rel/kv.db?namespace=a", "ls", cwd=tmp_path))
    assert f"no SQLite database at {tmp_path / 'rel' / 'kv.db'}" in line
    assert list(tmp_path.iterdir()) == []


def test_in_memory_sqlite_is_no_missing_file(tmp_path: Path) -> None:
    result = kv("--url", "sqlite://", "ls", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, b""), result
    assert list(tmp_path.iterdir()) == []


def test_copy_refuses_a_missing_sqlite_source_and_creates_nothing(tmp_path: Path) -> None:
    src, dst = tmp_path / "src.db", tmp_path / "dst.db"
    result = kv("copy", f"sqlite:///{src}", f"sqlite:///{dst}")
    line = one_error_line(result)
    assert f"SRC: no SQLite database at {src}" in line
    assert list(tmp_path.iterdir()) == []


def test_put_and_copy_dst_create_the_database(tmp_path: Path) -> None:
    assert kv("put", "k", "v", cwd=tmp_path).returncode == 0
    default = tmp_path / "kvstores.db"
    assert default.exists()
    copied = kv("copy", f"sqlite:///{default}", f"sqlite:///{tmp_path / 'new' / 'x.db'}")
    assert copied.returncode == 1  # SQLite does not create the directory
    result = kv("copy", f"sqlite:///{default}", f"sqlite:///{tmp_path / 'x.db'}")
    assert summary(result.stdout) == (1, 1, 0, 0)
    assert contents(f"sqlite:///{tmp_path / 'x.db'}") == {"k": b"v"}


def kv_on_terminal(
    *args: str, cwd: Path | None = None, timeout: float = 60
) -> tuple[int, bytes, bytes]:
    """Run ``python -m kvstores ARGS`` with stdout on a pseudo-terminal (in raw mode, so the
    bytes read are those written); return (exit status, stdout, stderr)."""
    import pty
    import select
    import tty

    master, slave = pty.openpty()
    tty.setraw(slave)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "kvstores", *args],
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=subprocess.PIPE,
            env=_env(),
            cwd=cwd,
        )
        os.close(slave)
        slave = -1
        out = bytearray()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 0.1)[0]:
                if process.poll() is not None and not select.select([master], [], [], 0.1)[0]:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: no process has the terminal open any more
                break
            if not chunk:
                break
            out += chunk
        _, err = process.communicate(timeout=timeout)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    return process.returncode, bytes(out), err


@pytest.mark.skipif(os.name != "posix", reason="needs a pseudo-terminal")
def test_get_on_a_terminal_ends_each_value_with_a_newline(tmp_path: Path) -> None:
    # The README's quick start: kvstores put hello world && kvstores get hello && kvstores ls
    assert kv("put", "hello", "world", cwd=tmp_path).returncode == 0
    assert kv_on_terminal("get", "hello", cwd=tmp_path) == (0, b"world\n", b"")
    assert kv_on_terminal("ls", cwd=tmp_path) == (0, b"hello\n", b"")

    assert kv("put", "line", "text\n", cwd=tmp_path).returncode == 0
    assert kv("put", "empty", "-", cwd=tmp_path).returncode == 0
    status, out, _ = kv_on_terminal("get", "hello", "line", "empty", "nope", cwd=tmp_path)
    assert (status, out) == (3, b"world\ntext\n\n")  # a newline only where one is missing
    status, out, _ = kv_on_terminal("get", "--json", "hello", cwd=tmp_path)
    assert (status, json.loads(out)) == (0, {"key": "hello", "value": "world"})


def test_get_into_a_pipe_or_a_file_is_byte_exact(tmp_path: Path) -> None:
    assert kv("put", "doc:1", "no newline", cwd=tmp_path).returncode == 0
    assert kv("get", "doc:1", cwd=tmp_path).stdout == b"no newline"  # a pipe
    with open(tmp_path / "doc.bin", "wb") as file:
        result = subprocess.run(
            [sys.executable, "-m", "kvstores", "get", "doc:1"],
            stdin=subprocess.DEVNULL,
            stdout=file,
            env=_env(),
            cwd=tmp_path,
            timeout=60,
        )
    assert result.returncode == 0
    assert (tmp_path / "doc.bin").read_bytes() == b"no newline"


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


class _Bars:
    """Records the keyword arguments of every progress bar the CLI makes (still drawn)."""

    def __init__(self) -> None:
        self.made: list[dict[str, object]] = []
        self.real = cli.tqdm

    def __call__(self, *args: object, **kwargs: object) -> object:
        self.made.append(kwargs)
        return self.real(*args, **kwargs)


@pytest.fixture
def bars(monkeypatch: pytest.MonkeyPatch) -> _Bars:
    recorder = _Bars()
    monkeypatch.setattr(cli, "tqdm", recorder)
    monkeypatch.setattr(cli, "show_progress", lambda quiet: not quiet)  # as on a terminal
    return recorder


def _copy_in_process(monkeypatch: pytest.MonkeyPatch, source: InMemoryByteStore, *args: str) -> int:
    """`kvstores copy memory://source ...` in this process, from `source`."""

    def opening(url: str, **options: object) -> object:
        return source if url == "memory://source" else from_url(url, **options)

    monkeypatch.setattr(cli, "from_url", opening)
    return cli.run(["copy", "memory://source", *args])


def test_copy_bar_has_a_total_when_the_source_counts(
    tmp_path: Path,
    in_process: None,
    bars: _Bars,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = InMemoryByteStore()
    source.mset([("a/1", b"1"), ("a/2", b"2"), ("a/3", b"3"), ("b/1", b"4")])
    dst = f"sqlite:///{tmp_path / 'dst.db'}"
    assert _copy_in_process(monkeypatch, source, dst, "--prefix", "a/", "--batch", "2") == 0
    assert [bar["total"] for bar in bars.made] == [3]
    captured = capsys.readouterr()
    assert "3/3" in captured.err  # the bar: done out of the total, with an ETA
    assert summary(captured.out.encode()) == (3, 3, 0, 0)

    assert _copy_in_process(monkeypatch, source, dst, "--quiet") == 0
    assert bars.made[-1]["disable"] is True  # --quiet: no bar


def test_copy_bar_without_a_count_has_no_total(
    tmp_path: Path,
    in_process: None,
    bars: _Bars,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = InMemoryByteStore()
    source.mset([("k", b"v")])
    monkeypatch.setattr(source, "count_keys", lambda prefix=None: None)
    assert _copy_in_process(monkeypatch, source, f"sqlite:///{tmp_path / 'dst.db'}") == 0
    assert [bar["total"] for bar in bars.made] == [None]
    assert summary(capsys.readouterr().out.encode()) == (1, 1, 0, 0)


def test_copy_bar_total_from_a_sqlite_source(
    tmp_path: Path,
    in_process: None,
    bars: _Bars,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from kvstores.sql import SQLByteStore

    src = f"sqlite:///{tmp_path / 'src.db'}"
    with from_url(src) as store:
        store.mset([("p/1", b"1"), ("p/2", b"2"), ("q", b"3")])
    asked: list[str | None] = []

    def count_keys(self: SQLByteStore, *, prefix: str | None = None) -> int:
        asked.append(prefix)
        return 2

    monkeypatch.setattr(SQLByteStore, "count_keys", count_keys)
    assert cli.run(["copy", src, f"file://{tmp_path / 'dst'}", "--prefix", "p/"]) == 0
    assert asked == ["p/"]
    assert [bar["total"] for bar in bars.made] == [2]
    assert summary(capsys.readouterr().out.encode()) == (2, 2, 0, 0)


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


def test_bench_removes_the_sqlite_database_it_created(tmp_path: Path) -> None:
    result = kv("bench", f"sqlite:///{tmp_path / 'new.db'}", *SMALL_BENCH, "--no-async")
    assert result.returncode == 0, result
    assert list(tmp_path.iterdir()) == []


def test_bench_removes_the_database_it_created_on_error(
    tmp_path: Path, in_process: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kvstores import benchmark

    def failing_run(cases: list[benchmark.Case], *args: object, **kwargs: object) -> None:
        cases[0].store.mset([("a/0000000", b"written")])
        assert (tmp_path / "new.db").exists()
        raise benchmark.BenchmarkError("the store misbehaved")

    monkeypatch.setattr(benchmark, "run", failing_run)
    assert cli.run(["bench", f"sqlite:///{tmp_path / 'new.db'}", "-q"]) == 1
    assert list(tmp_path.iterdir()) == []


@posix_only
def test_bench_interrupted_removes_the_sqlite_database_it_created(tmp_path: Path) -> None:
    process = start("bench", f"sqlite:///{tmp_path / 'new.db'}", "--keys", "3000", "--rounds", "50")
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "new.db").exists() and process.poll() is None:
            assert time.monotonic() < deadline, "the benchmark never wrote"
            time.sleep(0.02)
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, (out, err)
    assert b"Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_ping_removes_the_sqlite_database_it_created(tmp_path: Path) -> None:
    result = kv("ping", f"sqlite:///{tmp_path / 'new.db'}")
    assert result.returncode == 0, result
    assert list(tmp_path.iterdir()) == []


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


@pytest.mark.parametrize(
    "args",
    [
        ["ls", "--url", "nosuch://u:pw1234@h/x"],
        ["get", "k", "--url", "nosuch://u:pw1234@h/x"],
        ["put", "k", "v", "--url", "nosuch://u:pw1234@h/x"],
        ["rm", "k", "--url", "nosuch://u:pw1234@h/x"],
        ["copy", "nosuch://u:pw1234@h/x", "memory://"],
        ["bench", "nosuch://u:pw1234@h/x"],
        ["ping", "nosuch://u:pw1234@h/x"],
    ],
)
def test_debug_after_the_command_shows_the_traceback(args: list[str]) -> None:
    result = kv(*args, "--debug")
    assert result.returncode == 1, result
    err = result.stderr.decode()
    assert "Traceback (most recent call last)" in err
    assert err.splitlines()[-1].startswith("kvstores: error: unknown kvstores URL scheme")
    assert b"pw1234" not in result.stdout + result.stderr
    assert "Traceback" not in kv(*args).stderr.decode()  # without --debug, one line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["copy", "nosuch://a", "memory://"], "unknown kvstores URL scheme 'nosuch'"),
        (["copy", "memory://", "nosuch://a"], "unknown kvstores URL scheme 'nosuch'"),
        (["copy", "memory://?namespce=a", "memory://"], "'namespce' (did you mean 'namespace'?)"),
        (["copy", "memory://", "FILE/dst?namespce=a"], "'namespce' (did you mean 'namespace'?)"),
        (["bench", "nosuch://a"], "unknown kvstores URL scheme 'nosuch'"),
        (["bench", "memory://?namespce=a"], "'namespce' (did you mean 'namespace'?)"),
        (["bench", "FILE?namespce=a"], "'namespce' (did you mean 'namespace'?)"),
        (["ping", "nosuch://a"], "unknown kvstores URL scheme 'nosuch'"),
        (["ping", "memory://?namespce=a"], "'namespce' (did you mean 'namespace'?)"),
        (["ping", "FILE?namespce=a"], "'namespce' (did you mean 'namespace'?)"),
        (["ping", "redis://127.0.0.1:1/0?namespce=a"], "namespce"),
        (["copy", "memory://", "sqlite:///kv.db?namespce=a"], "'namespce' (did you mean"),
        (["copy", "FILE", "redis://127.0.0.1:1/0?namespce=a"], "namespce"),
        (["bench", "sqlite:///kv.db?namespce=a"], "'namespce' (did you mean"),
        (["ping", "sqlite:///kv.db?namespce=a"], "'namespce' (did you mean"),
        (["ping", "postgresql+nosuch://u:pw1234@127.0.0.1:1/db"], "nosuch"),
        (["copy", "mysql+nosuch://u:pw1234@127.0.0.1:1/db", "memory://"], "nosuch"),
        (["bench", "sqlite+nosuch:///kv.db"], "nosuch"),
    ],
)
def test_bad_urls_are_one_line_errors(args: list[str], expected: str, tmp_path: Path) -> None:
    args = [arg.replace("FILE", f"file://{tmp_path}") for arg in args]
    result = kv(*args, cwd=tmp_path)
    line = one_error_line(result)
    assert expected in line
    assert b"pw1234" not in result.stdout + result.stderr
    assert not list(tmp_path.glob("*.db"))


def test_bench_value_size_is_bounded() -> None:
    result = kv("bench", "memory://", "--value-size", "999999999999")
    assert result.returncode == 2
    assert b"Traceback" not in result.stderr
    assert b"--value-size" in result.stderr


def test_a_password_that_is_also_the_user_name_masks_only_the_password() -> None:
    pytest.importorskip("redis")
    result = kv("ping", "redis://admin:admin@127.0.0.1:1/0", timeout=30)
    line = one_error_line(result)
    assert "redis://admin:***@127.0.0.1:1/0" in line  # the user name stays readable
    printed = (result.stdout + result.stderr).decode()
    assert "store:    redis://admin:***@127.0.0.1:1/0 (RedisByteStore)" in printed
    assert ":admin@" not in printed


def test_a_password_that_is_also_the_database_name_masks_only_the_password() -> None:
    pytest.importorskip("psycopg")
    result = kv("ping", "postgresql://app:app@127.0.0.1:1/app", timeout=30)
    line = one_error_line(result)
    assert "app:***@127.0.0.1:1/app" in line
    assert ":app@" not in (result.stdout + result.stderr).decode()


def test_warnings_are_one_masked_line(
    in_process: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import warnings

    def warning_from_url(url: str, **options: object) -> InMemoryByteStore:
        warnings.warn(f"a driver's warning about {url}\nover two lines", stacklevel=1)
        return InMemoryByteStore()

    monkeypatch.setattr(cli, "from_url", warning_from_url)
    assert cli.run(["--url", "redis://admin:hunter2@127.0.0.1:1/0", "ls"]) == 0
    assert capsys.readouterr().err == (
        "kvstores: warning: UserWarning: a driver's warning about "
        "redis://admin:***@127.0.0.1:1/0 over two lines\n"
    )
