"""What `MongoDBStore` takes as a value: JSON-like data that BSON gives back exactly as it was."""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from typing import Any

from kvstores.backend import InvalidValueError, require

require("pymongo", "mongodb")

import bson  # noqa: E402

__all__ = ["MAX_DEPTH", "MAX_DOCUMENT_VALUE", "check_documents"]

#: The largest stored value, in bytes: MongoDB's 16 MiB document limit (16,777,216 bytes)
#: minus 8 KiB for the envelope (``_id`` of up to 1024 4-byte characters plus a namespace of up
#: to 256 of them, field names, the expiry date). For `MongoDBStore`, the size counted is that
#: of the BSON document ``{"v": value}``.
MAX_DOCUMENT_VALUE = 16 * 1024 * 1024 - 8 * 1024
#: Dicts and lists nested in a value, at most: MongoDB refuses documents nested deeper than
#: 100 levels, and the stored document adds one.
MAX_DEPTH = 98
_INT64 = range(-(2**63), 2**63)
_NONE = "None is not a storable value (it means absent); use mdelete"
_SURROGATE = re.compile("[\ud800-\udfff]")
_KINDS = "dict (with str keys), list, str, int, float or bool"


class _Refused(Exception):
    """A value part that cannot be stored: the error to raise, and the path to the part."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.path: list[str] = []


def _field_problem(name: str) -> str | None:
    if "." in name:
        return "contains '.'"
    if name.startswith("$"):
        return "starts with '$'"
    if "\x00" in name:
        return "contains NUL"
    if _unencodable(name):
        return "is not valid unicode (lone surrogate)"
    return None


def _unencodable(text: str) -> bool:
    """Whether `text` holds a lone surrogate, which UTF-8 (so BSON) cannot hold."""
    return not text.isascii() and _SURROGATE.search(text) is not None


def _size(value: Any, depth: int) -> int:
    """An upper bound of `value`'s BSON size; raises `_Refused` for what it cannot hold."""
    kind = type(value)
    if kind is str:
        if _unencodable(value):
            raise _Refused(InvalidValueError("a string is not valid unicode (lone surrogate)"))
        return 4 * len(value) + 5
    if kind is bool:
        return 1
    if kind is int:
        if value not in _INT64:
            raise _Refused(InvalidValueError(f"{value} is out of BSON's 64-bit integer range"))
        return 8
    if kind is float:
        if not math.isfinite(value):
            raise _Refused(InvalidValueError(f"{value!r} is not JSON (NaN and infinity)"))
        return 8
    if kind is dict or kind is list:
        if depth >= MAX_DEPTH:
            raise _Refused(InvalidValueError(f"nested deeper than {MAX_DEPTH} levels"))
        return _container_size(value, depth + 1)
    if value is None:
        raise _Refused(TypeError("None is not storable inside a value either"))
    raise _Refused(TypeError(f"{kind.__name__} is not JSON-like: use {_KINDS}"))


def _container_size(value: dict[Any, Any] | list[Any], depth: int) -> int:
    size = 5
    if isinstance(value, list):
        for index, item in enumerate(value):
            try:
                size += 9 + _size(item, depth)  # an element: type, name (up to 7), value
            except _Refused as refused:
                refused.path.append(str(index))
                raise
        return size
    for name, item in value.items():
        if type(name) is not str:
            error = TypeError(f"dict keys must be str, not {type(name).__name__} ({name!r})")
            raise _Refused(error)
        problem = _field_problem(name)
        if problem is not None:
            raise _Refused(InvalidValueError(f"field name {name!r} {problem}"))
        try:
            size += 4 * len(name) + 2 + _size(item, depth)
        except _Refused as refused:
            refused.path.append(repr(name))
            raise
    return size


def check_documents(values: Collection[Any], max_size: int = MAX_DOCUMENT_VALUE) -> Collection[Any]:
    """Check `MongoDBStore` values, the whole batch, writing nothing.

    Raises:
        TypeError: a value is `None`, or holds something other than dict (with `str`
            keys), list, str, int, float and bool (a set, a tuple, bytes, a date, an
            object, a subclass of those types, `None` inside).
        InvalidValueError: a value holds NaN or an infinity, an integer out of BSON's 64-bit
            range, a string with a lone surrogate, a field name MongoDB cannot store (with
            ``.``, a leading ``$``, NUL), nests deeper than `MAX_DEPTH`, or is larger than
            `max_size` as BSON. The message names the place (``value['a'][0]``).
    """
    for value in values:
        if value is None:
            raise TypeError(_NONE)
        try:
            size = _size(value, 0)
        except _Refused as refused:
            place = "value" + "".join(f"[{part}]" for part in reversed(refused.path))
            error = refused.error
            raise type(error)(f"{place}: {error}") from None
        if size > max_size:
            exact = len(bson.encode({"v": value}))
            if exact > max_size:
                raise InvalidValueError(
                    f"a value of {exact} bytes as BSON is over MongoDB's limit of {max_size}"
                )
    return values
