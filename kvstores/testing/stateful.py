"""A Hypothesis state machine that runs random batches against a store and a dict side by side."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kvstores._base import ByteStore

__all__ = ["make_state_machine"]

# A small pool makes collisions (overwrites, repeats, deletes of present keys) frequent.
_TRICKY = ["a", "A", "a ", "a/b", "a%", "a_", "a*", "a[", "a\\", "é", "é", "🔑", "..", "k" * 1024]
keys = st.sampled_from(_TRICKY) | st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00"),
    min_size=1,
    max_size=8,
)
values = st.binary(max_size=64)


def make_state_machine(
    make_store: Callable[[], ByteStore], *, use_async: bool = False
) -> type[RuleBasedStateMachine]:
    """A state machine comparing ``make_store()`` with a dict; its ``.TestCase`` runs under pytest.

    `make_store` is called once per run and must return an empty store (a fresh namespace
    is the easy way on a shared server); the machine deletes what it wrote and closes it.
    With `use_async`, every operation goes through the async methods.
    """

    class StoreMatchesDict(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.store = make_store()
            self.model: dict[str, bytes] = {}
            self.loop: Any = None
            if use_async:
                import asyncio

                self.loop = asyncio.new_event_loop()

        def _run(
            self, sync: Callable[..., Any], coro: Callable[..., Any], *args: Any, **kw: Any
        ) -> Any:
            if self.loop is None:
                return sync(*args, **kw)
            return self.loop.run_until_complete(coro(*args, **kw))

        def _keys(self, prefix: str | None) -> list[str]:
            if self.loop is None:
                return list(self.store.yield_keys(prefix=prefix))

            async def collect() -> list[str]:
                return [k async for k in self.store.ayield_keys(prefix=prefix)]

            result: list[str] = self.loop.run_until_complete(collect())
            return result

        @rule(pairs=st.lists(st.tuples(keys, values), max_size=8))
        def mset(self, pairs: list[tuple[str, bytes]]) -> None:
            self._run(self.store.mset, self.store.amset, pairs)
            self.model.update(pairs)

        @rule(batch=st.lists(keys, max_size=8))
        def mget(self, batch: list[str]) -> None:
            got = self._run(self.store.mget, self.store.amget, batch)
            assert got == [self.model.get(k) for k in batch]

        @precondition(lambda self: bool(self.model))
        @rule(data=st.data())
        def mdelete_present(self, data: st.DataObject) -> None:
            batch = data.draw(st.lists(st.sampled_from(sorted(self.model)), min_size=1, max_size=4))
            self._delete(batch + data.draw(st.lists(keys, max_size=2)))

        @rule(batch=st.lists(keys, max_size=4))
        def mdelete(self, batch: list[str]) -> None:
            self._delete(batch)

        def _delete(self, batch: list[str]) -> None:
            self._run(self.store.mdelete, self.store.amdelete, batch)
            for key in batch:
                self.model.pop(key, None)

        @rule(data=st.data())
        def yield_keys(self, data: st.DataObject) -> None:
            source = sorted(self.model) or ["a"]
            key = data.draw(st.sampled_from(source))
            prefix = data.draw(
                st.none() | st.just(key[: data.draw(st.integers(0, len(key)))]) | keys
            )
            listed = self._keys(prefix)
            assert len(listed) == len(set(listed)), "a key was listed twice"
            assert set(listed) == {k for k in self.model if k.startswith(prefix or "")}

        @invariant()
        def sizes_match(self) -> None:
            assert len(self._keys(None)) == len(self.model)

        def teardown(self) -> None:
            try:
                self._run(self.store.mdelete, self.store.amdelete, list(self._keys(None)))
                self._run(self.store.close, self.store.aclose)
            finally:
                if self.loop is not None:
                    self.loop.close()

    return StoreMatchesDict
