// Package memory holds the in-process stores: [Store], the bounded L1 that
// every Cache uses, and an in-memory remote store (see remote.go) that stands
// in for Redis in examples and in tests that simulate several instances in
// one process.
//
// Store is a thin layer over otter (github.com/maypok86/otter/v2): a
// concurrent cache with a W-TinyLFU eviction policy, which keeps a higher hit
// ratio than LRU on the skewed workloads agents produce, and lock-free reads.
// Store adds per-entry TTLs through a single generic value type and counts
// evictions; it keeps hit and miss accounting out of the read path (the Cache
// above counts those per tier), so a Store hit costs what an otter hit costs.
package memory
