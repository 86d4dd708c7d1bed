// Package fake is an in-memory L2 store for tests and examples: a stand-in
// for a Redis server that several cache instances in one process share, so a
// test or an example can run a fleet without a network or a redis-server.
// It is not a production store: one lock serialises every call, nothing is
// persisted, and memory is bounded only by what the caller writes.
//
// A [Backend] plays the Redis server; [Backend.Remote] opens a [Remote], one
// client of it under a key prefix, which implements [tier.Remote] and every
// optional capability of package tier and passes the conformance suite in
// [github.com/agentcache/agentcache-go/tier/tiertest]:
//
//	backend := fake.NewBackend(fake.BackendOptions{})
//	defer backend.Close()
//	a, _ := agentcache.New(agentcache.Options{L2: backend.Remote("shop:")})
//	b, _ := agentcache.New(agentcache.Options{L2: backend.Remote("shop:")})
//	// a and b share entries, epochs, leases and invalidation messages.
//
// # What it models of Redis
//
//   - One key space: values, epochs (decimal text) and leases (their token)
//     live side by side, as the Redis store keeps them, and a prefix's Clear
//     removes every key that starts with it, so prefixes nest.
//   - Per-key TTLs, honoured on every read (an expired key is never
//     returned) and swept in the background in bounded steps.
//   - Atomic multi-key calls: each call runs under one lock, as a Lua script
//     or a MULTI does, and the notices it publishes ([tier.Notice]) are
//     delivered under the same lock as the writes they announce.
//   - Pub/sub per prefix and channel, fire-and-forget: a subscription's first
//     delivery is a Reset, and a receiver that falls behind loses its backlog
//     and gets a Reset, as a client that reconnects does.
//   - A server clock for epochs and record stamps, in microseconds, that
//     never repeats a reading and never goes back ([BackendOptions.Clock]
//     makes it a fake clock).
//   - An outage ([Backend.SetError]: every call fails until it is cleared,
//     then subscribers get a Reset) and a pub/sub reconnect
//     ([Backend.ResetSubscriptions]).
//
// # What it does not model
//
// Latency, timeouts and partial failures (one call failing while others
// succeed, a connection dropped mid-pipeline); Redis Cluster (hash slots,
// CROSSSLOT errors, MOVED, failover: every multi-key call is atomic here,
// which on a cluster holds only within one slot); eviction under maxmemory;
// persistence and restarts (data survives until Close); TTL rounding to
// milliseconds; keys of other Redis types (every value is a string here);
// and the RESP protocol itself: code that talks to Redis through go-redis
// needs a redis-server (see tier/redis's tests) or a protocol-level fake.
package fake
