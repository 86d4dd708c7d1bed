package redis

import (
	"context"
	"errors"
	"log/slog"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/internal/ratelog"
)

// SetLogger routes go-redis's own log lines (a failed dial, a cluster slot
// reload, a pool that cannot find a usable connection) to l as warnings,
// each kind of line at most once per every, with the count of those held
// back in between: during an outage go-redis logs every failed dial, which
// is a line per cache miss.
//
// go-redis writes through one logger for the whole process, not one per
// client, so this is a process-wide setting, made once at start (it
// replaces go-redis's, as its own SetLogger does). Pass the logger given to
// agentcache's Options.Logger and its Options.Tuning.LogInterval to keep
// every line of the cache's in one place under one limit. every must not
// be negative; zero writes every line.
func SetLogger(l *slog.Logger, every time.Duration) error {
	if l == nil {
		return errors.New("redis: SetLogger: nil logger")
	}
	if every < 0 {
		return errors.New("redis: SetLogger: negative interval")
	}
	goredis.SetLogger(clientLog{ratelog.New(l, every, time.Now)})
	return nil
}

// clientLog is go-redis's Logging interface on a rate-limited slog logger.
// Its kind is the format string: a bounded set, one per call site.
type clientLog struct{ r *ratelog.Log }

func (c clientLog) Printf(_ context.Context, format string, v ...any) {
	c.r.Warnf("redis: go-redis: ", format, v...)
}
