"""Server addresses for the integration tests.

Each test module asks for its server with `server_url("KVSTORES_TEST_..._URL")`. Locally a
missing server skips that module's tests with the reason; under ``CI=true`` it fails them,
so a CI run can never pass by testing nothing. `scripts/services.sh start` starts the
servers and prints the variables.
"""

from __future__ import annotations

import os

import pytest


def server_url(variable: str) -> str:
    """The URL in `variable`; skip (locally) or fail (CI=true) when it is not set."""
    url = os.environ.get(variable)
    if url:
        return url
    reason = f'{variable} is not set: run `eval "$(scripts/services.sh start)"` first'
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)
