"""nox sessions: lint, typecheck (mypy strict), tests (no server), integration, reliability
(faults, load and TLS, on servers of its own), ci (all of them); latest
(the same checks against the newest release of every dependency) and lock (refresh the pins).

Every session but `latest` installs from constraints.txt, exact versions kept in the
repository, so that a new release of a dependency never changes what CI runs.
"""

from __future__ import annotations

import os
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


def _services(
    command: str, *services: str, settings: dict[str, str] | None = None
) -> dict[str, str]:
    out = subprocess.run(
        ["bash", str(SERVICES), command, *services],
        check=command != "env",  # `env` fails when nothing runs
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL if command == "env" else None,
        text=True,
        env=None if settings is None else {**os.environ, **settings},
    ).stdout
    return _exports(out)


RELIABILITY = "integration_tests/reliability"


def _reliability_settings() -> dict[str, str]:
    """The servers of the reliability tests, which stop and restart them: a set of their own
    (own state directory, own ports, below Linux's ephemeral range 32768-60999 so that no
    client's source port can take one while a server restarts), durable (fsync, Redis AOF,
    Cassandra's batch commit log), with TLS beside the plain ports and a Redis Cluster of
    three primaries with a replica each."""
    state = os.environ.get("KVSTORES_SERVICES_DIR", "/tmp/kvstores-services")
    return {
        "KVSTORES_SERVICES_DIR": state.rstrip("/") + "-reliability",
        "KVSTORES_SERVICES_DURABLE": "1",
        "KVSTORES_SERVICES_TLS": "1",
        "KVSTORES_REDIS_CLUSTER_REPLICAS": "1",
        "KVSTORES_REDIS_CLUSTER_NODE_TIMEOUT": "2000",
        "KVSTORES_POSTGRES_PORT": "25432",
        "KVSTORES_MYSQL_PORT": "23306",
        "KVSTORES_REDIS_PORT": "26379",
        "KVSTORES_REDIS_TLS_PORT": "26380",
        "KVSTORES_REDIS_CLUSTER_PORTS": "27001 27002 27003 27004 27005 27006",
        "KVSTORES_REDIS_CLUSTER_TLS_PORTS": "27101 27102 27103 27104 27105 27106",
        "KVSTORES_MONGODB_PORT": "27017",
        "KVSTORES_MONGODB_TLS_PORT": "27018",
        "KVSTORES_FERRETDB_POSTGRES_PORT": "25433",
        "KVSTORES_CASSANDRA_PORT": "29042",
        "KVSTORES_CASSANDRA_STORAGE_PORT": "27200",
        "KVSTORES_CASSANDRA_JMX_PORT": "27299",
        "KVSTORES_CASSANDRA_CLUSTER_PORT": "29043",
        "KVSTORES_CASSANDRA_CLUSTER_STORAGE_PORT": "27201",
        "KVSTORES_CASSANDRA_CLUSTER_JMX_PORTS": "27301 27302 27303",
        "KVSTORES_DATAAPI_PORT": "28181",
        # Tells the tests that stop servers that these are theirs to stop.
        "KVSTORES_RELIABILITY_SERVERS": "1",
    }


def _on_servers(session: nox.Session, tests: list[str], settings: dict[str, str] | None) -> None:
    """Run pytest on `tests` against servers started by scripts/services.sh (with
    `settings`), and stop afterwards the ones this session started (servers already running
    are left running)."""
    running = _services("env", settings=settings)
    env = _services("start", settings=settings)
    session.log(f"servers up: {', '.join(sorted(env)) or 'none'}")
    started = [
        service for name, service in _SERVICE_OF.items() if name in env and name not in running
    ]
    try:
        session.run("pytest", *tests, *session.posargs, env={**(settings or {}), **env})
    finally:
        if started:
            session.log(f"stopping the servers this session started: {', '.join(started)}")
            _services("stop", *started, settings=settings)


def _integration(session: nox.Session) -> None:
    """integration_tests/ but its reliability part, on the servers of scripts/services.sh."""
    if not any((ROOT / "integration_tests").glob("test_*.py")):
        session.log("integration_tests/ has no tests yet")
        return
    tests = ["integration_tests", f"--ignore={RELIABILITY}"]
    if not SERVICES.exists():
        session.run("pytest", *tests, *session.posargs)
        return
    _on_servers(session, tests, None)


def _reliability(session: nox.Session) -> None:
    """integration_tests/reliability: outages, failover, soak, TLS and secrets, on a set of
    servers of its own (`_reliability_settings`)."""
    _on_servers(session, [RELIABILITY], _reliability_settings())


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
def reliability(session: nox.Session) -> None:
    """Faults, load and TLS against servers of its own, which it stops and restarts."""
    _install(session)
    _reliability(session)


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
    _reliability(session)


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
