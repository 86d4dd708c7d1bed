// Command agentcache is the operator CLI of the agentcache library. It reads
// what the cache keeps in Redis, and invalidates slices of it through the
// library itself, so epochs are bumped and the invalidation message is
// published exactly as an application's own Invalidate call would.
//
// Usage:
//
//	agentcache [connection flags] <command> [flags]
//
//	stats       per resource@version: entries, live entries, not-found
//	            markers, distinct users/sessions, memory, TTLs, leases; plus
//	            epochs and key-value API entries
//	inspect     list the entries of a resource and/or a user or session,
//	            with kind, state, TTL and size; values with -values
//	invalidate  a resource, a user, a session, a resource in a scope, one
//	            call (-args), or everything (-all, confirmed by typing the
//	            prefix unless -yes)
//	version     the library and Go versions
//
// Connection flags, accepted before or after the command:
//
//	-url URL        one server: redis://[user:password@]host:port[/db] or
//	                rediss:// (default $AGENTCACHE_URL)
//	-cluster SEEDS  a cluster: host:port,host:port,... or a redis:// URL with
//	                more seeds as ?addr=host:port (default $AGENTCACHE_CLUSTER)
//	-prefix P       the cache's key prefix (default $AGENTCACHE_PREFIX, else
//	                "agentcache:")
//
// Examples:
//
//	agentcache stats -url redis://localhost:6379
//	agentcache inspect -url redis://localhost:6379 -resource get_cart@1 -user alice -values
//	agentcache invalidate -url redis://localhost:6379 -resource get_cart@1 -user alice
//	agentcache invalidate -cluster 10.0.0.1:7000,10.0.0.2:7000 -all
//
// Every command prints its flags and more examples with -h. Errors are one
// line on stderr starting with "agentcache:"; the exit status is 1 when a
// command fails and 2 for a wrong command line.
//
// stats and inspect only read: SCAN under the prefix (never KEYS; every
// master of a cluster), then pipelined GETRANGE/GET, PTTL, STRLEN or MEMORY
// USAGE and GET of the epoch keys. They never create keys. An entry is
// "live" when it holds a value or not-found marker whose generation (bytes
// 10-17 of its record) is the one the epochs in Redis give now; stats reads
// the 18-byte record header of every entry for it, pipelined. An entry has
// one key whatever its epochs: an invalidated entry stays in Redis,
// unreachable, until a reload overwrites it or its TTL ends.
package main
