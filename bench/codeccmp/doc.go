// Package codeccmp holds the benchmark behind codec/cbor's choice of CBOR
// over msgpack. It lives in the bench module so that msgpack, which only
// the comparison needs, stays out of agentcache's go.mod.
package codeccmp
