"""The one implementation of key, value and batch checks that every store runs before touching data.

The checks work on whole batches with C-level passes (``map``, ``join``, ``set``) so that a
batch of valid input costs a few microseconds; the per-item loops only run to name the
offending item once a batch is known to be bad.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from kvstores.errors import ConfigurationError, InvalidKeyError, InvalidValueError

__all__ = [
    "MAX_KEY_LENGTH",
    "NameRule",
    "check_keys",
    "check_name",
    "check_namespace",
    "check_pairs",
    "check_prefix",
    "check_timeout",
    "check_ttl",
    "coerce_byte_values",
    "coerce_object_values",
]

V = TypeVar("V")

MAX_KEY_LENGTH = 1024
MAX_NAMESPACE_LENGTH = 256
_BYTES = {bytes}
_PAIR_TYPES = {tuple, list}


def _short(key: str) -> str:
    return repr(key if len(key) <= 40 else key[:40] + "…")


def _key_problem(key: object) -> Exception | None:
    if not isinstance(key, str):
        return TypeError(f"keys must be str, not {type(key).__name__}")
    if not key:
        return InvalidKeyError("keys must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        return InvalidKeyError(
            f"key {_short(key)} is {len(key)} characters long; the limit is {MAX_KEY_LENGTH}"
        )
    if "\x00" in key:
        return InvalidKeyError(f"key {_short(key)} contains NUL")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return InvalidKeyError(f"key {_short(key)} is not valid unicode (lone surrogate)")
    return None


def _raise_first_problem(keys: Iterable[object]) -> NoReturn:
    for key in keys:
        problem = _key_problem(key)
        if problem is not None:
            raise problem
    raise InvalidKeyError("invalid key in batch")  # unreachable: the fast checks agree


def check_keys(keys: Sequence[str]) -> list[str]:
    """Check a batch of keys and return it as a list (the same list when given one).

    Raises:
        TypeError: `keys` is a single string, or a key is not a `str`.
        InvalidKeyError: a key is empty, over 1024 characters, contains NUL or a lone surrogate.
    """
    if type(keys) is not list:
        if isinstance(keys, (str, bytes)):
            raise TypeError("keys must be a sequence of str, not a single str or bytes")
        keys = list(keys)
    if len(keys) == 1 and _valid_key(keys[0]):  # one key: its checks without the batch passes
        return keys
    if keys and not _valid_keys(keys):
        _raise_first_problem(keys)
    return keys


def _valid_key(key: object) -> bool:
    """Whether one key is a valid plain `str`: `_valid_keys` for a batch of one, cheaper.

    `False` for anything else, a `str` subclass included: the batch checks then decide.
    """
    return (
        type(key) is str
        and 0 < len(key) <= MAX_KEY_LENGTH
        and "\x00" not in key
        and (key.isascii() or _encodable(key))
    )


def _valid_keys(keys: Iterable[str] | dict[str, Any]) -> bool:
    """Whether every key is valid, in a few C-level passes (the common case)."""
    try:
        joined = "".join(keys)  # raises TypeError on a non-str key
    except TypeError:
        return False
    return (
        all(keys)
        and (len(joined) <= MAX_KEY_LENGTH or max(map(len, keys)) <= MAX_KEY_LENGTH)
        and "\x00" not in joined
        and (joined.isascii() or _encodable(joined))
    )


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_prefix(prefix: str | None) -> str:
    """Check a `yield_keys` prefix; `None` and ``""`` both mean every key."""
    if prefix is None:
        return ""
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be str or None, not {type(prefix).__name__}")
    if "\x00" in prefix or not _encodable(prefix):
        raise InvalidKeyError(f"prefix {_short(prefix)} contains NUL or a lone surrogate")
    return str.__str__(prefix)


def coerce_byte_values(values: Collection[Any], max_size: int | None = None) -> Collection[bytes]:
    """Check byte-store values: `bytes` as is, `bytearray`/`memoryview` copied to `bytes`.

    Raises:
        TypeError: a value is `None` or not bytes-like.
        InvalidValueError: a value is longer than `max_size` bytes.
    """
    if set(map(type, values)) != _BYTES:
        converted = []
        for value in values:
            if isinstance(value, bytes):
                converted.append(value)
            elif isinstance(value, (bytearray, memoryview)):
                converted.append(bytes(value))
            elif value is None:
                raise TypeError("None is not a storable value (it means absent); use mdelete")
            else:
                raise TypeError(f"values of a byte store must be bytes, not {type(value).__name__}")
        values = converted
    if max_size is not None and values and max(map(len, values)) > max_size:
        size = max(map(len, values))
        raise InvalidValueError(
            f"a value of {size} bytes is over this backend's limit of {max_size}"
        )
    return values


def coerce_object_values(values: Collection[V | None]) -> Collection[V]:
    """Check values of a store that holds any object: anything but `None`."""
    if type(None) in set(map(type, values)):
        raise TypeError("None is not a storable value (it means absent); use mdelete")
    return values  # type: ignore[return-value]


def check_pairs(
    pairs: Sequence[Any],
    coerce_values: Callable[[Collection[Any]], Collection[V]],
    *,
    check_pair_types: bool = True,
) -> dict[str, V]:
    """Check a whole `mset` batch and return it as an ordered dict, the last value of a key winning.

    Nothing is returned, so nothing can be written, unless every key and value is valid.
    `check_pair_types=False` skips the check that each pair is a tuple or list: a byte
    store may skip it, as its key and value checks already reject whatever else ``dict()``
    accepts as a pair (a 2-character string gives a `str` value, 2 bytes give an `int` key).
    """
    if type(pairs) is list and len(pairs) == 1:  # one pair: no dict to deduplicate through
        pair = pairs[0]
        if type(pair) in _PAIR_TYPES and len(pair) == 2 and _valid_key(pair[0]):
            (value,) = coerce_values((pair[1],))
            return {pair[0]: value}
    if isinstance(pairs, (str, bytes)) or (
        check_pair_types and not set(map(type, pairs)) <= _PAIR_TYPES
    ):
        bad = next((p for p in pairs if not isinstance(p, (tuple, list))), pairs)
        raise TypeError(f"mset takes a sequence of (key, value) pairs, got {type(bad).__name__}")
    try:
        batch: dict[Any, Any] = dict(pairs)
    except TypeError:  # an unhashable key
        _raise_first_problem(p[0] for p in pairs)
        raise
    except ValueError:
        raise TypeError("mset takes a sequence of (key, value) pairs") from None
    if not _valid_keys(batch):
        _raise_first_problem(batch)
    values = batch.values()
    coerced = coerce_values(values)
    if coerced is not values:  # some values were converted (bytearray → bytes, …)
        batch = dict(zip(batch, coerced, strict=True))
    return batch


def check_namespace(namespace: str | None) -> str | None:
    """A namespace is `None` or a non-empty `str` of at most 256 characters without NUL."""
    if namespace is None:
        return None
    if not isinstance(namespace, str):
        raise TypeError(f"namespace must be str or None, not {type(namespace).__name__}")
    if not namespace or len(namespace) > MAX_NAMESPACE_LENGTH or "\x00" in namespace:
        raise ConfigurationError(
            f"namespace must be 1 to {MAX_NAMESPACE_LENGTH} characters without NUL, "
            f"got {_short(namespace)}"
        )
    if not _encodable(namespace):
        raise ConfigurationError(f"namespace {_short(namespace)} contains a lone surrogate")
    return str.__str__(namespace)


def _seconds(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, not {type(value).__name__}")
    if not (value > 0 and math.isfinite(value)):
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def check_ttl(ttl: float | None) -> float | None:
    """A ttl is `None` (never expire) or a positive, finite number of seconds."""
    return None if ttl is None else _seconds("ttl", ttl)


DEFAULT_TIMEOUT = 10.0


def check_timeout(timeout: float | None) -> float:
    """A timeout is a positive, finite number of seconds; `None` means the default, 10 s."""
    return DEFAULT_TIMEOUT if timeout is None else _seconds("timeout", timeout)


@dataclass(frozen=True)
class NameRule:
    """What a backend accepts as the name of one of its objects (a table, a collection, a
    keyspace, a database), as data: each backend states its server's rules, `check_name`
    holds the names a user gives to them before anything is sent.

    A name must match `pattern` whole and take at most `max_bytes` bytes of UTF-8; it must
    not be one of `reserved` nor start with one of `reserved_prefixes` (compared in lower
    case where `fold_case`: the server folds it, or treats names differing in case alike).
    """

    backend: str  #: names the backend in messages: ``cassandra``
    kind: str  #: what is named: ``keyspace``
    pattern: re.Pattern[str]
    allowed: str  #: what `pattern` allows, in words, for messages
    max_bytes: int
    reserved: frozenset[str] = frozenset()
    reserved_prefixes: tuple[str, ...] = ()
    fold_case: bool = False


#: Cassandra's own keyspaces: no user's keyspace takes one of their names.
CQL_SYSTEM_KEYSPACES = frozenset(
    {
        "system",
        "system_auth",
        "system_cluster_metadata",
        "system_distributed",
        "system_schema",
        "system_traces",
        "system_views",
        "system_virtual_schema",
    }
)
_CQL_NAME = re.compile(r"[A-Za-z0-9_]{1,48}")


def cql_name_rule(backend: str, kind: str, *, keyspace: bool = False) -> NameRule:
    """Cassandra's rule for names, which the Data API keeps for its keyspaces and
    collections: 1 to 48 ASCII letters, digits or underscores; a `keyspace` is none of the
    server's own (compared in lower case: the server knows them in any case)."""
    return NameRule(
        backend,
        kind,
        _CQL_NAME,
        "1 to 48 letters, digits or underscores",
        48,
        reserved=CQL_SYSTEM_KEYSPACES if keyspace else frozenset(),
        fold_case=keyspace,
    )


def check_name(rule: NameRule, name: object) -> str:
    """`name` if `rule` allows it.

    Raises:
        TypeError: `name` is not a `str`.
        ConfigurationError: `name` does not match the rule's pattern, is too long, or is
            reserved; the message names the rule, the name (shortened) and the backend.
    """
    if not isinstance(name, str):
        raise TypeError(f"{rule.kind} must be str, not {type(name).__name__}")
    if not rule.pattern.fullmatch(name) or not _encodable(name):
        raise ConfigurationError(
            f"{rule.backend}: {rule.kind} must be {rule.allowed}, got {_short(name)}"
        )
    size = len(name.encode())
    if size > rule.max_bytes:
        raise ConfigurationError(
            f"{rule.backend}: {rule.kind} must be at most {rule.max_bytes} bytes of UTF-8, "
            f"got {size}: {_short(name)}"
        )
    compared = name.lower() if rule.fold_case else name
    if compared in rule.reserved or compared.startswith(rule.reserved_prefixes):
        raise ConfigurationError(
            f"{rule.backend}: {rule.kind} {_short(name)} is reserved by the server; name another"
        )
    return str.__str__(name)
