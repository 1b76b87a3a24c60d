"""`kvstores.benchmark`: what the runner does around the timed runs."""

from __future__ import annotations

from collections.abc import Sequence

from kvstores.benchmark import Case, Config, Pair, run
from kvstores.memory import InMemoryByteStore


class Logged(InMemoryByteStore):
    """An in-memory store that logs which methods were called, in order."""

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    def mset(self, key_value_pairs: Sequence[Pair]) -> None:
        self.log.append("mset")
        super().mset(key_value_pairs)

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        self.log.append("mget")
        return super().mget(keys)

    def mdelete(self, keys: Sequence[str]) -> None:
        self.log.append("mdelete")
        super().mdelete(keys)


def test_settle_follows_every_timed_write() -> None:
    # A read op must not find the writes of the op before it unsettled (PostgreSQL: not
    # yet vacuumed), whichever side autovacuum happened to reach first.
    log: list[str] = []
    case = Case("memory", Logged(log), settle=lambda target: log.append("settle"))
    ops = ("mset", "mget", "mdelete")
    config = Config(keys=40, batches=(10,), rounds=1, min_time=0, use_async=False, ops=ops)
    run([case], config, progress=False)
    timed_mset = len(log) - log[::-1].index("mset") - 1  # the last: the mset op's
    first_read = log.index("mget", timed_mset)
    assert "settle" in log[timed_mset:first_read], log
    assert log[-1] == "settle", log  # after the mdelete op
