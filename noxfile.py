"""nox sessions: lint, typecheck (mypy strict), tests (no server), integration, ci."""

from __future__ import annotations

import subprocess
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"

ROOT = Path(__file__).parent
SERVICES = ROOT / "scripts" / "services.sh"
PYTHON = "3.11"
DEV = [
    "ruff==0.17.5",
    "mypy==2.4.1",
    "pytest-asyncio>=0.24",
    "nox",
    # A user's AsyncEngine on SQLite, in the SQL tests.
    "aiosqlite>=0.20",
    # LangChain's standard store suites and the real classes the drop-in tests use.
    "langchain-tests>=0.3",
    "langchain-classic>=1.0",
    "langchain-text-splitters>=0.3",
]


def _install(session: nox.Session) -> None:
    session.install("-e", ".[all]", *DEV)


def _lint(session: nox.Session) -> None:
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


# The URL variable each service of scripts/services.sh exports.
_SERVICE_OF = {
    "KVSTORES_TEST_POSTGRES_URL": "postgres",
    "KVSTORES_TEST_MYSQL_URL": "mysql",
    "KVSTORES_TEST_REDIS_URL": "redis",
    "KVSTORES_TEST_REDIS_CLUSTER_URL": "redis-cluster",
}


def _exports(text: str) -> dict[str, str]:
    """The ``export NAME='value'`` lines scripts/services.sh prints, as a dict."""
    env = {}
    for line in text.splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = value.strip().strip("'\"")
    return env


def _services(command: str, *services: str) -> dict[str, str]:
    out = subprocess.run(
        ["bash", str(SERVICES), command, *services],
        check=command != "env",  # `env` fails when nothing runs
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL if command == "env" else None,
        text=True,
    ).stdout
    return _exports(out)


def _integration(session: nox.Session) -> None:
    """Run integration_tests/ against servers started by scripts/services.sh, and stop
    afterwards the ones this session started (servers already running are left running)."""
    if not any((ROOT / "integration_tests").glob("test_*.py")):
        session.log("integration_tests/ has no tests yet")
        return
    if not SERVICES.exists():
        session.run("pytest", "integration_tests", *session.posargs)
        return
    running = _services("env")
    env = _services("start")
    session.log(f"servers up: {', '.join(sorted(env)) or 'none'}")
    started = [
        service for name, service in _SERVICE_OF.items() if name in env and name not in running
    ]
    try:
        session.run("pytest", "integration_tests", *session.posargs, env=env)
    finally:
        if started:
            session.log(f"stopping the servers this session started: {', '.join(started)}")
            _services("stop", *started)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff==0.17.5")
    _lint(session)


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the kvstores package."""
    _install(session)
    session.run("mypy")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The unit tests: memory, files, SQLite, codecs, URLs, the conformance kit; no server."""
    _install(session)
    session.run("pytest", "tests", *session.posargs)


@nox.session(python=PYTHON)
def integration(session: nox.Session) -> None:
    """The conformance kit against real servers started by scripts/services.sh."""
    _install(session)
    _integration(session)


@nox.session(python=PYTHON)
def ci(session: nox.Session) -> None:
    """Everything CI checks, in one environment: lint, typecheck, tests, integration."""
    _install(session)
    _lint(session)
    session.run("mypy")
    session.run("pytest", "tests", *session.posargs)
    _integration(session)
