"""nox sessions: lint, typecheck (mypy strict), tests (no server), integration, ci; latest
(the same checks against the newest release of every dependency) and lock (refresh the pins).

Every session but `latest` installs from constraints.txt, exact versions kept in the
repository, so that a new release of a dependency never changes what CI runs.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"
# A Python version the project claims but cannot find is a failure, never a silent skip.
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).parent
SERVICES = ROOT / "scripts" / "services.sh"
CONSTRAINTS = "constraints.txt"
DEV_REQUIREMENTS = "requirements-dev.txt"
# The Python versions kvstores is tested on, and so claims (pyproject's requires-python and
# classifiers; tests/test_metadata.py keeps them in step). Only CPython 3.11 can be had on
# the project's machines (Debian 12, no python.org downloads), so only 3.11 is claimed.
PYTHONS = ["3.11"]


def _install(session: nox.Session, *, pinned: bool = True) -> None:
    """kvstores with every extra, plus the test tools: at the pinned versions, or the newest."""
    if pinned:
        session.install("-c", CONSTRAINTS, "-e", ".[all]", "-r", DEV_REQUIREMENTS)
    else:
        session.install(
            "--upgrade", "--upgrade-strategy", "eager", "-e", ".[all]", "-r", DEV_REQUIREMENTS
        )


def _lint(session: nox.Session) -> None:
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


# The URL variable each service of scripts/services.sh exports.
_SERVICE_OF = {
    "KVSTORES_TEST_POSTGRES_URL": "postgres",
    "KVSTORES_TEST_MYSQL_URL": "mysql",
    "KVSTORES_TEST_REDIS_URL": "redis",
    "KVSTORES_TEST_REDIS_CLUSTER_URL": "redis-cluster",
    "KVSTORES_TEST_MONGODB_URL": "ferretdb",
    "KVSTORES_TEST_CASSANDRA_URL": "cassandra",
    "KVSTORES_TEST_CASSANDRA_CLUSTER_URL": "cassandra-cluster",
    "KVSTORES_TEST_ASTRADB_URL": "dataapi",
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


@nox.session(python=PYTHONS)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("-c", CONSTRAINTS, "ruff")
    _lint(session)


@nox.session(python=PYTHONS)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the kvstores package."""
    _install(session)
    session.run("mypy")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The unit tests: memory, files, SQLite, codecs, URLs, the conformance kit; no server."""
    _install(session)
    session.run("pytest", "tests", *session.posargs)


@nox.session(python=PYTHONS)
def integration(session: nox.Session) -> None:
    """The conformance kit against real servers started by scripts/services.sh."""
    _install(session)
    _integration(session)


@nox.session(python=PYTHONS)
def ci(session: nox.Session) -> None:
    """Everything CI checks, in one environment: lint, typecheck, tests, integration."""
    _install(session)
    _check_everything(session)


def _check_everything(session: nox.Session) -> None:
    _lint(session)
    session.run("mypy")
    session.run("pytest", "tests", *session.posargs)
    _integration(session)


@nox.session(python=PYTHONS[-1])
def latest(session: nox.Session) -> None:
    """Everything `ci` checks, against the newest release of every dependency (no pins).

    Not run by CI: a new release must not fail a submission, but should be seen early.
    When this passes and `ci` does too, `nox -s lock` moves the pins forward.
    """
    _install(session, pinned=False)
    session.run("python", "-m", "pip", "list", "--format=freeze", silent=False)
    _check_everything(session)


@nox.session(python=PYTHONS[-1])
def lock(session: nox.Session) -> None:
    """Regenerate constraints.txt: the newest versions that satisfy pyproject.toml and
    requirements-dev.txt, resolved by uv for the oldest Python kvstores supports."""
    session.install("-c", CONSTRAINTS, "uv")
    session.run(
        "uv",
        "pip",
        "compile",
        "pyproject.toml",
        DEV_REQUIREMENTS,
        "--all-extras",
        "--python-version",
        PYTHONS[0],
        "--upgrade",
        "-o",
        CONSTRAINTS,
    )
