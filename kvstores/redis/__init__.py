"""`RedisByteStore`: a byte store on Redis or Redis Cluster, sync and natively async (redis-py ≥ 5).

Build it from a URL, which makes the store own (and close) its clients::

    RedisByteStore.from_url("redis://localhost:6379/0", namespace="emb", ttl=3600)
    RedisByteStore.from_url("rediss://:password@host:6380/0")        # TLS, e.g. Upstash
    RedisByteStore.from_url("unix:///run/redis.sock?db=0")
    RedisByteStore.from_url("redis+cluster://node1:7000")           # Redis Cluster
    RedisByteStore.from_url("rediss+cluster://node1:7000")          # Redis Cluster over TLS

or from a redis-py client (`redis.Redis`, `redis.asyncio.Redis`, `redis.cluster.RedisCluster`
or `redis.asyncio.cluster.RedisCluster`), which the store uses and never closes. Extra
keyword arguments of `from_url` go to redis-py's own ``from_url`` (``max_connections=``,
``ssl_ca_certs=``, ...; plain values, since they configure the sync and the async client).
``timeout`` (default 10 s) is the connect and socket timeout of the clients the store builds,
and how long a call waits for a free connection. ``namespace``, ``ttl`` and ``timeout`` may
also be URL query parameters (keywords win). An option or query parameter that neither
kvstores nor the installed redis-py's clients take (a typo such as ``namespce``) raises
`ConfigurationError` when the store is built, naming the known ones; an option only
redis-py's sync client takes (``ssl_validate_ocsp``, ``cache``, ...) makes the async
methods run the sync ones in a worker thread.

Connections
-----------
A burst of concurrent calls waits for a free connection (up to ``timeout``) instead of
failing: the clients the store builds use redis-py's blocking connection pools (standalone,
and each node of a sync cluster; 50 connections unless ``max_connections`` says otherwise).
redis-py's asyncio cluster client has no such pool (a node with ``max_connections``
connections out fails the next call at once), so the store lets at most ``max_connections``
of its operations run at once on each async cluster client, shared by the stores on that
client, and the others wait for their turn.

Sync and async everywhere
-------------------------
Every store serves both the sync and the async methods, natively (`redis.asyncio` for the
async ones). The missing twin is built lazily from the same connection parameters: a store
given a sync client builds a `redis.asyncio` client from its address, database, credentials,
TLS settings and timeouts (for a cluster: from its startup nodes), and a store given an async
client builds the sync one likewise. The twins the store builds are its own and are closed by
`close()`/`aclose()`. Other client options (custom retry objects, event hooks, client-side
caching) are not carried over; a client whose connection class is not one of redis-py's own
(say a Sentinel-managed pool) gets no async twin, and its async methods run the sync ones in a
worker thread instead. A `redis.asyncio` client is bound to the event loop it first ran on:
the store keeps one async client per running loop for the clients it builds, closed when
that loop shuts down (so ``asyncio.run(store.amget(...))`` repeatedly works), while an async
client you pass is used
as is, on whatever loop calls the store, so use such a store from that client's loop.

Key layout
----------
Every key of a store lives under one prefix, so stores with different namespaces never meet,
even when one namespace is a prefix of another or contains ``:``::

    namespace=None        kvstores::<key>
    namespace="emb"       kvstores:3:emb:<key>      (3 = the namespace's length in characters)

A namespaced prefix has a digit where the default one has ``:``, and the length makes the end
of the namespace unambiguous, so no prefix is a prefix of another store's keys. Keys are the
UTF-8 bytes of the `str` key after the prefix and come back exactly; values are stored as the
raw bytes (up to 512 MiB, Redis' ``proto-max-bulk-len``). The namespace is not a hash tag, so
on a cluster a store's keys spread over every slot and node (a namespace that itself contains
``{tag}`` pins the store to one slot, which is Redis' usual rule).

Raw commands
------------
`RedisByteStore.client` is the sync redis-py client the store uses (the one you gave it, or
the one it builds from its URL on first access), for what the store does not offer, with
`key_prefix` naming a key as stored::

    from kvstores.redis import RedisByteStore, key_prefix

    store = RedisByteStore.from_url("redis://localhost:6379/0", namespace="emb")
    store.client.pttl(key_prefix(store.namespace) + "some key")   # ms left before expiry

Operations
----------
- standalone: `mget` is one ``MGET``; `mset` one ``MSET`` or, with a ttl, one pipeline of
  ``SET key value PX ms`` (so Redis expires entries itself; a write without ttl clears any
  earlier expiry); `mdelete` one ``UNLINK`` (``DEL`` on servers older than 4.0). Batches of
  over 10,000 keys or 128 MiB are sent as several commands in one pipeline: still one round
  trip, without one huge command stalling the server.
- cluster: a batch is routed key by key (hash slot → primary from redis-py's slot map) and each
  node gets one pipeline of ``GET``/``SET``/``UNLINK`` commands, all nodes at once: the sync
  path writes every node's pipeline before reading any reply, the async one gathers them. A
  batch thus costs one round trip per node, in parallel, whatever the slots, and never meets
  ``CROSSSLOT``. (redis-py's ``mget_nonatomic`` sends one ``MGET`` per slot through its generic
  cluster pipeline, which costs more than twice as much client time.) When a node answers
  ``MOVED``/``ASK``/``TRYAGAIN`` or fails (resharding, failover), the batch is re-sent through
  redis-py's own cluster commands, which follow redirects and refresh the slot map; every
  operation is idempotent, so resending is safe.
- `yield_keys` runs ``SCAN`` with ``MATCH <prefix>*`` (namespace and prefix glob-escaped, so
  ``*?[]\\`` stand for themselves) and ``COUNT 2000`` (`scan_count`), on every primary of a
  cluster, decoding each page in a few C-level passes. Redis walks ``COUNT`` hash buckets per
  call whatever matches, so the count trades round trips (which dominate a listing, all the
  more over a real network) against how long one call holds the server (well under a
  millisecond for 2000 buckets).

``SCAN`` may return a key more than once when Redis resizes a hash table during the scan,
which can happen without this store being written to (other clients' writes, expiries,
the server shrinking a table in its cron). The store therefore remembers the keys it has
yielded (their raw bytes) and skips repeats: exactly once, at the cost of memory proportional
to the number of keys listed (about 60 bytes plus the key). Set ``scan_dedupe = False`` on a
store (or a subclass) to list a huge keyspace in constant memory, accepting the rare repeat.
Keys written during a scan may or may not be listed; keys present throughout always are (on a
cluster, unless their slot migrates mid-scan).

Errors
------
An unreachable server, a failed connection or authentication, or a cluster that is down
raises `BackendUnavailableError` (password masked, the redis-py error chained as
``__cause__``). The standalone clients the store builds retry a broken connection once, right
away, and never retry a timeout, so a dead server is reported within ``timeout``. On a
cluster, an operation cut by what may be a failover (a node refusing connections, the
cluster down, a slot unserved) is sent again every quarter second until a replica has taken
over, for as long as ``timeout`` allows counted from the operation's start (every operation
is idempotent), and a listing scans a primary cut before its first page again on the node
serving its slots by then; a timeout or refused credentials are not retried, and a cluster
none of whose startup nodes answers is reported at once. Any other Redis error raises
`KVStoreError`. Each message names the redis-py error's class and its message (some,
such as ``MaxConnectionsError``, have none). A client created with ``decode_responses=True``
(values are bytes, and decoding them would corrupt binary data), a URL that is not a Redis
one or is malformed, an unknown option and a ttl past what Redis can expire raise
`ConfigurationError` (a `ValueError`) when the store is built.

Modules
-------
Import from ``kvstores.redis``; its modules are the implementation and may change: ``store``
(the store, its operations written once as programs), ``runner`` (the sync and async runners
of those programs), ``cluster`` (slot routing, one pipeline per node, the asyncio cluster's
gate), ``scan`` (listing), ``packer`` (the hiredis command packer) and ``driver`` (everything
that depends on the redis-py version).
"""

from __future__ import annotations

from kvstores.redis.store import RedisByteStore, key_prefix

__all__ = ["RedisByteStore", "key_prefix"]
