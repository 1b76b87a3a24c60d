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
        from kvstores.backend import check_keys, coerce_byte_values
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


def _write_kit_test(pytester: pytest.Pytester, name: str, store_code: str, tests: str) -> None:
    """Write the test module `name`: the kit's imports, then `store_code`, then `tests`."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    imports = """
        import pytest
        from kvstores.memory import InMemoryByteStore
        from kvstores.testing import AsyncByteStoreTests, ByteStoreTests
        """
    source = "".join(textwrap.dedent(part) for part in (imports, store_code, tests))
    pytester.makepyfile(**{name: source})


@pytest.mark.parametrize("name", sorted(BROKEN_STORES))
@pytest.mark.parametrize("kit", ["ByteStoreTests", "AsyncByteStoreTests"])
def test_kit_catches_broken_store(pytester: pytest.Pytester, name: str, kit: str) -> None:
    store_code, must_fail = BROKEN_STORES[name]
    _write_kit_test(
        pytester,
        "test_broken",
        store_code,
        f"""
            @pytest.fixture
            def make_store():
                def make(namespace=None, ttl=None):
                    return Broken(namespace=namespace, ttl=ttl)
                return make

            class TestBroken({kit}):
                shares_data = False
            """,
    )
    result = pytester.runpytest("-q", "-p", "no:cacheprovider", "-k", " or ".join(must_fail))
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= len(must_fail), result.stdout.str()[-3000:]
    for test in must_fail:
        assert any(test in line and "FAILED" in line for line in result.outlines), test


# Stores that are consistently wrong about their storage: they read back what they wrote, so
# only the kit's raw storage tests (the test class's raw_get / raw_set hooks) can catch them.
RAW_TESTS = [
    "test_raw_store_written_values_are_in_storage",
    "test_raw_values_written_with_a_ttl_are_in_storage",
    "test_raw_written_values_are_read_listed_and_deleted",
    "test_raw_written_keys_stay_in_their_namespace",
    "test_raw_deleted_entries_are_gone",
]
RAW_WRONG_STORES = {
    # Every key is stored under a mangled name, and read, listed and deleted the same way.
    "mangled_keys": (
        """
        class Store(InMemoryByteStore):
            def _mget(self, keys):
                return super()._mget(["kv/" + k for k in keys])
            def _mset(self, items):
                super()._mset({"kv/" + k: v for k, v in items.items()})
            def _mdelete(self, keys):
                super()._mdelete(["kv/" + k for k in keys])
            def _yield_keys(self, prefix):
                for key in super()._yield_keys("kv/" + prefix):
                    yield key[3:]
        """,
        RAW_TESTS,
    ),
    # Values are stored reversed, and reversed again when read (a raw delete cannot tell).
    "reversed_values": (
        """
        class Store(InMemoryByteStore):
            def _mget(self, keys):
                return [None if v is None else v[::-1] for v in super()._mget(keys)]
            def _mset(self, items):
                super()._mset({k: v[::-1] for k, v in items.items()})
        """,
        RAW_TESTS[:4],
    ),
    # The control: the real store passes them all.
    "correct": ("Store = InMemoryByteStore", []),
}


@pytest.mark.parametrize("name", sorted(RAW_WRONG_STORES))
@pytest.mark.parametrize("kit", ["ByteStoreTests", "AsyncByteStoreTests"])
def test_raw_storage_tests_catch_a_consistently_wrong_store(
    pytester: pytest.Pytester, name: str, kit: str
) -> None:
    store_code, must_fail = RAW_WRONG_STORES[name]
    _write_kit_test(
        pytester,
        "test_raw",
        store_code,
        f"""
            @pytest.fixture
            def make_store():
                return lambda namespace=None, ttl=None: Store(namespace=namespace, ttl=ttl)

            class TestWithHooks({kit}):  # the memory store's documented storage: its dict
                shares_data = False
                def raw_get(self, store, key):
                    return store._data.get(key)
                def raw_set(self, store, key, value):
                    store._data[key] = value
                def raw_delete(self, store, key):
                    store._data.pop(key, None)

            class TestWithoutHooks({kit}):
                shares_data = False
            """,
    )
    result = pytester.runpytest("-q", "-rA", "-p", "no:cacheprovider", "-k", "raw_")
    output = result.stdout.str()
    # Without the hooks, the 5 raw tests (12 with their namespaces) skip, saying which hook.
    assert result.parseoutcomes().get("skipped", 0) == 12, output[-3000:]
    for hooks in ("raw_get", "raw_get / raw_set", "raw_get / raw_delete"):
        assert f"TestWithoutHooks gives no {hooks} hook" in output, hooks
    # With them, each run of a test in `must_fail` fails and every other one passes.
    outcomes = {}
    for line in result.outlines:
        outcome, _, test = line.partition(" test_raw.py::TestWithHooks::")
        if test:
            outcomes[test.split(" - ")[0]] = outcome  # FAILED lines end with " - <error>"
    assert len(outcomes) == 12, output[-3000:]
    for test, outcome in outcomes.items():
        expected = "FAILED" if test.split("[")[0] in must_fail else "PASSED"
        assert outcome == expected, f"{test}: {outcome}\n{output[-3000:]}"


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
