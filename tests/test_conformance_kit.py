"""The conformance kit must fail on broken stores: a kit that cannot fail proves nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

BROKEN_STORES = {
    # yield_keys treats the prefix as a glob, as LangChain's RedisStore does.
    "glob_prefix": (
        """
        import fnmatch
        class Broken(InMemoryByteStore):
            def _yield_keys(self, prefix):
                for key in list(self._data):
                    if fnmatch.fnmatchcase(key, prefix + "*"):
                        yield key
        """,
        ["test_prefix_is_literal"],
    ),
    # Writes pair by pair, checking each as it goes: a bad pair leaves the earlier ones written.
    "half_written_batch": (
        """
        from kvstores._validation import check_keys, coerce_byte_values
        class Broken(InMemoryByteStore):
            def mset(self, pairs):
                for key, value in pairs:
                    check_keys([key])
                    self._data[key] = coerce_byte_values([value])[0]
            async def amset(self, pairs):
                self.mset(pairs)
        """,
        ["test_bad_key_rejected_in_every_operation", "test_bad_value_rejected_and_nothing_written"],
    ),
    # mget drops repeated keys.
    "deduplicating_mget": (
        """
        class Broken(InMemoryByteStore):
            def _mget(self, keys):
                return super()._mget(list(dict.fromkeys(keys)))
        """,
        ["test_mget_order_missing_and_repeats"],
    ),
    # The ttl is accepted and ignored.
    "ignored_ttl": (
        """
        class Broken(InMemoryByteStore):
            def __init__(self, *, namespace=None, ttl=None):
                super().__init__(namespace=namespace, ttl=None)
        """,
        ["test_expired_entries_are_invisible"],
    ),
    # Every namespace shares one dict.
    "shared_namespaces": (
        """
        SHARED = {}
        class Broken(InMemoryByteStore):
            def __init__(self, *, namespace=None, ttl=None):
                super().__init__(namespace=namespace, ttl=ttl)
                self._data = SHARED
        """,
        ["test_namespaces_are_isolated"],
    ),
    # Keys are case-folded (a case-insensitive collation).
    "case_folding": (
        """
        class Broken(InMemoryByteStore):
            def _mset(self, items):
                super()._mset({k.lower(): v for k, v in items.items()})
            def _mget(self, keys):
                return super()._mget([k.lower() for k in keys])
        """,
        ["test_keys_compare_exactly"],
    ),
}


@pytest.mark.parametrize("name", sorted(BROKEN_STORES))
@pytest.mark.parametrize("kit", ["ByteStoreTests", "AsyncByteStoreTests"])
def test_kit_catches_broken_store(pytester: pytest.Pytester, name: str, kit: str) -> None:
    store_code, must_fail = BROKEN_STORES[name]
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        test_broken=textwrap.dedent(
            """
            import pytest
            from kvstores.memory import InMemoryByteStore
            from kvstores.testing import AsyncByteStoreTests, ByteStoreTests
            """
        )
        + textwrap.dedent(store_code)
        + textwrap.dedent(
            f"""
            @pytest.fixture
            def make_store():
                def make(namespace=None, ttl=None):
                    return Broken(namespace=namespace, ttl=ttl)
                return make

            class TestBroken({kit}):
                shares_data = False
            """
        )
    )
    result = pytester.runpytest("-q", "-p", "no:cacheprovider", "-k", " or ".join(must_fail))
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= len(must_fail), result.stdout.str()[-3000:]
    for test in must_fail:
        assert any(test in line and "FAILED" in line for line in result.outlines), test


@pytest.mark.parametrize("missing", ["pytest", "hypothesis"])
def test_kit_without_its_extra_names_it(missing: str) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == {missing!r}:
                    raise ImportError(f"blocked {{name}}")
        sys.meta_path.insert(0, Block())
        try:
            import kvstores.testing
        except ImportError as exc:
            print(exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 'pip install "kvstores[testing]"' in out.stdout
