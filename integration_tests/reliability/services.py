"""The reliability tests' hold on the servers: stop and start one node of a service with
``scripts/services.sh stop-node/start-node`` (data kept), in the environment the servers were
started with (``KVSTORES_SERVICES_DIR`` and the port variables, which nox passes on).

The tests that stop servers only run on servers started for them: nox's ``reliability``
session (and `.ci/run`) starts its own set, durable, with TLS and a Redis Cluster with
replicas, and sets ``KVSTORES_RELIABILITY_SERVERS=1``. On servers someone else uses they
would pull the ground from under them, so without that variable they skip (and fail under
``CI=true``).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "services.sh"
OWN_SERVERS = "KVSTORES_RELIABILITY_SERVERS"


def require_own_servers() -> None:
    """Skip (fail under ``CI=true``) unless the servers were started for these tests."""
    if os.environ.get(OWN_SERVERS) == "1":
        return
    reason = (
        f"{OWN_SERVERS}=1 is not set: these tests stop and restart servers, so they run "
        "only on the set `nox -s reliability` starts"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def _services(command: str, service: str, node: int) -> float:
    """Run ``services.sh COMMAND SERVICE NODE``; how long it took (seconds)."""
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(SCRIPT), command, service, str(node)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(
            f"services.sh {command} {service} {node} failed ({done.returncode}):\n"
            f"{done.stderr[-3000:]}"
        )
    return time.monotonic() - started


def stop_node(service: str, node: int = 1) -> float:
    """Stop node `node` of `service`, keeping its data; the seconds it took."""
    return _services("stop-node", service, node)


def start_node(service: str, node: int = 1) -> float:
    """Start node `node` of `service` again on its data, and wait until it serves."""
    return _services("start-node", service, node)


@contextmanager
def node_down(service: str, node: int = 1) -> Iterator[Callable[[], float]]:
    """Stop node `node` of `service`; the block gets the function that starts it again, and
    the node is started again on the way out if the block did not (a failing test must
    not leave the next one without its server)."""
    stop_node(service, node)
    restarted = False

    def restart() -> float:
        nonlocal restarted
        restarted = True
        return start_node(service, node)

    try:
        yield restart
    finally:
        if not restarted:
            start_node(service, node)
