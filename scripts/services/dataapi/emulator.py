#!/usr/bin/env python3
"""An emulator of DataStax's Data API (v1, collections only) over Apache Cassandra, for tests.

The real Data API (the open-source Stargate Data API behind Astra DB, HCD and DSE) is not in
any package registry, so kvstores' AstraDB tests run against this program instead. It speaks
the JSON-over-HTTP protocol astrapy 2.x uses and keeps the documents in a real Cassandra 5.0
node the way the Data API does, simplified: one table per collection with the ``_id`` as the
partition key, the document as JSON text, a ``tx_id`` for optimistic concurrency (lightweight
transactions) and the indexed scalar fields "shredded" into one ``map<text, text>`` under a
Storage-Attached Index on its entries. It reproduces the behaviours seen on the real server over
Cassandra 5.0 (scripts/services/dataapi.sh, ../../shared/SERVERS.md): the filters that work and
the ones refused, page sizes, ``moreData`` on deleteMany/countDocuments, the document limits,
floats without fraction coming back as integers, the ``{"_id": 1}`` projection quirk, the
countDocuments ``$in`` bug, deleteMany({}) counting -1. What it does not emulate is refused with
errorCode ``EMULATOR_UNSUPPORTED`` rather than answered wrongly.

Usage: emulator.py --port 58181 --cassandra 127.0.0.1:59042 [--page-size 20] [--token T]

Standard library plus cassandra-driver only. Logs to stderr; SIGTERM or SIGINT stops it.
Besides the Data API (POST /v1/..., /api/json/v1/... or any api_path ending in /v1), it serves
``GET /emulator/stats[?keyspace=K&collection=C]`` (commands received, per command name, since
start or the last ``POST /emulator/reset-stats[?keyspace=K&collection=C]``) for tests that count
the requests a client sends.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import logging
import math
import os
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cassandra import (
    ConsistencyLevel,
    InvalidRequest,
    OperationTimedOut,
    ReadTimeout,
    Unavailable,
    WriteTimeout,
)
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.policies import RoundRobinPolicy
from cassandra.query import PreparedStatement

log = logging.getLogger("dataapi-emulator")

# The real server's limits (Data API limits page; stargate/data-api OperationsConfig and
# DocumentLimitsConfig; ../../shared/SERVERS.md for the 4,000,000-character document).
MAX_DOC_CHARS = 4_000_000
MAX_INDEXED_STRING_BYTES = 8_000
MAX_DEPTH = 16
MAX_NAME_LENGTH = 100
MAX_PATH_LENGTH = 1_000
MAX_NUMBER_LENGTH = 100
MAX_ARRAY_LENGTH = 1_000  # indexed arrays only
MAX_OBJECT_PROPERTIES = 1_000  # indexed objects only
MAX_DOC_PROPERTIES = 2_000  # indexed properties of a document
MAX_IN_VALUES = 100
MAX_INSERT_DOCUMENTS = 100
DELETE_BATCH = 20  # deleteMany deletes at most this many per request, then says moreData
UPDATE_BATCH = 20  # updateMany likewise, with a nextPageState
MAX_COUNT = 1_000  # countDocuments counts up to this, then says moreData
LWT_RETRIES = 3  # the real server's default (stargate.jsonapi.operations.lwt.retries)
MAX_COLLECTIONS = 0  # per keyspace; 0: no limit (the real server's default is 5)

NAME_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9_]{0,47}")
SYSTEM_KEYSPACES = frozenset(
    {
        "system",
        "system_auth",
        "system_distributed",
        "system_schema",
        "system_traces",
        "system_views",
        "system_virtual_schema",
        "dse_system",
        "dse_security",
        "dse_leases",
        "dse_insights",
        "dse_insights_local",
        "dse_perf",
        "dse_system_local",
        "solr_admin",
        "data_endpoint_auth",
    }
)
EJSON_TYPES = frozenset({"$date", "$binary", "$uuid", "$objectId"})
OPERATORS = frozenset(
    {"$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists", "$all", "$size"}
)
COMMENT_KEY = "collection"  # the real server keeps a collection's options in the table comment

# errorCode -> (family, scope, title), from the real server's errors.yaml where one exists.
ERRORS: dict[str, tuple[str, str, str]] = {
    "UNAUTHENTICATED_REQUEST": ("REQUEST", "", "Authentication failed"),
    "COMMAND_UNKNOWN": ("REQUEST", "", "Command is not recognized by Data API"),
    "COMMAND_FIELD_VALUE_INVALID": ("REQUEST", "", "Command field value invalid"),
    "REQUEST_NOT_JSON": ("REQUEST", "", "Request not valid JSON"),
    "REQUEST_STRUCTURE_MISMATCH": ("REQUEST", "", "Request structure not valid"),
    "DOCUMENT_ALREADY_EXISTS": ("REQUEST", "DOCUMENT", "Document the given _id already exists"),
    "DOCUMENT_REPLACE_DIFFERENT_DOCID": (
        "REQUEST",
        "DOCUMENT",
        "Document the given _id already exists",
    ),
    "SHRED_BAD_DOCID_TYPE": ("REQUEST", "DOCUMENT", "Bad type for '_id' field"),
    "SHRED_BAD_DOCUMENT_TYPE": ("REQUEST", "DOCUMENT", "Bad document type to shred"),
    "SHRED_BAD_EJSON_VALUE": ("REQUEST", "DOCUMENT", "Bad JSON Extension value to shred"),
    "SHRED_BAD_FIELD_NAME": ("REQUEST", "DOCUMENT", "Document field name not valid"),
    "SHRED_DOC_LIMIT_VIOLATION": ("REQUEST", "DOCUMENT", "Document size limitation violated"),
    "VECTOR_SEARCH_NOT_SUPPORTED": (
        "REQUEST",
        "DOCUMENT",
        "Vector search is not enabled for the collection",
    ),
    "FILTER_ID_NOT_INDEXED": (
        "REQUEST",
        "FILTER",
        "Collection field '_id' not indexed can only filter with '$eq' or '$in'",
    ),
    "FILTER_INVALID_EXPRESSION": ("REQUEST", "FILTER", "Unsupported filter clause"),
    "FILTER_MULTIPLE_ID_FILTER": (
        "REQUEST",
        "FILTER",
        "Can only have one '_id' equals filter clause",
    ),
    "FILTER_PATH_UNINDEXED": (
        "REQUEST",
        "FILTER",
        "Collection path used in filter clause not indexed",
    ),
    "FILTER_UNSUPPORTED_OPERATOR": ("REQUEST", "FILTER", "Unsupported filter operator"),
    "UNSUPPORTED_UPDATE_OPERATION": ("REQUEST", "UPDATE", "Unsupported update operation"),
    "UNSUPPORTED_UPDATE_OPERATOR_FOR_DOC_ID": (
        "REQUEST",
        "UPDATE",
        "Update operators cannot be used on _id field",
    ),
    "UNSUPPORTED_PROJECTION_PARAM": ("REQUEST", "PROJECTION", "Unsupported projection parameter"),
    "COLLECTION_NOT_EXIST": ("REQUEST", "SCHEMA", "Collection or table does not exist"),
    "UNKNOWN_KEYSPACE": ("REQUEST", "SCHEMA", "Keyspace does not exist in the Database"),
    "UNSUPPORTED_SCHEMA_NAME": ("REQUEST", "SCHEMA", "The used schema name is not supported"),
    "INVALID_CREATE_COLLECTION_OPTIONS": (
        "REQUEST",
        "SCHEMA",
        "Invalid options for createCollection",
    ),
    "INVALID_INDEXING_DEFINITION": ("REQUEST", "SCHEMA", "Invalid indexing definition"),
    "EXISTING_COLLECTION_DIFFERENT_SETTINGS": (
        "REQUEST",
        "SCHEMA",
        "Collection already exists with different settings",
    ),
    "EXISTING_TABLE_NOT_DATA_API_COLLECTION": (
        "REQUEST",
        "SCHEMA",
        "Existing table not a valid Data API collection",
    ),
    "TOO_MANY_COLLECTIONS": ("SERVER", "DATABASE", "Too many collections"),
    "INVALID_COLLECTION_QUERY": ("SERVER", "DATABASE", "Invalid query"),
    "FAILED_CONCURRENT_OPERATIONS": (
        "SERVER",
        "DATABASE",
        "Failed to complete concurrent operations on the database",
    ),
    "FAILED_TO_CONNECT_TO_DATABASE": (
        "SERVER",
        "DATABASE",
        "Data API Failed to connect to the database",
    ),
    "UNAVAILABLE_DATABASE": ("SERVER", "DATABASE", "The database is unavailable"),
    "TIMEOUT_READING_DATA": ("SERVER", "DATABASE", "Timeout reading data from the database"),
    "TIMEOUT_WRITING_DATA": ("SERVER", "DATABASE", "Timeout writing data to the database"),
    "INVALID_DATABASE_QUERY": ("SERVER", "DATABASE", "Invalid database query"),
    "UNEXPECTED_DRIVER_ERROR": ("SERVER", "DATABASE", "Unexpected driver error"),
    "INTERNAL_SERVER_ERROR": ("SERVER", "", "Internal server error"),
    # Not a real code: what this emulator does not implement (the real server may).
    "EMULATOR_UNSUPPORTED": ("REQUEST", "", "Not supported by the kvstores Data API emulator"),
}


class ApiError(Exception):
    """A Data API error: becomes one entry of the response's ``errors``."""

    def __init__(self, code: str, message: str, http_status: int = 200) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status

    def to_json(self) -> dict[str, Any]:
        family, scope, title = ERRORS[self.code]
        return {
            "message": self.message,
            "errorCode": self.code,
            "id": str(uuid.uuid4()),
            "family": family,
            "scope": scope,
            "title": title,
        }


def _fix(text: str) -> str:
    return f"{text}\n\nResend the command with a fix."


def unsupported(what: str) -> ApiError:
    return ApiError("EMULATOR_UNSUPPORTED", f"{what} is not implemented by this emulator.")


# ----------------------------------------------------------------------------- paths


def escape_segment(name: str) -> str:
    """A field name as one segment of a dotted path (the real server's escaping)."""
    return name.replace("&", "&&").replace(".", "&.")


def join_path(path: str, name: str) -> str:
    """The dotted path of field `name` of the object at `path` ("" for the document)."""
    return f"{path}.{escape_segment(name)}" if path else escape_segment(name)


def split_path(path: str) -> list[str]:
    """Dotted path -> field names; `&.` is a literal dot and `&&` a literal ampersand."""
    segments, current, i = [], [], 0
    while i < len(path):
        ch = path[i]
        if ch == "&":
            if i + 1 < len(path) and path[i + 1] in "&.":
                current.append(path[i + 1])
                i += 2
                continue
            raise ApiError(
                "FILTER_INVALID_EXPRESSION",
                _fix(f"Unsupported filter clause: invalid escape sequence in path '{path}'"),
            )
        if ch == ".":
            segments.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    segments.append("".join(current))
    return segments


@dataclass(frozen=True)
class Indexing:
    """A collection's `indexing` option: an allow list, a deny list, or everything."""

    allow: tuple[str, ...] | None = None
    deny: tuple[str, ...] | None = None

    @staticmethod
    def _under(path: str, roots: tuple[str, ...]) -> bool:
        return any(r == "*" or path == r or path.startswith(r + ".") for r in roots)

    def indexed(self, path: str) -> bool:
        if self.deny is not None:
            return not self._under(path, self.deny)
        if self.allow is not None:
            return self._under(path, self.allow)
        return True

    def descend(self, path: str) -> bool:
        """Whether anything under the object at `path` may be indexed."""
        if self.indexed(path):
            return True
        return self.allow is not None and any(a.startswith(path + ".") for a in self.allow)


def parse_indexing(raw: Any) -> Indexing:
    if raw is None:
        return Indexing()
    if not isinstance(raw, dict) or set(raw) - {"allow", "deny"} or len(raw) != 1:
        raise ApiError(
            "INVALID_INDEXING_DEFINITION",
            "'createCollection' indexing definition invalid: "
            "`indexing` needs to have either `deny` or `allow` list.",
        )
    ((kind, paths),) = raw.items()
    if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
        raise ApiError(
            "INVALID_INDEXING_DEFINITION",
            f"'createCollection' indexing definition invalid: `{kind}` must be a list of "
            "non-empty strings.",
        )
    return Indexing(**{kind: tuple(paths)})


# ----------------------------------------------------------------------------- values


def _number_text(value: int | float) -> str:
    return str(value) if isinstance(value, int) else repr(value)


def normalize(value: Any, path: str, depth: int) -> Any:
    """Validate a document value and return it as the server stores it: a float with no
    fractional part becomes an integer (1.0 -> 1), as on the real server."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ApiError("SHRED_BAD_EJSON_VALUE", "NaN and Infinity are not valid JSON numbers")
        if value.is_integer() and abs(value) < 2**63:
            value = int(value)
    if isinstance(value, int | float):
        if len(_number_text(value)) > MAX_NUMBER_LENGTH:
            raise ApiError(
                "SHRED_DOC_LIMIT_VIOLATION",
                f"Document size limitation violated: Number value length "
                f"({len(_number_text(value))}) exceeds the maximum allowed "
                f"({MAX_NUMBER_LENGTH}) (path '{path}')",
            )
        return value
    depth += 1
    if depth > MAX_DEPTH:
        raise ApiError(
            "SHRED_DOC_LIMIT_VIOLATION",
            f"Document size limitation violated: document depth exceeds maximum allowed "
            f"({MAX_DEPTH})",
        )
    if isinstance(value, list):
        return [normalize(v, path, depth) for v in value]
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)).startswith("$"):
            return check_ejson(value, path)
        out = {}
        for key, item in value.items():
            if key.startswith("$"):
                if depth == 1 and key in ("$vector", "$vectorize"):
                    raise ApiError(
                        "VECTOR_SEARCH_NOT_SUPPORTED",
                        "Vector search is not enabled for the collection",
                    )
                raise ApiError(
                    "SHRED_BAD_FIELD_NAME",
                    f"Document field name not valid: field name '{key}' starts with '$'.",
                )
            if len(key) > MAX_NAME_LENGTH:
                raise ApiError(
                    "SHRED_DOC_LIMIT_VIOLATION",
                    f"Document size limitation violated: property name length "
                    f"({len(key)}) exceeds maximum allowed ({MAX_NAME_LENGTH}) "
                    f"(name '{key[:MAX_NAME_LENGTH]}...')",
                )
            sub = join_path(path, key)
            if len(sub) > MAX_PATH_LENGTH:
                raise ApiError(
                    "SHRED_DOC_LIMIT_VIOLATION",
                    f"Document size limitation violated: field path length ({len(sub)}) "
                    f"exceeds maximum allowed ({MAX_PATH_LENGTH}) (path ends with '{key}')",
                )
            out[key] = normalize(item, sub, depth)
        return out
    raise ApiError("SHRED_BAD_DOCUMENT_TYPE", f"unsupported JSON value {value!r}")


def check_ejson(value: dict[str, Any], path: str) -> dict[str, Any]:
    """An extended-JSON wrapper ({"$date": millis}, {"$binary": base64}, {"$uuid": ...},
    {"$objectId": ...}), validated; returned as given."""
    ((kind, inner),) = value.items()
    bad = None
    if kind == "$date":
        if isinstance(inner, bool) or not isinstance(inner, int):
            bad = "a number (milliseconds since the epoch)"
    elif kind == "$binary":
        try:
            if not isinstance(inner, str):
                raise ValueError
            base64.b64decode(inner, validate=True)
        except (ValueError, binascii.Error):
            bad = "a Base64-encoded String"
    elif kind == "$uuid":
        try:
            uuid.UUID(inner)
        except (TypeError, ValueError, AttributeError):
            bad = "a UUID String"
    elif kind == "$objectId":
        if not (isinstance(inner, str) and re.fullmatch(r"[0-9a-fA-F]{24}", inner)):
            bad = "a 24-digit hexadecimal String"
    else:
        raise ApiError(
            "SHRED_BAD_EJSON_VALUE",
            f"Bad JSON Extension value to shred: unrecognized extended JSON type '{kind}' "
            f"(path '{path}')",
        )
    if bad:
        raise ApiError(
            "SHRED_BAD_EJSON_VALUE",
            f"Bad JSON Extension value to shred: invalid value ({json.dumps(inner)}) for "
            f"extended JSON type '{kind}' (path '{path}'): must be {bad}",
        )
    return value


def typed(value: Any) -> str:
    """A scalar (or extended-JSON scalar) as typed text, so "1", 1, true and "true" differ.
    Used for the indexed values and for the `_id` (the table's key)."""
    if value is None:
        return "z"
    if isinstance(value, bool):
        return "b:true" if value else "b:false"
    if isinstance(value, str):
        return "s:" + value
    if isinstance(value, int | float):
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
            value = int(value)
        return "n:" + _number_text(value)
    if isinstance(value, dict) and len(value) == 1:
        ((kind, inner),) = value.items()
        if kind == "$date":
            return f"d:{inner}"
        if kind == "$uuid":
            return "u:" + str(uuid.UUID(inner))
        if kind == "$objectId":
            return "o:" + inner.lower()
        if kind == "$binary":
            return "x:" + hashlib.sha256(base64.b64decode(inner)).hexdigest()
    raise ValueError(f"not a scalar: {value!r}")


def is_scalar(value: Any) -> bool:
    if value is None or isinstance(value, bool | str | int | float):
        return True
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in EJSON_TYPES


def shred(doc: dict[str, Any], indexing: Indexing) -> dict[str, str]:
    """The indexed scalar fields of a (normalized) document, as {escaped dotted path: typed
    text}, after checking the limits the real server applies to indexed values only."""
    out: dict[str, str] = {}
    total = [0]

    def check_string(name: str, text: str) -> None:
        if len(text) * 4 > MAX_INDEXED_STRING_BYTES:  # else short enough in any encoding
            size = len(text.encode("utf-8", "surrogatepass"))
            if size > MAX_INDEXED_STRING_BYTES:
                raise ApiError(
                    "SHRED_DOC_LIMIT_VIOLATION",
                    f"Document size limitation violated: indexed String value (field '{name}') "
                    f"length ({size} bytes) exceeds maximum allowed "
                    f"({MAX_INDEXED_STRING_BYTES} bytes)",
                )

    def walk(name: str, path: str, value: Any, in_array: bool) -> None:
        if isinstance(value, dict) and not is_scalar(value):
            if indexing.descend(path):
                walk_object(name, path, value, in_array)
            return
        if path and not indexing.indexed(path):
            return
        if isinstance(value, list):
            if len(value) > MAX_ARRAY_LENGTH:
                raise ApiError(
                    "SHRED_DOC_LIMIT_VIOLATION",
                    f"Document size limitation violated: number of elements an indexable Array "
                    f"(field '{name}') has ({len(value)}) exceeds maximum allowed "
                    f"({MAX_ARRAY_LENGTH})",
                )
            for item in value:  # elements are checked, but only top values are indexed here
                walk(name, path, item, True)
            return
        if isinstance(value, str):
            check_string(name, value)
        if not in_array:
            out[path] = typed(value)

    def walk_object(name: str, path: str, obj: dict[str, Any], in_array: bool) -> None:
        keys = [k for k in obj if indexing.indexed(join_path(path, k))]
        if len(keys) > MAX_OBJECT_PROPERTIES:
            raise ApiError(
                "SHRED_DOC_LIMIT_VIOLATION",
                f"Document size limitation violated: number of properties an indexable Object "
                f"(field '{name}') has ({len(keys)}) exceeds maximum allowed "
                f"({MAX_OBJECT_PROPERTIES})",
            )
        total[0] += len(keys)
        for key, item in obj.items():
            if not path and key == "_id":
                if isinstance(item, str):
                    check_string(key, item)
                continue
            walk(key, join_path(path, key), item, in_array)

    walk_object("", "", doc, False)
    if total[0] > MAX_DOC_PROPERTIES:
        raise ApiError(
            "SHRED_DOC_LIMIT_VIOLATION",
            f"Document size limitation violated: total number of indexed properties "
            f"({total[0]}) in document exceeds maximum allowed ({MAX_DOC_PROPERTIES})",
        )
    return out


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def utf16_length(text: str) -> int:
    """len() of a Java String: what the real server measures a document's size with."""
    if len(text) > MAX_DOC_CHARS or len(text) * 2 <= MAX_DOC_CHARS:
        return len(text)  # already over, or cannot be over even with surrogate pairs
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


# ----------------------------------------------------------------------------- filters


@dataclass(frozen=True)
class Query:
    """What a filter became: all rows, `_id` equality / $in, or equality on one indexed path."""

    kind: str  # "all" | "id_in" | "field_eq"
    keys: tuple[str, ...] = ()  # typed `_id`s for "id_in"
    path: str = ""
    value: str = ""  # typed value for "field_eq"
    eq_fields: tuple[tuple[str, Any], ...] = ()  # equality fields, copied into upserts
    count_in_first_only: bool = False


def parse_filter(raw: Any, indexing: Indexing) -> Query:
    if raw is None or raw == {}:
        return Query("all")
    if not isinstance(raw, dict):
        raise ApiError(
            "FILTER_INVALID_EXPRESSION", _fix("Unsupported filter clause: filter must be an Object")
        )
    conditions: list[tuple[str, str, Any]] = []

    def collect(clause: Any) -> None:
        if not isinstance(clause, dict):
            raise ApiError(
                "FILTER_INVALID_EXPRESSION",
                _fix("Unsupported filter clause: a filter clause must be an Object"),
            )
        for key, value in clause.items():
            if key == "$and":
                if not isinstance(value, list) or not value:
                    raise ApiError(
                        "FILTER_INVALID_EXPRESSION",
                        _fix("Unsupported filter clause: '$and' needs a non-empty Array"),
                    )
                for sub in value:
                    collect(sub)
            elif key == "$or":
                if not isinstance(value, list) or not value:
                    raise ApiError(
                        "FILTER_INVALID_EXPRESSION",
                        _fix("Unsupported filter clause: '$or' needs a non-empty Array"),
                    )
                if len(value) == 1:
                    collect(value[0])
                    continue
                if all(isinstance(s, dict) and list(s) == ["_id"] for s in value):
                    raise ApiError(
                        "FILTER_MULTIPLE_ID_FILTER",
                        "Command included more than one '_id' equals filter clauses, which is "
                        "not supported: use '$in' operator instead.\n\nResend the command using "
                        "supported filters.",
                    )
                raise cassandra_refuses("'$or' of several conditions")
            elif key.startswith("$"):
                raise ApiError(
                    "FILTER_UNSUPPORTED_OPERATOR",
                    f"Unsupported filter operator '{key}'.\n\nResend the command using only "
                    "supported operators.",
                )
            elif isinstance(value, dict) and value and all(k.startswith("$") for k in value):
                if len(value) == 1 and next(iter(value)) in EJSON_TYPES:
                    conditions.append((key, "$eq", value))
                else:
                    conditions.extend((key, op, operand) for op, operand in value.items())
            else:
                conditions.append((key, "$eq", value))

    collect(raw)
    if not conditions:
        return Query("all")
    ids = [c for c in conditions if c[0] == "_id" and c[1] == "$eq"]
    if len(ids) > 1:
        raise ApiError(
            "FILTER_MULTIPLE_ID_FILTER",
            "Command included more than one '_id' equals filter clauses, which is not "
            "supported: use '$in' operator instead.\n\nResend the command using supported "
            "filters.",
        )
    if len(conditions) > 1:
        raise cassandra_refuses(f"a filter combining {len(conditions)} conditions")
    ((path, op, operand),) = conditions
    if op not in OPERATORS:
        raise ApiError(
            "FILTER_UNSUPPORTED_OPERATOR",
            f"Unsupported filter operator '{op}'.\n\nResend the command using only supported "
            "operators.",
        )
    if path == "_id":
        if op == "$eq":
            key = typed_id(operand, "FILTER_INVALID_EXPRESSION")
            return Query("id_in", keys=(key,), eq_fields=(("_id", operand),))
        if op == "$in":
            if not isinstance(operand, list):
                raise ApiError(
                    "FILTER_INVALID_EXPRESSION",
                    _fix("Unsupported filter clause: '$in' operator must have Array value"),
                )
            if len(operand) > MAX_IN_VALUES:
                raise ApiError(
                    "FILTER_INVALID_EXPRESSION",
                    _fix(
                        f"Unsupported filter clause: '$in' operator must have at most "
                        f"{MAX_IN_VALUES} values ({len(operand)} given)"
                    ),
                )
            keys = tuple(dict.fromkeys(typed_id(v, "FILTER_INVALID_EXPRESSION") for v in operand))
            return Query("id_in", keys=keys, count_in_first_only=True)
        raise ApiError(
            "FILTER_ID_NOT_INDEXED",
            f"Collection field '_id' is never indexed so filtering can only be done using "
            f"operators '$eq' or '$in', not '{op}'.\n\nResend the command with proper filter.",
        )
    segments = split_path(path)
    if any(s.startswith("$") for s in segments):
        raise ApiError(
            "FILTER_INVALID_EXPRESSION",
            _fix(f"Unsupported filter clause: invalid filter path '{path}'"),
        )
    if not indexing.indexed(path):
        raise ApiError(
            "FILTER_PATH_UNINDEXED",
            f"Collection path '{path}' is not indexed: cannot filter on that path.\n\nResend "
            "the command with filter clause without such paths.",
        )
    if op != "$eq":
        if op in ("$gt", "$gte", "$lt", "$lte"):
            raise cassandra_refuses(
                f"the range operator '{op}'", "Only EQ relations are supported on map entries"
            )
        raise cassandra_refuses(f"the operator '{op}' on '{path}'")
    if not is_scalar(operand):
        raise unsupported("Equality with an Object or Array value")
    normalize(operand, path, 0)  # validates extended JSON
    return Query("field_eq", path=path, value=typed(operand), eq_fields=((path, operand),))


def typed_id(value: Any, code: str) -> str:
    if isinstance(value, list) or (isinstance(value, dict) and not is_scalar(value)):
        raise ApiError(code, _fix(f"Bad type for '_id' value: {dumps(value)[:100]}"))
    try:
        normalize(value, "_id", 0)
    except ApiError as exc:
        raise ApiError(code, _fix(exc.message)) from None
    return typed(value)


def cassandra_refuses(what: str, reason: str | None = None) -> ApiError:
    """The filters the real Data API passed on to Cassandra 5.0, which refused them."""
    detail = f" ({reason})" if reason else ""
    return ApiError(
        "INVALID_COLLECTION_QUERY",
        f"Invalid query against a collection.\nUnderlying problem: {what} cannot be run by "
        f"the Data API on Apache Cassandra 5.0{detail}: filter on '_id' (equality or '$in') "
        f"or on one other indexed field (equality).\n\nReview the Error Message before "
        f"retrying this request.",
    )


# ----------------------------------------------------------------------------- projection


def parse_projection(raw: Any) -> tuple[str, list[list[str]], bool] | None:
    """None for whole documents, else ("include"|"exclude", paths, include_id)."""
    if raw is None or raw == {}:
        return None
    if not isinstance(raw, dict):
        raise ApiError(
            "UNSUPPORTED_PROJECTION_PARAM",
            "Unsupported projection parameter: projection must be an Object.",
        )
    include_id = True
    includes, excludes = [], []
    for key, flag in raw.items():
        if isinstance(flag, dict) or not isinstance(flag, bool | int):
            raise unsupported(f"The projection operator of '{key}'")
        if key == "*":
            if flag:
                return None
            raise unsupported("The projection {'*': 0}")
        if key == "_id":
            include_id = bool(flag)
            continue
        (includes if flag else excludes).append(split_path(key))
    if includes and excludes:
        raise ApiError(
            "UNSUPPORTED_PROJECTION_PARAM",
            "Unsupported projection parameter: cannot exclude non-_id fields in an inclusion "
            "projection.",
        )
    if includes:
        return ("include", includes, include_id)
    if not excludes and include_id:
        return None  # {"_id": 1} alone returns whole documents, as the real server does
    return ("exclude", excludes, include_id)


def project(doc: dict[str, Any], projection: tuple[str, list[list[str]], bool]) -> dict[str, Any]:
    mode, paths, include_id = projection
    if mode == "include":
        out: dict[str, Any] = {}
        if include_id and "_id" in doc:
            out["_id"] = doc["_id"]
        for segments in paths:
            src: Any = doc
            for seg in segments:
                if not isinstance(src, dict) or seg not in src:
                    break
                src = src[seg]
            else:
                dst = out
                for seg in segments[:-1]:
                    dst = dst.setdefault(seg, {})
                dst[segments[-1]] = src
        return out
    out = json.loads(dumps(doc))
    if not include_id:
        out.pop("_id", None)
    for segments in paths:
        node = out
        for seg in segments[:-1]:
            node = node.get(seg) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(segments[-1], None)
    return out


# ----------------------------------------------------------------------------- updates


def apply_update(doc: dict[str, Any], update: Any, inserting: bool) -> dict[str, Any]:
    """The document after `update` ($set, $unset, $setOnInsert); `doc` is not changed."""
    if not isinstance(update, dict) or not update:
        raise ApiError(
            "UNSUPPORTED_UPDATE_OPERATION",
            "Unsupported update operation: update clause must be a non-empty Object",
        )
    out = json.loads(dumps(doc))
    for op, fields in update.items():
        if op not in ("$set", "$unset", "$setOnInsert"):
            if op.startswith("$"):
                raise unsupported(f"The update operator '{op}'")
            raise ApiError(
                "UNSUPPORTED_UPDATE_OPERATION",
                f"Unsupported update operation: invalid update operator '{op}'",
            )
        if not isinstance(fields, dict):
            raise ApiError(
                "UNSUPPORTED_UPDATE_OPERATION",
                f"Unsupported update operation: '{op}' needs an Object",
            )
        if op == "$setOnInsert" and not inserting:
            continue
        for path, value in fields.items():
            segments = split_path(path)
            if segments[0] == "_id":
                raise ApiError(
                    "UNSUPPORTED_UPDATE_OPERATOR_FOR_DOC_ID",
                    f"The command used the update operator: {op}.\n_id field cannot be updated "
                    "using update operators.\n\nResend the command without trying to update _id "
                    "field.",
                )
            node = out
            for seg in segments[:-1]:
                if op == "$unset":
                    node = node.get(seg) if isinstance(node, dict) else None
                    if node is None:
                        break
                    continue
                child = node.get(seg)
                if child is None:
                    child = node[seg] = {}
                if not isinstance(child, dict):
                    raise unsupported(f"Updating inside the non-Object value at '{path}'")
                node = child
            if op == "$unset":
                if isinstance(node, dict):
                    node.pop(segments[-1], None)
            else:
                node[segments[-1]] = value
    return out


# ----------------------------------------------------------------------------- storage


@dataclass(frozen=True)
class Collection:
    keyspace: str
    name: str
    options: dict[str, Any]
    indexing: Indexing


class Row:
    __slots__ = ("doc_json", "key", "tx_id")

    def __init__(self, key: str, tx_id: uuid.UUID | None, doc_json: str) -> None:
        self.key, self.tx_id, self.doc_json = key, tx_id, doc_json

    def doc(self) -> dict[str, Any]:
        return json.loads(self.doc_json)


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Store:
    """The Cassandra side: collections (one table each) and their documents."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self._prepared: dict[tuple[str, str, str], PreparedStatement] = {}
        self._collections: dict[tuple[str, str], Collection] = {}
        self._lock = threading.Lock()
        self._schema_lock = threading.Lock()

    # ---- schema

    def keyspace_exists(self, keyspace: str) -> bool:
        rows = self.session.execute(
            "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = %s",
            (keyspace,),
        )
        return rows.one() is not None

    def keyspaces(self) -> list[str]:
        rows = self.session.execute("SELECT keyspace_name FROM system_schema.keyspaces")
        return sorted(r.keyspace_name for r in rows if r.keyspace_name not in SYSTEM_KEYSPACES)

    def collections(self, keyspace: str) -> list[Collection]:
        rows = self.session.execute(
            "SELECT table_name, comment FROM system_schema.tables WHERE keyspace_name = %s",
            (keyspace,),
        )
        found = []
        for row in rows:
            options = self._options_of(row.comment)
            if options is not None:
                found.append(self._collection(keyspace, row.table_name, options))
        return found

    @staticmethod
    def _options_of(comment: str | None) -> dict[str, Any] | None:
        try:
            meta = json.loads(comment or "")[COMMENT_KEY]
            return dict(meta["options"])
        except (ValueError, KeyError, TypeError):
            return None

    @staticmethod
    def _collection(keyspace: str, name: str, options: dict[str, Any]) -> Collection:
        return Collection(keyspace, name, options, parse_indexing(options.get("indexing")))

    def collection(self, keyspace: str, name: str) -> Collection:
        cached = self._collections.get((keyspace, name))
        if cached is not None:
            return cached
        row = self.session.execute(
            "SELECT comment FROM system_schema.tables WHERE keyspace_name = %s AND table_name = %s",
            (keyspace, name),
        ).one()
        options = self._options_of(row.comment) if row is not None else None
        if options is None:
            if not self.keyspace_exists(keyspace):
                raise unknown_keyspace(keyspace)
            raise ApiError(
                "COLLECTION_NOT_EXIST", f"No collection or table with name '{name}' exists."
            )
        coll = self._collection(keyspace, name, options)
        with self._lock:
            self._collections[(keyspace, name)] = coll
        return coll

    def forget(self, keyspace: str, name: str | None = None) -> None:
        with self._lock:
            for key in [k for k in self._collections if k[0] == keyspace and name in (None, k[1])]:
                del self._collections[key]
            for key in [k for k in self._prepared if k[0] == keyspace and name in (None, k[1])]:
                del self._prepared[key]

    def create_collection(self, keyspace: str, name: str, options: dict[str, Any]) -> None:
        with self._schema_lock:  # one DDL at a time: concurrent CREATEs of one table race
            existing = self.session.execute(
                "SELECT comment FROM system_schema.tables WHERE keyspace_name = %s "
                "AND table_name = %s",
                (keyspace, name),
            ).one()
            if existing is not None:
                current = self._options_of(existing.comment)
                if current is None:
                    raise ApiError(
                        "EXISTING_TABLE_NOT_DATA_API_COLLECTION",
                        f"Attempt to create new collection failed: table '{name}' already "
                        "exists and it is not a valid Data API collection.\n\nRecommend "
                        "deleting the table and resending the command.",
                    )
                if current != options:
                    raise ApiError(
                        "EXISTING_COLLECTION_DIFFERENT_SETTINGS",
                        f"Collection '{name}' already exists but with settings different from "
                        "ones passed with 'createCollection' command.\n\nIf you need to change "
                        "collection settings you will need to 'deleteCollection', then "
                        "re-create with new settings.",
                    )
            else:
                if MAX_COLLECTIONS and len(self.collections(keyspace)) >= MAX_COLLECTIONS:
                    raise ApiError(
                        "TOO_MANY_COLLECTIONS",
                        f"Cannot create collection '{name}': the maximum number of collections "
                        f"per database is {MAX_COLLECTIONS}, database already has "
                        f"{MAX_COLLECTIONS}.",
                    )
                comment = dumps(
                    {COMMENT_KEY: {"name": name, "schema_version": 1, "options": options}}
                )
                table = f"{quote(keyspace)}.{quote(name)}"
                self.session.execute(
                    f"CREATE TABLE IF NOT EXISTS {table} (key text PRIMARY KEY, tx_id timeuuid, "
                    f"doc_json text, query_text_values map<text, text>) WITH comment = %s",
                    (comment,),
                    timeout=60,
                )
            index = quote(f"{name}_query_text_values"[:222])
            self.session.execute(
                f"CREATE CUSTOM INDEX IF NOT EXISTS {index} ON {quote(keyspace)}.{quote(name)} "
                "(ENTRIES(query_text_values)) USING 'StorageAttachedIndex'",
                timeout=60,
            )
            self._wait_queryable(keyspace, name)

    def _wait_queryable(self, keyspace: str, table: str) -> None:
        """A new SAI index answers queries only once built (system_views.sai_column_indexes)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = self.session.execute(
                "SELECT table_name, is_queryable FROM system_views.sai_column_indexes "
                "WHERE keyspace_name = %s",
                (keyspace,),
            )
            states = [r.is_queryable for r in rows if r.table_name == table]
            if states and all(states):
                return
            time.sleep(0.1)
        raise ApiError(
            "INVALID_DATABASE_QUERY", f"the index of '{keyspace}.{table}' is not queryable"
        )

    def delete_collection(self, keyspace: str, name: str) -> None:
        with self._schema_lock:
            self.session.execute(
                f"DROP TABLE IF EXISTS {quote(keyspace)}.{quote(name)}", timeout=60
            )
        self.forget(keyspace, name)

    def create_keyspace(self, name: str, replication: dict[str, Any] | None) -> None:
        replication = replication or {"class": "SimpleStrategy", "replication_factor": 1}
        if replication.get("class") not in ("SimpleStrategy", "NetworkTopologyStrategy"):
            raise ApiError(
                "COMMAND_FIELD_VALUE_INVALID",
                "Command field 'options.replication' not valid: class must be SimpleStrategy "
                "or NetworkTopologyStrategy.",
            )
        items = ", ".join(f"'{k}': '{v}'" for k, v in replication.items() if "'" not in f"{k}{v}")
        with self._schema_lock:
            self.session.execute(
                f"CREATE KEYSPACE IF NOT EXISTS {quote(name)} WITH replication = {{{items}}}",
                timeout=60,
            )

    def drop_keyspace(self, name: str) -> None:
        with self._schema_lock:
            self.session.execute(f"DROP KEYSPACE IF EXISTS {quote(name)}", timeout=60)
        self.forget(name)

    # ---- statements

    def prepared(self, coll: Collection, which: str, columns: str = "") -> PreparedStatement:
        key = (coll.keyspace, coll.name, which + columns)
        stmt = self._prepared.get(key)
        if stmt is None:
            table = f"{quote(coll.keyspace)}.{quote(coll.name)}"
            columns = columns or "key, tx_id, doc_json"
            cql = {
                "insert": f"INSERT INTO {table} (key, tx_id, doc_json, query_text_values) "
                "VALUES (?, ?, ?, ?) IF NOT EXISTS",
                "update": f"UPDATE {table} SET tx_id = ?, doc_json = ?, query_text_values = ? "
                "WHERE key = ? IF tx_id = ?",
                "delete": f"DELETE FROM {table} WHERE key = ? IF tx_id = ?",
                "all": f"SELECT {columns} FROM {table}",
                "id_in": f"SELECT {columns} FROM {table} WHERE key IN ?",
                "field_eq": f"SELECT {columns} FROM {table} WHERE query_text_values[?] = ?",
                "truncate": f"TRUNCATE TABLE {table}",
            }[which]
            stmt = self.session.prepare(cql)
            with self._lock:
                self._prepared[key] = stmt
        return stmt

    def select(
        self,
        coll: Collection,
        query: Query,
        fetch_size: int,
        paging_state: bytes | None = None,
        *,
        keys_only: bool = False,
    ) -> tuple[list[Row], bytes | None]:
        """One page of the rows `query` matches, and the paging state of the next one;
        `keys_only`: without the documents (counting, deleting)."""
        stmt = self.prepared(coll, query.kind, "key, tx_id" if keys_only else "")
        if query.kind == "id_in":
            params: tuple[Any, ...] = (list(query.keys),)
            if not query.keys:
                return [], None
        elif query.kind == "field_eq":
            params = (query.path, query.value)
        else:
            params = ()
        bound = stmt.bind(params)
        bound.fetch_size = fetch_size
        rs = self.session.execute(bound, paging_state=paging_state)
        rows = [Row(r.key, r.tx_id, getattr(r, "doc_json", "")) for r in rs.current_rows]
        return rows, rs.paging_state

    def first(self, coll: Collection, query: Query) -> Row | None:
        rows, _ = self.select(coll, query, 1)
        return rows[0] if rows else None

    def insert_async(self, coll: Collection, key: str, doc_json: str, index: dict[str, str]) -> Any:
        stmt = self.prepared(coll, "insert")
        return self.session.execute_async(stmt, (key, uuid.uuid1(), doc_json, index))

    def update(self, coll: Collection, row: Row, doc_json: str, index: dict[str, str]) -> bool:
        stmt = self.prepared(coll, "update")
        rs = self.session.execute(stmt, (uuid.uuid1(), doc_json, index, row.key, row.tx_id))
        return bool(rs.was_applied)

    def delete_async(self, coll: Collection, row: Row) -> Any:
        return self.session.execute_async(self.prepared(coll, "delete"), (row.key, row.tx_id))

    def truncate(self, coll: Collection) -> None:
        self.session.execute(self.prepared(coll, "truncate"), timeout=120)

    def estimated_count(self, coll: Collection) -> int:
        """From system.size_estimates, as the real server: 0 until Cassandra has estimated."""
        rows = self.session.execute(
            "SELECT partitions_count FROM system.size_estimates WHERE keyspace_name = %s "
            "AND table_name = %s",
            (coll.keyspace, coll.name),
        )
        return sum(r.partitions_count or 0 for r in rows)


def unknown_keyspace(keyspace: str) -> ApiError:
    return ApiError(
        "UNKNOWN_KEYSPACE",
        f"The command tried to use a Keyspace that does not exist in the Database.\n\nThe "
        f"keyspace used by the command: {keyspace}.\n\nResend the command using a Keyspace "
        "that exists.",
    )


# ----------------------------------------------------------------------------- commands


@dataclass
class Prepared:
    """A document ready to be written: stored JSON, `_id`, typed key and index entries."""

    doc_id: Any
    key: str
    doc_json: str
    index: dict[str, str]
    doc: dict[str, Any]


def generate_id(coll: Collection) -> Any:
    kind = (coll.options.get("defaultId") or {}).get("type")
    if kind == "objectId":
        return {"$objectId": os.urandom(12).hex()}
    if kind in ("uuid", "uuidv4"):
        return {"$uuid": str(uuid.uuid4())}
    if kind == "uuidv7":
        millis = time.time_ns() // 1_000_000
        raw = bytearray(millis.to_bytes(6, "big") + os.urandom(10))
        raw[6] = (raw[6] & 0x0F) | 0x70
        raw[8] = (raw[8] & 0x3F) | 0x80
        return {"$uuid": str(uuid.UUID(bytes=bytes(raw)))}
    return str(uuid.uuid4())


def prepare_document(coll: Collection, raw: Any, doc_id: Any = None) -> Prepared:
    if not isinstance(raw, dict):
        kind = "Array" if isinstance(raw, list) else type(raw).__name__
        raise ApiError(
            "SHRED_BAD_DOCUMENT_TYPE",
            f"Bad document type to shred: document must be a JSON Object, instead got a JSON "
            f"{kind}.",
        )
    if "_id" in raw:
        doc_id = raw["_id"]
    elif doc_id is None:
        doc_id = generate_id(coll)
    if isinstance(doc_id, list) or (isinstance(doc_id, dict) and not is_scalar(doc_id)):
        raise ApiError(
            "SHRED_BAD_DOCID_TYPE",
            "Bad type for '_id' field: Document Id must be a JSON String, Number, Boolean, "
            f"EJSON-Encoded Date Object, UUID or ObjectId or NULL instead got {dumps(doc_id)[:50]}",
        )
    body = {k: v for k, v in raw.items() if k != "_id"}
    doc = normalize({"_id": doc_id, **body}, "", 0)
    doc_json = dumps(doc)
    size = utf16_length(doc_json)
    if size > MAX_DOC_CHARS:
        raise ApiError(
            "SHRED_DOC_LIMIT_VIOLATION",
            f"Document size limitation violated: document size ({size} chars) exceeds maximum "
            f"allowed ({MAX_DOC_CHARS}).",
        )
    index = shred(doc, coll.indexing)
    return Prepared(doc["_id"], typed(doc["_id"]), doc_json, index, doc)


class Emulator:
    """Command dispatch: one Data API command (a JSON object with one key) at a time."""

    def __init__(self, store: Store, page_size: int, token: str | None) -> None:
        self.store = store
        self.page_size = page_size
        self.token = token
        self._stats: dict[tuple[str, str], Counter[str]] = {}
        self._stats_lock = threading.Lock()

    # ---- stats

    def count(self, keyspace: str, collection: str, command: str) -> None:
        with self._stats_lock:
            self._stats.setdefault((keyspace, collection), Counter())[command] += 1

    def stats(self, keyspace: str | None, collection: str | None) -> dict[str, Any]:
        with self._stats_lock:
            if keyspace is None and collection is None:
                return {
                    "stats": [
                        {"keyspace": k, "collection": c, "commands": dict(n), "total": n.total()}
                        for (k, c), n in sorted(self._stats.items())
                    ]
                }
            counts = self._stats.get((keyspace or "", collection or ""), Counter())
            return {
                "keyspace": keyspace or "",
                "collection": collection or "",
                "commands": dict(counts),
                "total": counts.total(),
            }

    def reset_stats(self, keyspace: str | None, collection: str | None) -> None:
        with self._stats_lock:
            if keyspace is None and collection is None:
                self._stats.clear()
            else:
                self._stats.pop((keyspace or "", collection or ""), None)

    # ---- dispatch

    def execute(self, keyspace: str, collection: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or len(body) != 1:
            raise ApiError(
                "REQUEST_STRUCTURE_MISMATCH",
                "Request is valid JSON but has a structural mismatch: the request body must be "
                "an Object with exactly one command.\n\nResend request with valid structure.",
            )
        ((command, payload),) = body.items()
        self.count(keyspace, collection, command)
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            raise ApiError(
                "REQUEST_STRUCTURE_MISMATCH",
                f"Request is valid JSON but has a structural mismatch: command '{command}' "
                "needs an Object.\n\nResend request with valid structure.",
            )
        if collection:
            level, table = "CollectionCommand", COLLECTION_COMMANDS
        elif keyspace:
            level, table = "KeyspaceCommand", KEYSPACE_COMMANDS
        else:
            level, table = "DatabaseCommand", DATABASE_COMMANDS
        handler = table.get(command)
        if handler is None:
            raise ApiError(
                "COMMAND_UNKNOWN",
                f"Command '{command}' is not a {level} recognized by Data API.\n\nData API "
                f"supports following {level}s: {sorted(table)}.\n\nResend using one of the "
                "supported commands.",
            )
        try:
            if collection:
                coll = self.store.collection(keyspace, collection)
                return handler(self, coll, payload)
            if keyspace:
                return handler(self, keyspace, payload)
            return handler(self, payload)
        except InvalidRequest as exc:
            text = str(exc).lower()
            if collection and ("unconfigured table" in text or "does not exist" in text):
                self.store.forget(keyspace, collection)
                raise ApiError(
                    "COLLECTION_NOT_EXIST",
                    f"No collection or table with name '{collection}' exists.",
                ) from exc
            raise

    # ---- database level

    def find_keyspaces(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"status": {"keyspaces": self.store.keyspaces()}}

    def create_keyspace(self, payload: dict[str, Any]) -> dict[str, Any]:
        name = check_name(payload.get("name"), "keyspace")
        options = payload.get("options") or {}
        self.store.create_keyspace(name, options.get("replication"))
        return {"status": {"ok": 1}}

    def drop_keyspace(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.store.drop_keyspace(check_name(payload.get("name"), "keyspace"))
        return {"status": {"ok": 1}}

    # ---- keyspace level

    def _need_keyspace(self, keyspace: str) -> None:
        if not self.store.keyspace_exists(keyspace):
            raise unknown_keyspace(keyspace)

    def create_collection(self, keyspace: str, payload: dict[str, Any]) -> dict[str, Any]:
        name = check_name(payload.get("name"), "collection")
        options = payload.get("options") or {}
        if not isinstance(options, dict):
            raise ApiError(
                "INVALID_CREATE_COLLECTION_OPTIONS",
                "'createCollection' command option(s) invalid: options must be an Object",
            )
        stored: dict[str, Any] = {}
        for key, value in options.items():
            if key == "indexing":
                parse_indexing(value)
                stored[key] = value
            elif key == "defaultId":
                kind = (value or {}).get("type") if isinstance(value, dict) else None
                if kind not in ("uuid", "uuidv4", "uuidv7", "objectId"):
                    raise unsupported(f"The defaultId type {kind!r}")
                stored[key] = value
            elif key in ("lexical", "rerank") and value in (None, {"enabled": False}):
                continue  # Cassandra 5.0 has neither; "disabled" is what it gets anyway
            elif key == "vector" and not value:
                continue
            else:
                raise unsupported(f"The createCollection option '{key}'")
        self._need_keyspace(keyspace)
        self.store.create_collection(keyspace, name, stored)
        return {"status": {"ok": 1}}

    def find_collections(self, keyspace: str, payload: dict[str, Any]) -> dict[str, Any]:
        self._need_keyspace(keyspace)
        explain = bool((payload.get("options") or {}).get("explain"))
        colls = sorted(self.store.collections(keyspace), key=lambda c: c.name)
        if explain:
            return {
                "status": {"collections": [{"name": c.name, "options": c.options} for c in colls]}
            }
        return {"status": {"collections": [c.name for c in colls]}}

    def delete_collection(self, keyspace: str, payload: dict[str, Any]) -> dict[str, Any]:
        name = check_name(payload.get("name"), "collection")
        self._need_keyspace(keyspace)
        self.store.delete_collection(keyspace, name)
        return {"status": {"ok": 1}}

    # ---- collection level: writes

    def insert_one(self, coll: Collection, payload: dict[str, Any]) -> dict[str, Any]:
        doc = prepare_document(coll, payload.get("document"))
        if not self.store.insert_async(coll, doc.key, doc.doc_json, doc.index).result().was_applied:
            raise already_exists(doc.doc_id)
        return {"status": {"insertedIds": [doc.doc_id]}}

    def insert_many(self, coll: Collection, payload: dict[str, Any]) -> dict[str, Any]:
        raws = payload.get("documents")
        options = payload.get("options") or {}
        ordered = bool(options.get("ordered", False))
        responses = bool(options.get("returnDocumentResponses", False))
        if not isinstance(raws, list) or not raws:
            raise ApiError(
                "COMMAND_FIELD_VALUE_INVALID",
                "Command field 'documents' value not valid: must be a non-empty Array.",
            )
        if len(raws) > MAX_INSERT_DOCUMENTS:
            raise ApiError(
                "COMMAND_FIELD_VALUE_INVALID",
                f"Command field 'documents' value not valid: amount of documents to insert is "
                f"over the max limit ({len(raws)} vs {MAX_INSERT_DOCUMENTS}).",
            )
        # (doc id, error or None); None = not attempted (ordered, after a failure)
        outcome: list[tuple[Any, ApiError | None] | None] = [None] * len(raws)
        pending: list[tuple[int, Prepared, Any]] = []

        def settle(i: int, doc: Prepared, future: Any) -> bool:
            ok = bool(future.result().was_applied)
            outcome[i] = (doc.doc_id, None if ok else already_exists(doc.doc_id))
            return ok

        for i, raw in enumerate(raws):
            try:
                doc = prepare_document(coll, raw)
            except ApiError as exc:
                outcome[i] = (raw.get("_id") if isinstance(raw, dict) else None, exc)
                if ordered:
                    break
                continue
            future = self.store.insert_async(coll, doc.key, doc.doc_json, doc.index)
            if ordered:  # one at a time, up to the first failure
                if not settle(i, doc, future):
                    break
            else:  # all sent at once, then collected
                pending.append((i, doc, future))
        for item in pending:
            settle(*item)
        errors: list[dict[str, Any]] = []
        messages: list[str] = []
        status: dict[str, Any]
        if responses:
            results = []
            for i, item in enumerate(outcome):
                if item is None:
                    doc_id = raws[i].get("_id") if isinstance(raws[i], dict) else None
                    results.append({"_id": doc_id, "status": "SKIPPED"})
                    continue
                doc_id, err = item
                if err is None:
                    results.append({"_id": doc_id, "status": "OK"})
                    continue
                if err.message not in messages:
                    messages.append(err.message)
                    errors.append(err.to_json())
                results.append(
                    {"_id": doc_id, "status": "ERROR", "errorsIdx": messages.index(err.message)}
                )
            status = {"documentResponses": results}
        else:
            status = {"insertedIds": [it[0] for it in outcome if it and it[1] is None]}
            for item in outcome:
                if item and item[1] is not None:
                    err = ApiError(
                        item[1].code,
                        f"Failed to insert document with _id {dumps(item[0])}: {item[1].message}",
                    )
                    errors.append(err.to_json())
        out: dict[str, Any] = {"status": status}
        if errors:
            out["errors"] = errors
        return out

    def _retrying(self, attempt: Any) -> Any:
        """Run `attempt()` (read, then a conditional write) until it returns something other
        than None, as the real server retries lost lightweight transactions."""
        for _ in range(LWT_RETRIES + 1):
            result = attempt()
            if result is not None:
                return result
        raise ApiError(
            "FAILED_CONCURRENT_OPERATIONS",
            "The Data API command was unable to complete an operation on a document or row due "
            f"to concurrent modifications from other requests (after {LWT_RETRIES} retries).",
        )

    def _upsert_id(self, query: Query, replacement_id: Any = None) -> Any:
        if replacement_id is not None:
            return replacement_id
        for path, value in query.eq_fields:
            if path == "_id":
                return value
        return None

    def find_one_and_replace(self, coll: Collection, payload: dict[str, Any]) -> dict[str, Any]:
        return self._replace(coll, payload, return_document=True)

    def _replace(
        self, coll: Collection, payload: dict[str, Any], return_document: bool
    ) -> dict[str, Any]:
        query = parse_filter(payload.get("filter"), coll.indexing)
        check_sort(payload.get("sort"))
        projection = parse_projection(payload.get("projection"))
        options = payload.get("options") or {}
        upsert = bool(options.get("upsert", False))
        after = return_mode(options)
        replacement = payload.get("replacement")
        if not isinstance(replacement, dict):
            raise ApiError(
                "SHRED_BAD_DOCUMENT_TYPE",
                "Bad document type to shred: document must be a JSON Object.",
            )
        given_id = replacement.get("_id")

        def attempt() -> tuple[dict[str, Any] | None, dict[str, Any]] | None:
            row = self.store.first(coll, query)
            if row is None:
                if not upsert:
                    return None, {"matchedCount": 0, "modifiedCount": 0}
                doc = prepare_document(coll, replacement, self._upsert_id(query, given_id))
                if (
                    not self.store.insert_async(coll, doc.key, doc.doc_json, doc.index)
                    .result()
                    .was_applied
                ):
                    return None  # inserted meanwhile: try again
                status = {"matchedCount": 0, "modifiedCount": 0, "upsertedId": doc.doc_id}
                return (doc.doc if after else None), status
            old = row.doc()
            if "_id" in replacement and typed_id(given_id, "SHRED_BAD_DOCID_TYPE") != row.key:
                raise ApiError(
                    "DOCUMENT_REPLACE_DIFFERENT_DOCID",
                    f"The replace document and document resolved using filter have different "
                    f"'_id's: {dumps(given_id)} (replace document) vs. {dumps(old['_id'])} "
                    "(document that filter matches).\n\nResend the update command with a "
                    "document that has same '_id' as document being replaced.",
                )
            doc = prepare_document(coll, replacement, old["_id"])
            if doc.doc_json != row.doc_json:
                if not self.store.update(coll, row, doc.doc_json, doc.index):
                    return None
                modified = 1
            else:
                modified = 0
            return (doc.doc if after else old), {"matchedCount": 1, "modifiedCount": modified}

        document, status = self._retrying(attempt)
        out: dict[str, Any] = {"status": status}
        if return_document:
            out["data"] = {"document": self._render(document, projection)}
        return out

    def replace_one(self, coll: Collection, payload: dict[str, Any]) -> dict[str, Any]:
        return self._replace(coll, payload, return_document=False)

    def _update_row(
        self, coll: Collection, row: Row, update: Any
    ) -> tuple[dict[str, Any], dict[str, Any], int] | None:
        """(old doc, new doc, modified 0/1) once written, or None when another writer won."""
        old = row.doc()
        new = apply_update(old, update, inserting=False)
        doc = prepare_document(coll, new, old["_id"])
        if doc.doc_json == row.doc_json:
            return old, doc.doc, 0
        if not self.store.update(coll, row, doc.doc_json, doc.index):
            return None
        return old, doc.doc, 1

    def _upsert_new(self, coll: Collection, query: Query, update: Any) -> Prepared | None:
        base: dict[str, Any] = {}
        for path, value in query.eq_fields:
            node = base
            segments = split_path(path) if path != "_id" else ["_id"]
            for seg in segments[:-1]:
                node = node.setdefault(seg, {})
            node[segments[-1]] = value
        new = apply_update(base, update, inserting=True)
        doc = prepare_document(coll, new)
        if not self.store.insert_async(coll, doc.key, doc.doc_json, doc.index).result().was_applied:
            return None
        return doc

    def _update_one(
        self, coll: Collection, payload: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, Any]]:
        query = parse_filter(payload.get("filter"), coll.indexing)
        check_sort(payload.get("sort"))
        update = payload.get("update")
        apply_update({}, update, inserting=True)  # validates before touching anything
        upsert = bool((payload.get("options") or {}).get("upsert", False))

        def attempt() -> Any:
            row = self.store.first(coll, query)
            if row is None:
                if not upsert:
                    return None, None, {"matchedCount": 0, "modifiedCount": 0}
                doc = self._upsert_new(coll, query, update)
                if doc is None:
                    return None
                return (
                    None,
                    doc.doc,
                    {"matchedCount": 0, "modifiedCount": 0, "upsertedId": doc.doc_id},
                )
            done = self._update_row(coll, row, update)
            if done is None:
                return None
            old, new, modified = done
            return old, new, {"matchedCount": 1, "modifiedCount": modified}

        return self._retrying(attempt)

    def find_one_and_update(self, coll: Collection, payload: dict[str, Any]) -> dict[str, Any]:
        projection = parse_projection(payload.get("projection"))
        after = return_mode(payload.get("options") or {})
        old, new, status = self._update_one(coll, payload)
        document = new if after else old
        return {"data": {"document": self._render(document, projection)}, "status": status}

    def update_one(self, coll: Collection, payload: dict[str, Any]) -> dict[str, Any]:
        _, _, status = self._update_one(coll, payload)
        return {"status": status}

    def update_many(self, coll: Collection, payload: dict[str, Any]) -> dict[str, Any]:
        query = parse_filter(payload.get("filter"), coll.indexing)
        update = payload.get("update")
        apply_update({}, update, inserting=True)
        options = payload.get("options") or {}
        upsert = bool(options.get("upsert", False))
        state = decode_page_state(options.get("pageState"))
        rows, next_state = self.store.select(coll, query, UPDATE_BATCH, state)
        matched = modified = 0
        for row in rows:
            current: Row | None = row
            for _ in range(LWT_RETRIES + 1):
                if current is None:
                    break  # deleted meanwhile
                done = self._update_row(coll, current, update)
                if done is not None:
                    matched += 1
                    modified += done[2]
                    break
                current = self.store.first(coll, Query("id_in", keys=(row.key,)))
            else:
                raise ApiError(
                    "FAILED_CONCURRENT_OPERATIONS",
                    "The Data API command was unable to complete an operation on a document "
                    "due to concurrent modifications from other requests.",
                )
        status: dict[str, Any] = {"matchedCount": matched, "modifiedCount": modified}
        if not rows and state is None and upsert:
            doc = self._retrying(lambda: self._upsert_new(coll, query, update))
            status["upsertedId"] = doc.doc_id
        if next_state is not None:
            status["moreData"] = True
            status["nextPageState"] = encode_page_state(next_state)
        return {"status": status}

    def delete_one(self, coll: Collection, payload: dict[str, Any]) -> dict[str, Any]:
        deleted, _ = self._delete_one(coll, payload)
        return {"status": {"deletedCount": deleted}}

    def find_one_and_delete(self, coll: Collection, payload: dict[str, Any]) -> dict[str, Any]:
        projection = parse_projection(payload.get("projection"))
        deleted, doc = self._delete_one(coll, payload)
        if not deleted:
            return {"status": {"deletedCount": 0}}
        return {"data": {"document": self._render(doc, projection)}, "status": {"deletedCount": 1}}

    def _delete_one(
        self, coll: Collection, payload: dict[str, Any]
    ) -> tuple[int, dict[str, Any] | None]:
        query = parse_filter(payload.get("filter"), coll.indexing)
        check_sort(payload.get("sort"))

        def attempt() -> tuple[int, dict[str, Any] | None] | None:
            row = self.store.first(coll, query)
            if row is None:
                return 0, None
            if not self.store.delete_async(coll, row).result().was_applied:
                return None
            return 1, row.doc()

        return self._retrying(attempt)

    def delete_many(self, coll: Collection, payload: dict[str, Any]) -> dict[str, Any]:
        query = parse_filter(payload.get("filter"), coll.indexing)
        if query.kind == "all":
            # The real server truncates, and cannot say how many went: deletedCount -1.
            self.store.truncate(coll)
            return {"status": {"deletedCount": -1}}
        rows, _ = self.store.select(coll, query, DELETE_BATCH + 1, keys_only=True)
        futures = [self.store.delete_async(coll, row) for row in rows[:DELETE_BATCH]]
        deleted = sum(1 for f in futures if f.result().was_applied)
        status: dict[str, Any] = {"deletedCount": deleted}
        if len(rows) > DELETE_BATCH:
            status["moreData"] = True
        return {"status": status}

    # ---- collection level: reads

    def _render(self, doc: dict[str, Any] | None, projection: Any) -> str | None:
        if doc is None:
            return None
        return dumps(project(doc, projection) if projection else doc)

    def _render_row(self, row: Row, projection: Any) -> str:
        return row.doc_json if projection is None else dumps(project(row.doc(), projection))

    def find(self, coll: Collection, payload: dict[str, Any]) -> dict[str, Any]:
        query = parse_filter(payload.get("filter"), coll.indexing)
        check_sort(payload.get("sort"))
        projection = parse_projection(payload.get("projection"))
        options = payload.get("options") or {}
        limit = options.get("limit")
        skip = options.get("skip") or 0
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise ApiError(
                "COMMAND_FIELD_VALUE_INVALID",
                "Command field 'options.limit' not valid: must be a non-negative integer.",
            )
        if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
            raise ApiError(
                "COMMAND_FIELD_VALUE_INVALID",
                "Command field 'options.skip' not valid: must be a non-negative integer.",
            )
        raw_state = options.get("pageState")
        state, remaining = None, limit
        if raw_state:
            state, remaining = decode_find_state(raw_state)
            skip = 0  # skip applies to the first page only
        if remaining == 0:
            return {"data": {"documents": [], "nextPageState": None}}
        size = self.page_size if remaining is None else min(self.page_size, remaining)
        rows, next_state = self.store.select(coll, query, size + skip, state)
        rows = rows[skip:]
        if remaining is not None:
            remaining -= len(rows)
        page_state = None
        if next_state is not None and remaining != 0:
            page_state = encode_find_state(next_state, remaining)
        docs = [self._render_row(row, projection) for row in rows]
        return {"data": {"documents": docs, "nextPageState": page_state}}

    def find_one(self, coll: Collection, payload: dict[str, Any]) -> dict[str, Any]:
        query = parse_filter(payload.get("filter"), coll.indexing)
        check_sort(payload.get("sort"))
        projection = parse_projection(payload.get("projection"))
        row = self.store.first(coll, query)
        doc = None if row is None else self._render_row(row, projection)
        return {"data": {"document": doc}}

    def count_documents(self, coll: Collection, payload: dict[str, Any]) -> dict[str, Any]:
        query = parse_filter(payload.get("filter"), coll.indexing)
        if query.count_in_first_only:
            # The real server counted only the first `_id` of a `$in` (SERVERS.md).
            query = Query("id_in", keys=query.keys[:1])
        total, state = 0, None
        while True:
            rows, state = self.store.select(coll, query, MAX_COUNT + 1, state, keys_only=True)
            total += len(rows)
            if state is None or total > MAX_COUNT:
                break
        if total > MAX_COUNT:
            return {"status": {"count": MAX_COUNT, "moreData": True}}
        return {"status": {"count": total}}

    def estimated_document_count(self, coll: Collection, payload: dict[str, Any]) -> dict[str, Any]:
        return {"status": {"count": self.store.estimated_count(coll)}}


def already_exists(doc_id: Any) -> ApiError:
    return ApiError(
        "DOCUMENT_ALREADY_EXISTS",
        f"Cannot insert the document: a document already exists with given '_id' "
        f"({dumps(doc_id)}).\n\nEither resend the command with distinct '_id', or use an update "
        "command instead.",
    )


def check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ApiError(
            "UNSUPPORTED_SCHEMA_NAME",
            f"The command attempted to create a {what} with a name that is not supported.\n\n"
            f"The supported {what} names must not be empty, more than 48 characters long, or "
            f"contain non-alphanumeric-underscore characters.\nThe command used the unsupported "
            f"{what} name: '{name}'.\n\nResend the command using a supported {what} name.",
        )
    return name


def check_sort(sort: Any) -> None:
    if sort not in (None, {}):
        raise unsupported("Sorting (a non-empty 'sort' clause)")


def return_mode(options: dict[str, Any]) -> bool:
    """True for returnDocument "after", False for "before" (the default)."""
    mode = options.get("returnDocument", "before")
    if mode not in ("before", "after"):
        raise ApiError(
            "COMMAND_FIELD_VALUE_INVALID",
            f"Command field 'options.returnDocument' value \"{mode}\" not valid: must be "
            '"before" or "after".',
        )
    return mode == "after"


def encode_page_state(state: bytes) -> str:
    return base64.b64encode(state).decode("ascii")


def bad_page_state() -> ApiError:
    return ApiError(
        "COMMAND_FIELD_VALUE_INVALID",
        "Command field 'options.pageState' not valid: not a page state this server gave.",
    )


def decode_page_state(text: Any) -> bytes | None:
    if not text:
        return None
    try:
        return base64.b64decode(str(text), validate=True)
    except (ValueError, binascii.Error):
        raise bad_page_state() from None


def encode_find_state(state: bytes, remaining: int | None) -> str:
    """The driver's paging state in base64, plus what is left of a limit (`~N`)."""
    text = encode_page_state(state)
    return text if remaining is None else f"{text}~{remaining}"


def decode_find_state(text: str) -> tuple[bytes | None, int | None]:
    head, _, tail = str(text).partition("~")
    if tail and not tail.isdigit():
        raise bad_page_state()
    return decode_page_state(head), int(tail) if tail else None


DATABASE_COMMANDS = {
    "findKeyspaces": Emulator.find_keyspaces,
    "createKeyspace": Emulator.create_keyspace,
    "dropKeyspace": Emulator.drop_keyspace,
    # The names before keyspaces were called namespaces; older clients still send them.
    "findNamespaces": Emulator.find_keyspaces,
    "createNamespace": Emulator.create_keyspace,
    "dropNamespace": Emulator.drop_keyspace,
}
KEYSPACE_COMMANDS = {
    "createCollection": Emulator.create_collection,
    "findCollections": Emulator.find_collections,
    "deleteCollection": Emulator.delete_collection,
}
COLLECTION_COMMANDS = {
    "insertOne": Emulator.insert_one,
    "insertMany": Emulator.insert_many,
    "find": Emulator.find,
    "findOne": Emulator.find_one,
    "findOneAndReplace": Emulator.find_one_and_replace,
    "replaceOne": Emulator.replace_one,
    "findOneAndUpdate": Emulator.find_one_and_update,
    "updateOne": Emulator.update_one,
    "updateMany": Emulator.update_many,
    "findOneAndDelete": Emulator.find_one_and_delete,
    "deleteOne": Emulator.delete_one,
    "deleteMany": Emulator.delete_many,
    "countDocuments": Emulator.count_documents,
    "estimatedDocumentCount": Emulator.estimated_document_count,
}


def driver_error(exc: Exception) -> ApiError:
    """A cassandra-driver failure as the Data API reports database trouble."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, NoHostAvailable):
        return ApiError("FAILED_TO_CONNECT_TO_DATABASE", f"Could not reach the database: {text}")
    if isinstance(exc, Unavailable):
        return ApiError("UNAVAILABLE_DATABASE", f"The database is unavailable: {text}")
    if isinstance(exc, ReadTimeout):
        return ApiError("TIMEOUT_READING_DATA", f"Timeout reading data: {text}")
    if isinstance(exc, WriteTimeout | OperationTimedOut):
        return ApiError("TIMEOUT_WRITING_DATA", f"Timeout writing data: {text}")
    if isinstance(exc, InvalidRequest):
        return ApiError("INVALID_DATABASE_QUERY", f"The database refused the query: {text}")
    return ApiError("UNEXPECTED_DRIVER_ERROR", f"Unexpected driver error: {text}")


# ----------------------------------------------------------------------------- HTTP


def encode_response(resp: dict[str, Any]) -> bytes:
    """The response as JSON; documents are already JSON text (spliced in, not re-encoded)."""
    parts = []
    for key, value in resp.items():
        if key == "data":
            items = []
            for dkey, dvalue in value.items():
                if dkey == "documents":
                    text = "[" + ",".join(dvalue) + "]"
                elif dkey == "document":
                    text = "null" if dvalue is None else dvalue
                else:
                    text = dumps(dvalue)
                items.append(f"{dumps(dkey)}:{text}")
            parts.append('"data":{' + ",".join(items) + "}")
        else:
            parts.append(f"{dumps(key)}:{dumps(value)}")
    return ("{" + ",".join(parts) + "}").encode("utf-8", "surrogatepass")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx (astrapy) expects
    server_version = "kvstores-dataapi-emulator/1"
    emulator: Emulator
    log_requests = False

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle's algorithm and
        # the client's delayed ACK stall each response by tens of milliseconds.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        if self.log_requests:
            log.info("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path.rstrip("/") == "/emulator/stats":
            query = parse_qs(url.query)
            result = self.emulator.stats(
                (query.get("keyspace") or [None])[0], (query.get("collection") or [None])[0]
            )
            self._send(200, dumps(result).encode())
            return
        self._send(404, dumps({"errors": [{"message": f"no such path: {url.path}"}]}).encode())

    def do_POST(self) -> None:
        body = self._read_body()
        url = urlsplit(self.path)
        path = url.path.rstrip("/")
        if path == "/emulator/reset-stats":
            query = parse_qs(url.query)
            self.emulator.reset_stats(
                (query.get("keyspace") or [None])[0], (query.get("collection") or [None])[0]
            )
            self._send(200, b'{"ok":1}')
            return
        segments = [s for s in path.split("/") if s]
        if "v1" not in segments:
            self._send(404, dumps({"errors": [{"message": f"no such path: {url.path}"}]}).encode())
            return
        rest = segments[segments.index("v1") + 1 :]
        if len(rest) > 2:
            self._send(404, dumps({"errors": [{"message": f"no such path: {url.path}"}]}).encode())
            return
        keyspace, collection = [*rest, "", ""][:2]
        token = self.headers.get("Token", "")
        if not token or (self.emulator.token is not None and token != self.emulator.token):
            error = ApiError(
                "UNAUTHENTICATED_REQUEST",
                "Authentication failed for request due to invalid token.\n\nResend with valid "
                "authentication token.",
                http_status=401,
            )
            self._send(401, dumps({"errors": [error.to_json()]}).encode())
            return
        status, resp = 200, None
        try:
            try:
                command = json.loads(body, parse_constant=_refuse_constant)
            except (ValueError, UnicodeDecodeError) as exc:
                raise ApiError(
                    "REQUEST_NOT_JSON",
                    f"Request not valid JSON, problem: {exc}.\n\nResend request as valid JSON.",
                ) from None
            resp = self.emulator.execute(keyspace, collection, command)
        except ApiError as exc:
            status, resp = exc.http_status, {"errors": [exc.to_json()]}
        except Exception as exc:  # every failure becomes an error response
            if type(exc).__module__.split(".")[0] == "cassandra":  # a driver exception
                resp = {"errors": [driver_error(exc).to_json()]}
                log.warning("database error for %s: %s", self.path, exc)
            else:
                log.exception("internal error for %s", self.path)
                status = 500
                error = ApiError(
                    "INTERNAL_SERVER_ERROR",
                    f"An unexpected internal server error occurred while processing the "
                    f"request.\n\nError Message: {type(exc).__name__}: {exc}",
                )
                resp = {"errors": [error.to_json()]}
        self._send(status, encode_response(resp))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True


# ----------------------------------------------------------------------------- main


def connect(hosts: list[str], port: int, wait: float) -> tuple[Any, Any]:
    profile = ExecutionProfile(
        load_balancing_policy=RoundRobinPolicy(),
        consistency_level=ConsistencyLevel.LOCAL_QUORUM,
        serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL,
        request_timeout=30,
    )
    deadline = time.monotonic() + wait
    while True:
        cluster = Cluster(
            hosts,
            port=port,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            # cassandra-driver leaves Nagle on: multi-segment requests then stall on the
            # server's delayed ACK.
            sockopts=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            connect_timeout=10,
        )
        try:
            return cluster, cluster.connect()
        except NoHostAvailable as exc:
            cluster.shutdown()
            if time.monotonic() > deadline:
                raise SystemExit(f"cannot reach Cassandra at {hosts}:{port}: {exc}") from exc
            log.info("waiting for Cassandra at %s:%s", hosts, port)
            time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    global LWT_RETRIES, MAX_COLLECTIONS
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=58181)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--cassandra", default="127.0.0.1:59042", help="host[,host...]:port of the CQL nodes"
    )
    parser.add_argument(
        "--page-size", type=int, default=20, help="documents per find page (real server: 20)"
    )
    parser.add_argument(
        "--token", default=None, help="the one token accepted (default: any non-empty one)"
    )
    parser.add_argument("--lwt-retries", type=int, default=LWT_RETRIES)
    parser.add_argument(
        "--max-collections", type=int, default=0, help="per keyspace; 0 (default): no limit"
    )
    parser.add_argument("--connect-wait", type=float, default=60, help="seconds to wait for CQL")
    parser.add_argument("--log-requests", action="store_true", help="log every HTTP request")
    args = parser.parse_args(argv)
    if not 1 <= args.page_size <= 500:
        parser.error("--page-size must be between 1 and 500")
    LWT_RETRIES = max(0, args.lwt_retries)
    MAX_COLLECTIONS = max(0, args.max_collections)

    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    logging.getLogger("cassandra").setLevel(logging.ERROR)
    hosts_text, _, port_text = args.cassandra.rpartition(":")
    cluster, session = connect(hosts_text.split(","), int(port_text), args.connect_wait)

    Handler.emulator = Emulator(Store(session), args.page_size, args.token)
    Handler.log_requests = args.log_requests
    server = Server((args.host, args.port), Handler)

    def stop(signum: int, frame: Any) -> None:
        log.info("signal %s: stopping", signum)
        # shutdown() waits for serve_forever() to return: never from its own thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "Data API emulator on http://%s:%s (v1; Cassandra %s; page size %s)",
        args.host,
        args.port,
        args.cassandra,
        args.page_size,
    )
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        cluster.shutdown()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
