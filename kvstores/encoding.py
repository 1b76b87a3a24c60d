"""Encoded stores and codecs: `EncoderBackedStore`, JSON values and float32 vectors."""

from __future__ import annotations

import json
import sys
from array import array
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from kvstores._base import BaseStore
from kvstores._registry import require
from kvstores.errors import InvalidValueError

if TYPE_CHECKING:
    from langchain_core.documents import Document

__all__ = [
    "EncoderBackedStore",
    "decode_document",
    "decode_float32",
    "decode_json",
    "document_store",
    "encode_document",
    "encode_float32",
    "encode_json",
    "float32_vector_store",
    "json_store",
]

K = TypeVar("K")
V = TypeVar("V")
_LITTLE_ENDIAN = sys.byteorder == "little"


class EncoderBackedStore(BaseStore[K, V]):
    """A store of `K` → `V` over a store of `str` → serialized values (usually bytes).

    Keys go through `key_encoder` and values through `value_serializer` on the way in and
    `value_deserializer` on the way out. `yield_keys` encodes its prefix (so the encoder
    must keep prefixes, as a ``namespace + key`` encoder does) and returns keys decoded by
    `key_decoder`, or the stored keys as they are without one. A whole batch is encoded
    before the inner store sees it, so a value that cannot be serialized writes nothing.
    The inner store is closed with this one.
    """

    def __init__(
        self,
        store: BaseStore[str, Any],
        key_encoder: Callable[[K], str],
        value_serializer: Callable[[V], Any],
        value_deserializer: Callable[[Any], V],
        key_decoder: Callable[[str], K] | None = None,
    ) -> None:
        self.store = store
        self.key_encoder = key_encoder
        self.value_serializer = value_serializer
        self.value_deserializer = value_deserializer
        self.key_decoder = key_decoder

    def _encode_pairs(self, pairs: Sequence[tuple[K, V]]) -> list[tuple[str, Any]]:
        encode, serialize = self.key_encoder, self.value_serializer
        # None means absent in every store; a serializer that would store it (JSON's
        # "null") would make a key that mget reports absent while yield_keys lists it.
        if any(value is None for _, value in pairs):
            raise TypeError("None is not a storable value (it means absent); use mdelete")
        return [(encode(key), serialize(value)) for key, value in pairs]

    def _decode_values(self, values: list[Any]) -> list[V | None]:
        deserialize = self.value_deserializer
        return [None if value is None else deserialize(value) for value in values]

    def _prefix(self, prefix: str | None) -> str | None:
        return None if prefix is None else self.key_encoder(prefix)  # type: ignore[arg-type]

    def mget(self, keys: Sequence[K]) -> list[V | None]:
        return self._decode_values(self.store.mget([self.key_encoder(k) for k in keys]))

    def mset(self, key_value_pairs: Sequence[tuple[K, V]]) -> None:
        self.store.mset(self._encode_pairs(key_value_pairs))

    def mdelete(self, keys: Sequence[K]) -> None:
        self.store.mdelete([self.key_encoder(k) for k in keys])

    def yield_keys(self, *, prefix: str | None = None) -> Iterator[K]:
        decode = self.key_decoder
        for key in self.store.yield_keys(prefix=self._prefix(prefix)):
            yield key if decode is None else decode(key)  # type: ignore[misc]

    async def amget(self, keys: Sequence[K]) -> list[V | None]:
        return self._decode_values(await self.store.amget([self.key_encoder(k) for k in keys]))

    async def amset(self, key_value_pairs: Sequence[tuple[K, V]]) -> None:
        await self.store.amset(self._encode_pairs(key_value_pairs))

    async def amdelete(self, keys: Sequence[K]) -> None:
        await self.store.amdelete([self.key_encoder(k) for k in keys])

    async def ayield_keys(self, *, prefix: str | None = None) -> AsyncIterator[K]:
        decode = self.key_decoder
        async for key in self.store.ayield_keys(prefix=self._prefix(prefix)):
            yield key if decode is None else decode(key)  # type: ignore[misc]

    def count_keys(self, *, prefix: str | None = None) -> int | None:
        return self.store.count_keys(prefix=self._prefix(prefix))

    def close(self) -> None:
        self.store.close()

    async def aclose(self) -> None:
        await self.store.aclose()


def encode_json(value: Any) -> bytes:
    """Compact UTF-8 JSON.

    Raises:
        TypeError: a value JSON cannot hold (an object, bytes, a set…).
        InvalidValueError: NaN or an infinity (not JSON).
    """
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError as exc:  # NaN, infinities, circular references
        raise InvalidValueError(f"not storable as JSON: {exc}") from None
    return text.encode()


def decode_json(data: bytes) -> Any:
    """The inverse of `encode_json`."""
    return json.loads(data)


def encode_float32(vector: Sequence[float]) -> bytes:
    """Pack floats as little-endian float32: 4 bytes each, about a quarter of their JSON."""
    packed = array("f", vector)
    if not _LITTLE_ENDIAN:
        packed.byteswap()
    return packed.tobytes()


def decode_float32(data: bytes) -> list[float]:
    """The inverse of `encode_float32` (values come back rounded to float32)."""
    if len(data) % 4:
        raise InvalidValueError(f"{len(data)} bytes is not a float32 vector (not a multiple of 4)")
    unpacked = array("f")
    unpacked.frombytes(data)
    if not _LITTLE_ENDIAN:
        unpacked.byteswap()
    return unpacked.tolist()


def encode_document(document: Document) -> bytes:
    """A LangChain `Document` as compact JSON: page content, metadata and id.

    Raises:
        TypeError: `document` is not a Document, or its metadata would not come back as it is
            (a value JSON cannot hold, or one it would change: a tuple, a non-str dict key…).
    """
    try:
        payload: dict[str, Any] = {"id": document.id, "page_content": document.page_content}
        metadata = document.metadata
    except AttributeError:
        raise TypeError(f"expected a LangChain Document, got {type(document).__name__}") from None
    payload["metadata"] = metadata
    try:
        encoded = encode_json(payload)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"document {document.id!r}: metadata is not JSON: {exc}") from None
    # Refuse now what would come back different (tuples, int keys…), not at read time.
    if json.loads(encoded)["metadata"] != metadata:
        raise TypeError(
            f"document {document.id!r}: metadata would not round-trip through JSON "
            "(tuples, sets, non-str keys or subclasses change); use lists and str keys"
        )
    return encoded


def decode_document(data: bytes) -> Document:
    """The inverse of `encode_document` (needs ``langchain-core``: extra ``langchain``)."""
    document_class: type[Document] = require("langchain_core.documents", "langchain").Document
    payload = json.loads(data)
    return document_class(
        page_content=payload["page_content"], metadata=payload["metadata"], id=payload["id"]
    )


def _same(key: str) -> str:
    return key


def json_store(store: BaseStore[str, bytes]) -> EncoderBackedStore[str, Any]:
    """A store of JSON-serializable values over a byte store."""
    return EncoderBackedStore(store, _same, encode_json, decode_json, _same)


def float32_vector_store(store: BaseStore[str, bytes]) -> EncoderBackedStore[str, list[float]]:
    """A store of float vectors (embeddings) as float32 bytes over a byte store."""
    return EncoderBackedStore(store, _same, encode_float32, decode_float32, _same)


def document_store(store: BaseStore[str, bytes]) -> EncoderBackedStore[str, Document]:
    """A store of LangChain Documents over a byte store (a `docstore` for retrievers)."""
    return EncoderBackedStore(store, _same, encode_document, decode_document, _same)
