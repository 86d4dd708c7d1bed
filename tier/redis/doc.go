// Package redis is the Redis remote store (L2) of agentcache, built on a
// go-redis [goredis.UniversalClient]: a single server, a Redis Cluster
// ([goredis.ClusterClient]) or a Sentinel-managed primary
// ([goredis.NewFailoverClient]); a client-side sharded Ring works too, each
// shard treated like a cluster node. It implements [tier.Remote] and every
// optional capability of the tier package, and passes
// [github.com/agentcache/agentcache-go/tier/tiertest] on a single server, on
// a cluster and on a Ring. It needs Redis 7.0 or later. Writes of records
// ([Store.WriteRecords], [Store.Invalidate]), epochs ([Store.LoadEpochs],
// [Store.BumpEpochs]) and reads that take a lease are Lua scripts that read
// the server's clock, one call per key, pipelined; a read of records without
// leases on one server ([Store.ReadRecords]) is the server's TIME and one
// MGET in one pipeline.
//
// # Round trips
//
// Each call of the cache's paths is one round trip (on a cluster, one
// pipeline per master it touches, in parallel):
//
//   - [Store.ReadRecords] sends the epochs it loads and the keys it reads
//     (each with its lease) in one pipeline, so an L2 hit costs one round
//     trip even when the reader did not know the epochs yet.
//   - [Store.WriteRecords]: each script writes, releases the lease and
//     publishes the write's notice.
//   - [Store.Invalidate]: the tombstones and the epoch bumps, each
//     publishing its notice, in one pipeline; with Options.WaitReplicas the
//     WAIT of each master goes in the same pipeline, on the connection that
//     made the writes (unless the client's read timeout is shorter than
//     WaitTimeout and a margin, when it follows as a command of its own).
//
// Notices ([tier.Notice]) are published by the scripts themselves, on the
// store's channel (Options.Prefix and the channel, as [Store.Publish]
// names it): nobody hears of a write that was not made, and announcing
// costs no round trip. On a cluster a script publishes from the master of
// its key and Redis Cluster relays the message to every node, so the
// subscribers (on the master of the channel's slot) get it; notices made on
// one master arrive in the order they were made, those of different masters
// in any order. On a Ring the shard of a key is not the shard of a channel,
// and a Ring relays nothing: there the notices are published after the
// scripts, pipelined as [Store.Publish] sends them (one more round trip per
// shard; a notice of a write that could not be published is dropped, one
// of an invalidation fails the call).
//
// Scripts are sent by hash (EVALSHA) to a server that has run them for the
// store. The first call of a script to a server carries its body (EVAL),
// which caches it there, in the same pipeline: the first use of a script
// costs no round trip of its own. A server that lost its scripts (a
// restart, a failover to a replica that never ran them) answers NOSCRIPT;
// the calls it refused, and only those, are sent again with the body.
//
// Open a store on a client you own with [New], or let [NewFromConfig] or
// [NewFromURL] create and own the client; all three take the store's
// [Options]. go-redis logs on its own, through one logger per process:
// [SetLogger] routes it to a *slog.Logger.
//
// # Starting without Redis
//
// The constructors do no I/O. A configuration they cannot use (a malformed
// URL, Addr and Addrs both set, a bad prefix) fails at once with an error
// that says why; an unreachable server or wrong credentials do not, so that
// a service starts, degraded, during a Redis outage instead of crash-looping.
// The store then connects by itself once Redis answers, without being
// rebuilt. [Store.Ping] is the explicit check ("redis: connecting to
// 127.0.0.1:6379: ... connection refused", "redis: authentication failed
// for ..."): call it at start, with a deadline, to refuse to run without
// Redis or to log that the cache starts without its L2.
//
// The clients the constructors create fail fast while Redis is away: a
// refused connection costs a call one dial and no retry, so the call
// returns its error at once rather than after go-redis's default of five
// dials 100ms apart and three retries; a cluster client, which still
// follows MOVED and ASK, retries a failed node at most three times, a
// millisecond or two apart. A TLS handshake
// ends with the call's context, not only with the dial timeout. Once a
// server has refused a pool's worth of dials, go-redis stops dialing it and
// probes it once a second in the background, so it is back within a second
// of the server. The errors of a store made from a URL never show the
// URL's credentials, even when a malformed URL makes them part of the
// address.
//
// # Keys and Clear
//
// Every key and every pub/sub channel is Options.Prefix followed by the key
// the cache supplies, byte for byte. The prefix cannot contain '{' or '}', so
// the Redis Cluster hash tag of a key is always chosen by the cache's part of
// the key (agentcache puts one resource×scope in one slot that way).
//
// The prefix must end with ':'. Clear removes the keys that start with the
// prefix and nothing else: it walks the keyspace with SCAN and a MATCH
// pattern made from the prefix, its glob characters escaped, followed by
// '*'. Were "tenant1" a prefix, that pattern would also match the keys of
// "tenant10"; "tenant1:" matches neither "tenant10:..." nor "tenant1x:...".
// Prefixes still nest at a ':': Clear with prefix "app:" also removes the
// keys of a store whose prefix is "app:v2:", so give caches that must be
// cleared apart prefixes of which neither starts the other ("app:v1:" and
// "app:v2:").
//
// Clear never uses KEYS. It asks for large pages (SCAN COUNT 10000) and
// deletes each page with UNLINK (memory is reclaimed in the background)
// in the same round trip as the SCAN of the next page: one UNLINK of the
// whole page on a single server, single-key UNLINKs pipelined a thousand at
// a time on a cluster node, whose pages span many slots. The masters of a
// cluster (the shards of a Ring) are cleared in parallel. A page holds the
// server for some milliseconds; 300,000 keys take about a second on a slow
// machine. Clear visits the whole keyspace: it is an administrative
// operation, not a hot-path one, and keys written while it runs may
// survive it.
//
// Clear has no deadline of its own: it runs until it is done or its context
// ends, so give it a context that allows for the keyspace rather than the
// short timeout of a cache call. When the context ends, a server fails or
// the store is closed, Clear stops and returns a [*ClearError]: how many keys
// it deleted, and the servers where keys remain (the others are clear). It
// wraps the cause, ctx.Err() included, for errors.Is.
//
// # Isolation
//
// A reply is never handed to the wrong caller. go-redis closes a connection
// whose reply was not read completely (a timeout or a cancelled context)
// instead of returning it to the pool, so a late reply cannot be read by the
// next user of the connection. Each call checks its context first, and the
// clients that [NewFromConfig] and [NewFromURL] create set
// ContextTimeoutEnabled, so a context deadline also bounds the network I/O of
// each call; set it on clients you pass to [New] for the same effect
// (otherwise only the client's own read and write timeouts bound a call).
//
// # Failures
//
// Every Redis or network error is returned to the caller, wrapped with the
// operation ("redis: get: ..."); the cache above decides what to do with it
// (it never fails a read because of L2). A miss is never an error: go-redis's
// redis.Nil does not leave this package. An error caused by the caller's
// context wraps ctx.Err(), so it can be told apart from a failing server; an
// operation after Close returns an error wrapping [tier.ErrClosed]. Keys
// never appear in error messages, since they may hold user IDs.
//
// # Clusters
//
// Batches ([Store.GetMulti], [Store.SetMulti], the record and epoch
// scripts, multi-key [Store.Delete]) are sent as pipelines of
// single-key commands; go-redis splits a cluster pipeline by node, so a batch
// costs one round trip per master it touches and can never fail with
// CROSSSLOT. On a single server, GetMulti uses one MGET and Delete one
// UNLINK. When one cluster node fails, only the keys on that node report the
// error (in [tier.Lookup].Err, or in the per-write errors of SetMulti); a
// whole-call error is returned only when nothing succeeded.
//
// Publish sends PUBLISH to the master that owns the channel's hash slot, and
// Subscribe connects to that same node, so the messages of one publisher
// arrive in the order they were published (Redis Cluster still broadcasts
// them to every node). go-redis re-subscribes after a lost connection, a
// restart or a failover; each confirmed (re)subscription is delivered as a
// [tier.Message] with Reset set. A receiver that falls behind by more than
// Options.SubscriptionBuffer messages loses its backlog and gets a Reset
// instead, so a lost message is always signalled.
//
// Leases ([Store.TryLock]) use SET NX PX, in a Lua script that takes over a
// lease key without an expiry (which would otherwise block its key forever);
// Extend and Unlock are Lua scripts that compare the token first, so only the
// holder can extend or release.
//
// [goredis.UniversalClient]: https://pkg.go.dev/github.com/redis/go-redis/v9#UniversalClient
// [goredis.ClusterClient]: https://pkg.go.dev/github.com/redis/go-redis/v9#ClusterClient
// [goredis.NewFailoverClient]: https://pkg.go.dev/github.com/redis/go-redis/v9#NewFailoverClient
package redis
