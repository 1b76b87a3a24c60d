"""JSON-like values a document store keeps natively (see `kvstores.backend.check_json_like`)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection
from typing import Any

from kvstores.errors import InvalidValueError

__all__ = ["JSON_KINDS", "check_json_like"]

JSON_KINDS = "dict (with str keys), list, str, int, float or bool"
_NONE = "None is not a storable value (it means absent); use mdelete"
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Refused(Exception):
    """A value part that cannot be stored: the error to raise, and the path to the part."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.path: list[str] = []


def _unencodable(text: str) -> bool:
    """Whether `text` holds a lone surrogate, which UTF-8 cannot hold."""
    return not text.isascii() and _SURROGATE.search(text) is not None


class _Walker:
    __slots__ = ("field_problem", "integers", "max_depth", "nulls")

    def __init__(
        self,
        max_depth: int,
        field_problem: Callable[[str], str | None],
        integers: range | None,
        nulls: bool,
    ) -> None:
        self.max_depth = max_depth
        self.field_problem = field_problem
        self.integers = integers
        self.nulls = nulls

    def size(self, value: Any, depth: int) -> int:
        """An upper bound of `value`'s size stored (BSON-like: 4 bytes a character); raises
        `_Refused` for what cannot be stored."""
        kind = type(value)
        if kind is str:
            if _unencodable(value):
                raise _Refused(InvalidValueError("a string is not valid unicode (lone surrogate)"))
            return 4 * len(value) + 5
        if kind is bool:
            return 1
        if kind is int:
            if self.integers is not None and value not in self.integers:
                bits = self.integers.stop.bit_length()  # range(-2**63, 2**63): 64-bit
                raise _Refused(InvalidValueError(f"{value} is out of the {bits}-bit integer range"))
            return 8
        if kind is float:
            if not math.isfinite(value):
                raise _Refused(InvalidValueError(f"{value!r} is not JSON (NaN and infinity)"))
            return 8
        if kind is dict or kind is list:
            if depth >= self.max_depth:
                raise _Refused(InvalidValueError(f"nested deeper than {self.max_depth} levels"))
            return self.container(value, depth + 1)
        if value is None:
            if self.nulls:
                return 1
            raise _Refused(TypeError("None is not storable inside a value either"))
        raise _Refused(TypeError(f"{kind.__name__} is not JSON-like: use {JSON_KINDS}"))

    def container(self, value: dict[Any, Any] | list[Any], depth: int) -> int:
        size = 5
        if isinstance(value, list):
            for index, item in enumerate(value):
                try:
                    size += 9 + self.size(item, depth)  # type, name (up to 7), value
                except _Refused as refused:
                    refused.path.append(str(index))
                    raise
            return size
        for name, item in value.items():
            if type(name) is not str:
                error = TypeError(f"dict keys must be str, not {type(name).__name__} ({name!r})")
                raise _Refused(error)
            problem = self.field_problem(name)
            if problem is None and _unencodable(name):
                problem = "is not valid unicode (lone surrogate)"
            if problem is not None:
                raise _Refused(InvalidValueError(f"field name {name!r} {problem}"))
            try:
                size += 4 * len(name) + 2 + self.size(item, depth)
            except _Refused as refused:
                refused.path.append(repr(name))
                raise
        return size


def check_json_like(
    values: Collection[Any],
    *,
    max_depth: int,
    field_problem: Callable[[str], str | None],
    integers: range | None = None,
    nulls: bool = False,
) -> list[int]:
    """Check a batch of JSON-like values (dict with `str` keys, list, str, int, float, bool,
    nested) that a document store keeps natively, writing nothing: the values JSON gives back
    exactly as they were. Returns an upper bound of each value's stored size (4 bytes a
    character), for the backend's own ceiling.

    `field_problem(name)` says why the server cannot store a field name (``None``: it can);
    `integers` is the range of integers the server keeps exactly (``None``: any); with
    `nulls`, `None` is taken inside a value (JSON's null), never as the value itself.

    Raises:
        TypeError: a value is `None`, or holds something other than those types (a set, a
            tuple, bytes, a date, an object, a subclass of those types, `None` inside).
        InvalidValueError: NaN or an infinity, an integer out of `integers`, a string or a
            field name with a lone surrogate, a field name `field_problem` refuses, nesting
            deeper than `max_depth`. The message names the place (``value['a'][0]``).
    """
    walker = _Walker(max_depth, field_problem, integers, nulls)
    sizes = []
    for value in values:
        if value is None:
            raise TypeError(_NONE)
        try:
            sizes.append(walker.size(value, 0))
        except _Refused as refused:
            place = "value" + "".join(f"[{part}]" for part in reversed(refused.path))
            error = refused.error
            raise type(error)(f"{place}: {error}") from None
    return sizes
