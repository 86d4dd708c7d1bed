// Package memory is the in-process L1 store: [Store], the bounded cache that
// every Cache keeps in front of its L2. (The in-memory stand-in for Redis as
// L2, for tests and examples, is package
// [github.com/agentcache/agentcache-go/tier/fake].)
//
// Store is a thin layer over otter (github.com/maypok86/otter/v2): a
// concurrent cache with a W-TinyLFU eviction policy, which keeps a higher hit
// ratio than LRU on the skewed workloads agents produce, and lock-free reads.
// Store adds per-entry TTLs through a single generic value type and counts
// evictions; it keeps hit and miss accounting out of the read path (the Cache
// above counts those per tier), so a Store hit costs what an otter hit costs.
package memory
