// Package embedded starts the in-process Redis-compatible server that the
// agent demo uses when no REDIS_URL is set: miniredis
// (github.com/alicebob/miniredis/v2), listening on a loopback port, so the
// demo talks to it over TCP with the same tier/redis store and go-redis
// client as it would to a real server.
//
// miniredis implements every command tier/redis sends (GET, SET with NX, GET
// and PX, MGET, UNLINK, SCAN MATCH, PUBLISH/SUBSCRIBE, EVALSHA/EVAL,
// pipelines, RESP3), and the store passes the tier/tiertest conformance suite
// against it (see this package's test) with one setting: by default miniredis
// never expires keys on its own (tests call FastForward), so Start turns on
// ClockTTL, which makes TTLs run on the wall clock like a real server's.
package embedded

import (
	"fmt"

	"github.com/alicebob/miniredis/v2"
)

// Start starts a server on a free loopback port. Close it when done.
func Start() (*miniredis.Miniredis, error) {
	m := miniredis.NewMiniRedis()
	// Without this, keys with a TTL (entries, leases, negative markers,
	// per-scope epochs) would live until the process ends.
	m.ClockTTL(true)
	if err := m.Start(); err != nil {
		return nil, fmt.Errorf("embedded: starting miniredis: %w", err)
	}
	return m, nil
}
