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


def _services_env(session: nox.Session) -> dict[str, str]:
    """Start the integration servers with the repository's script; return their URL variables."""
    if not SERVICES.exists():
        return {}
    out = subprocess.run(
        ["bash", str(SERVICES), "start"], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    env = {}
    for line in out.splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = value.strip().strip("'\"")
    session.log(f"servers up: {', '.join(sorted(env)) or 'none'}")
    return env


def _integration(session: nox.Session) -> None:
    if not any((ROOT / "integration_tests").glob("test_*.py")):
        session.log("integration_tests/ has no tests yet")
        return
    session.run("pytest", "integration_tests", *session.posargs, env=_services_env(session))


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
