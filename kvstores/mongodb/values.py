"""What `MongoDBStore` takes as a value: JSON-like data that BSON gives back exactly as it was."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from kvstores.backend import InvalidValueError, check_json_like, require

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


def _field_problem(name: str) -> str | None:
    if "." in name:
        return "contains '.'"
    if name.startswith("$"):
        return "starts with '$'"
    if "\x00" in name:
        return "contains NUL"
    return None


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
    sizes = check_json_like(
        values, max_depth=MAX_DEPTH, field_problem=_field_problem, integers=_INT64
    )
    for value, size in zip(values, sizes, strict=True):
        if size > max_size:
            exact = len(bson.encode({"v": value}))
            if exact > max_size:
                raise InvalidValueError(
                    f"a value of {exact} bytes as BSON is over MongoDB's limit of {max_size}"
                )
    return values
