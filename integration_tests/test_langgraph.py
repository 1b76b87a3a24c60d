"""`kvstores.langgraph.LangGraphStore` on every server backend: the LangGraph kit
(`kvstores.testing.langgraph_kit`) on a fresh namespace of each server's byte store (the
``byte_store`` fixture of the integration conftest)."""

from __future__ import annotations

import pytest

pytest.importorskip("langgraph.store.base")

from kvstores.testing.langgraph_kit import LangGraphStoreTests


class TestLangGraphStoreOnServers(LangGraphStoreTests):
    random_ops = 150
