"""The hiredis command packer: kvstores' commands to RESP bytes in C, in one pass.

redis-py's own hiredis packer rebuilds every command's argument tuple in Python to turn
bytearrays and memoryviews into bytes, which costs more than hiredis' packing itself on a
batch of 100 values. kvstores' commands hold only `str` and `bytes`: they go straight to
hiredis, and anything else (``"CONFIG GET"``, a memoryview) takes redis-py's path.

Nothing here imports redis-py or hiredis: `kvstores.redis.driver` decides whether redis-py
packs with hiredis and hands in hiredis' ``pack_command`` and redis-py's serializer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["HiredisPacker", "pack_pipeline"]

PackCommand = Callable[[tuple[Any, ...]], bytes]


class HiredisPacker:
    """A ``command_packer`` for redis-py's sync connections (its ``pack(*args)`` protocol)."""

    __slots__ = ("_general", "_pack_command")

    def __init__(self, pack_command: PackCommand, general: Any) -> None:
        self._pack_command = pack_command
        self._general = general  # redis-py's serializer, for what hiredis does not take

    def pack(self, *args: Any) -> list[bytes]:
        command = args[0]
        if type(command) is str and " " not in command:
            try:
                return [self._pack_command(args)]
            except TypeError:  # an argument hiredis does not take: redis-py converts it
                pass
        packed: list[bytes] = self._general.pack(*args)
        return packed


def pack_pipeline(pack_command: PackCommand, commands: list[tuple[Any, ...]]) -> list[bytes] | None:
    """A pipeline's commands as one bytes, in one C-level pass; `None` if hiredis refuses
    an argument (then redis-py packs them)."""
    try:
        return [b"".join(map(pack_command, commands))]
    except TypeError:
        return None
