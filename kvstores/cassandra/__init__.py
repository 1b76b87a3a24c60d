"""Apache Cassandra: `CassandraByteStore`, on cassandra-driver (``pip install
"kvstores[cassandra]"``), sync and natively async.

Construction
------------
``CassandraByteStore.from_url("cassandra://[user:password@]host[,host…][:port]/keyspace
[?table=kvstores&consistency=LOCAL_QUORUM&local_dc=…&replication_factor=…&buckets=64]")``
builds and owns a `Cluster` (shut down by `close`); ``CassandraByteStore(session_or_cluster,
keyspace=…)`` uses a user's `Session` (or connects a session of its own on a user's
`Cluster`), never shutting it down. ``namespace``, ``ttl`` and ``timeout`` (seconds to
connect and for each request; default 10) as for every store. The keyspace is created when
``replication_factor`` is given (``SimpleStrategy``, or ``NetworkTopologyStrategy`` in
``local_dc``), the table whenever it is missing, both on first use, idempotently; the driver
waits for schema agreement after each change. ``consistency`` (default ``LOCAL_QUORUM``)
applies to every statement of the store.

Layout
------
One table, one row per key::

    CREATE TABLE <keyspace>.<table> (
        ns text, bucket int, key text, value blob, exp bigint,
        PRIMARY KEY ((ns, bucket), key)
    ) WITH CLUSTERING ORDER BY (key ASC) AND comment = 'kvstores byte store: buckets=64'

- ``ns`` is the namespace (``""`` for none): namespaces never share a partition, so none
  lists or deletes another's keys, even when one namespace is a prefix of another.
- ``bucket`` is ``crc32(utf8(key)) % buckets`` (`bucket_of`): a namespace's keys spread over
  ``buckets`` partitions (64 unless the table was created with ``buckets=``; the count is
  kept in the table's comment and read back, so every store on the table agrees), so a
  partition holds 1/64 of the namespace, not all of it: 6.4 million keys before a partition
  passes 100,000 rows. A table for more keys per namespace is created with more buckets.
- ``key`` is the clustering column, in ascending order: within a partition, the keys with a
  prefix are one contiguous clustering range.
- ``exp`` is the expiry (milliseconds since the epoch; 0: never) of a row written by a store
  with a ttl, which also writes the row ``USING TTL ceil(ttl) + 1`` (Cassandra counts whole
  seconds from the current one: the extra second keeps it from dropping the row before
  ``exp``): Cassandra drops it by itself, and reads skip it from ``exp`` on, to the
  millisecond.

Requests
--------
Statements are prepared once per session and sent concurrently (`max_in_flight`, 256, at
once), one wave per batch:

- `mget`: one ``SELECT key, value, exp … WHERE ns = ? AND bucket = ? AND key IN ?`` per
  bucket the keys fall in (100 keys per ``IN`` at most): never a multi-partition ``IN``.
- `mset`: one unlogged batch of ``INSERT … [USING TTL ?]`` per bucket (100 rows and 4 MiB of
  values at most; a larger value alone): a single-partition batch is one mutation, with no
  batch log, and Cassandra's batch size limits do not apply to it.
- `mdelete`: one ``DELETE … WHERE ns = ? AND bucket = ? AND key IN ?`` per bucket.
- `yield_keys(prefix=p)`: the clustering range ``key >= p AND key < upper bound`` in every
  bucket of the namespace, read by one ``SELECT … WHERE ns = ? AND bucket IN ? AND key >= ?
  AND key < ?`` per group of `list_group` (8) buckets, all groups at once per wave, a page
  each with the driver's paging state: it costs the buckets plus the matches, not the
  table. Pages start at `page_size` (1000 rows) and double from wave to wave up to 16 times
  it, so a long listing sends few statements; at most ``buckets / list_group × 16 ×
  page_size`` keys are held at once.

Empty batches send nothing. The async methods run the same programs, the driver's
`execute_async` futures bridged to asyncio (no thread per call); the first connection is
made in a worker thread (the driver connects blocking).

Values are at most `MAX_VALUE` (15 MiB): Cassandra refuses a mutation over half a commitlog
segment (16 MiB by default). Errors: an unreachable cluster, a timeout or too few replicas
(``Unavailable``) raise `BackendUnavailableError`; any other driver error `KVStoreError`.
"""

from kvstores.cassandra.store import MAX_TTL, MAX_VALUE, CassandraByteStore, bucket_of

__all__ = ["MAX_TTL", "MAX_VALUE", "CassandraByteStore", "bucket_of"]
