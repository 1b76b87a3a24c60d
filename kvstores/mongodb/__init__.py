"""`MongoDBByteStore` and `MongoDBStore`: MongoDB on pymongo (≥ 4.9), sync and natively async.

`MongoDBByteStore` holds bytes (BSON binary); `MongoDBStore` holds JSON-like values (dict,
list, str, int, float, bool, nested) as native BSON, so that they can be queried in the
database. Build either from a URL, which makes the store own (and close) its clients::

    MongoDBByteStore.from_url("mongodb://localhost:27017/app?collection=cache", ttl=3600)
    MongoDBStore.from_url("mongodb+srv://user:pw@cluster0.example.net/app", namespace="docs")

or from a pymongo `MongoClient`, `AsyncMongoClient`, `Collection` or `AsyncCollection`,
which the store uses and never closes (``database=`` and ``collection=`` name the place on a
client: default the client's default database, else ``kvstores``, and collection
``kvstores``). ``namespace``, ``ttl``, ``timeout``, ``database``, ``collection`` and any
pymongo client option (``maxPoolSize``, ``tls``, ``authSource``, ...) may be keywords or URL
query parameters (keywords win); a name neither kvstores nor pymongo knows (a typo such as
``namespce`` or ``maxPolSize``: pymongo itself would only warn) raises `ConfigurationError`
when the store is built, and so does an option value pymongo refuses.

Sync and async everywhere
-------------------------
A store built from a URL uses a `MongoClient` for the sync methods and, for the async ones,
an `AsyncMongoClient` per running event loop (closed when that loop shuts down, or by
`close`/`aclose`). A store given a `MongoClient` (or its collection) runs its async methods
as the sync ones in a worker thread (`ayield_keys` a page per hop); a store given an
`AsyncMongoClient` (or its collection) runs its async methods on it, on the caller's loop,
and its sync methods on a sync twin built from the async client's settings (the same URL
and options), which the store closes.

Layout
------
One document per key, in one collection (any number of stores and namespaces may share it)::

    {"_id": "kvstores::<key>",              "v": <value>}                   no namespace
    {"_id": "kvstores:3:emb:<key>",         "v": <value>, "exp": <date>}    namespace "emb", ttl

The ``_id`` is the key after `namespace_prefix` of the namespace (its length makes it
unambiguous: no namespace's ``_id``s are a prefix range of another's); `document_id` gives
it. ``v`` is the value: BSON binary (subtype 0) in a byte store, the value itself as BSON in
a `MongoDBStore`. ``exp`` (a BSON date) is there only when the writing store has a ttl; a
write without ttl replaces the whole document and so makes the entry permanent again.

Operations
----------
Every batch is one request per chunk of 1000 keys (`chunk_size`), the chunks of one batch
sent concurrently by the async methods:

- `mget`: ``find({"_id": {"$in": ids}, "exp": {"$not": {"$lte": now}}}, {"v": 1})`` with
  limit and batch size the number of keys, so its one reply holds every match;
- `mset`: one unordered ``bulk_write`` of ``ReplaceOne({"_id": id}, {"v": ..., ["exp":
  ...]}, upsert=True)``;
- `mdelete`: ``delete_many({"_id": {"$in": ids}})``; for a single key, `mget` and
  `mdelete` name it as ``{"_id": id}`` instead (FerretDB looks a key up, but scans for
  an ``$in``);
- `yield_keys(prefix=p)`: keyset pages, each one ``find`` on the range ``{"_id":
  {"$gte": ns + p, "$lt": upper bound}}`` (never a regex built from user input; the
  ``_id`` index serves it on MongoDB), the pages after the first starting at ``"$gt"`` the
  last key given, sorted by ``_id``, projected to it, with limit and batch size a page plus
  one key: one reply per page, no cursor left open between pages (none to lose to the
  server's idle timeout, and writes between pages never disturb the listing). Pages start
  at 1000 keys (`page_size`) and double up to 16 times it; the extra key tells a last page
  from a full one, so a listing that fits in a page is one ``find``;
- `count_keys(prefix=p)`: ``count_documents`` on the same range.

Empty batches send nothing. Documents are read with the stores' own codec options (plain
dicts), whatever the given client's.

Expiry
------
Reads skip documents whose ``exp`` has passed (by this machine's clock). The first write of
a store with a ttl creates a TTL index on ``exp`` (``expireAfterSeconds=0``), so MongoDB
deletes expired documents itself (its TTL monitor runs every 60 s). A server that refuses
the index (FerretDB: code 238) leaves `ttl_index` `False` and `ttl_index_refusal` saying
why: expired documents then stay until `purge_expired()` (``delete_many`` of the
namespace's expired documents) deletes them.

Values
------
At most `MAX_DOCUMENT_VALUE` = 16,769,024 bytes (MongoDB's 16 MiB document limit minus
8 KiB for the ``_id`` and the rest of the envelope): a byte string's length, a
`MongoDBStore` value's BSON size (as ``{"v": value}``); larger raises `InvalidValueError`.
`MongoDBStore` refuses, before anything of the batch is written: `None`, and anything JSON
would not give back as it is, with `TypeError` for a wrong type (a set, a tuple, bytes,
a date, a non-``str`` dict key, a subclass of dict/list/str/int/float, any other object,
`None` inside a value) and `InvalidValueError` for a value of the right type that cannot be
stored (NaN or an infinity, an integer outside 64 bits, a string with a lone surrogate, a
field name with ``.``, a leading ``$`` or NUL, more than 98 levels of nesting); the message
names where: ``value['a'][0]: field name 'x.y' contains '.'``. Floats stay floats (``1.0``
comes back as ``1.0``), integers integers.

Errors
------
A server that cannot be reached (server selection, connection, network timeout) raises
`BackendUnavailableError` within about ``timeout`` (the clients the store builds get it as
``serverSelectionTimeoutMS``, ``connectTimeoutMS`` and ``socketTimeoutMS`` unless those are
given), with the password masked and pymongo's error chained; any other pymongo error
raises `KVStoreError` (a bulk write's names its first write error; so does a reply pymongo
cannot read, which FerretDB sends for a failed bulk write). Writes are not
transactional: a server error in the middle of an `mset` may leave part of it written (each
document is written whole, and every operation is an idempotent upsert or delete, so
retrying is safe).

Modules
-------
Import from ``kvstores.mongodb``; its modules are the implementation: ``store`` (the stores,
their operations as programs), ``runner`` (the sync and async runners of the programs),
``connect`` (URLs, options, clients, errors) and ``values`` (`MongoDBStore`'s checks).
"""

from __future__ import annotations

from kvstores.mongodb.store import MongoDBBase, MongoDBByteStore, MongoDBStore, document_id
from kvstores.mongodb.values import MAX_DOCUMENT_VALUE

__all__ = ["MAX_DOCUMENT_VALUE", "MongoDBBase", "MongoDBByteStore", "MongoDBStore", "document_id"]
