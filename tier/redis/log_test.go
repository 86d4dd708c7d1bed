package redis

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9/logging"
)

// lockedBuf is a bytes.Buffer that slog may write from several goroutines.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSetLoggerRoutesAndLimitsGoRedisLines: go-redis's own line for a
// failed dial reaches the logger given to SetLogger, once per interval
// however many calls fail, and the next line says how many were held back.
func TestSetLoggerRoutesAndLimitsGoRedisLines(t *testing.T) {
	if err := SetLogger(nil, time.Second); err == nil {
		t.Error("SetLogger(nil) accepted")
	}
	if err := SetLogger(slog.Default(), -time.Second); err == nil {
		t.Error("SetLogger with a negative interval accepted")
	}
	var buf lockedBuf
	if err := SetLogger(slog.New(slog.NewTextHandler(&buf, nil)), time.Hour); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(logging.Enable) // go-redis's own logger again, for the other tests

	s := mustOpen(t)(NewFromURL("redis://"+closedPort(t), Options{}))
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	for range 20 {
		if _, _, err := s.Get(ctx, "k"); err == nil {
			t.Fatal("Get from a closed port succeeded")
		}
	}
	out := buf.String()
	lines := strings.Count(out, "redis: go-redis: redis: connection pool: failed to dial")
	if lines != 1 {
		t.Fatalf("%d lines for 20 failed dials, want 1 (rate-limited); log:\n%s", lines, out)
	}
	if !strings.Contains(out, "level=WARN") {
		t.Errorf("go-redis's line is not a warning: %s", out)
	}
}
