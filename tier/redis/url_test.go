package redis

import (
	"context"
	"fmt"
	"log"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/internal/redistest"
	"github.com/agentcache/agentcache-go/tier"
)

// captureLog is a go-redis logger that keeps what it is given.
type captureLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *captureLog) Printf(_ context.Context, format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, v...))
}

func (l *captureLog) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// stderrLog is go-redis's default logger, which go-redis offers no way to
// get back once replaced.
type stderrLog struct{ l *log.Logger }

func (s stderrLog) Printf(_ context.Context, format string, v ...any) {
	_ = s.l.Output(3, fmt.Sprintf(format, v...))
}

// captureGoRedisLog sends go-redis's log (a process-wide logger) to a
// captureLog until t ends, then back to stderr. A test that calls it must
// not be parallel: it would take the log of the tests running with it.
func captureGoRedisLog(t *testing.T) *captureLog {
	c := &captureLog{}
	goredis.SetLogger(c)
	t.Cleanup(func() { goredis.SetLogger(stderrLog{log.New(os.Stderr, "redis: ", log.LstdFlags|log.Lshortfile)}) })
	return c
}

// secretForms are the ways a password can show in text: raw or escaped.
func secretForms(pw string) []string {
	return []string{pw, url.QueryEscape(pw), url.PathEscape(pw)}
}

func showsSecret(text, pw string) bool {
	for _, f := range secretForms(pw) {
		if strings.Contains(text, f) {
			return true
		}
	}
	return false
}

// exercise runs the calls that dial s's server, each with a deadline, and
// returns their errors.
func exercise(s *Store) []error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	errs := []error{s.Ping(ctx), s.Set(ctx, "k", []byte("v"), time.Minute)}
	_, _, err := s.Get(ctx, "k")
	errs = append(errs, err)
	_, _, err = s.ReadRecords(ctx, []tier.EpochOp{{Key: "ep:g"}}, []tier.ReadOp{{Key: "{a}k", Lease: &tier.Lease{Key: "lk:{a}k", Token: "t", TTL: time.Second}}})
	errs = append(errs, err)
	sub, err := s.Subscribe(ctx, "ch")
	errs = append(errs, err)
	if sub != nil {
		time.Sleep(100 * time.Millisecond) // its reconnects dial and log too
		_ = sub.Close()
	}
	errs = append(errs, s.Clear(ctx), s.Close())
	return errs
}

// TestNewFromURLNeverShowsPassword: NewFromURL refuses a URL that go-redis
// cannot parse, and a URL that go-redis parses but where part of it is
// ignored or taken for the address (where a misplaced password ends up,
// and go-redis logs the address with every failed dial), with an error that
// starts with "redis: invalid URL: " and holds no password. A URL it accepts
// that names an unreachable server never makes the store's errors or
// go-redis's log show the password either.
func TestNewFromURLNeverShowsPassword(t *testing.T) {
	const pw = "s3cr3t-Pw9"
	logs := captureGoRedisLog(t)
	sock := filepath.Join(t.TempDir(), "nonexistent.sock")
	for _, raw := range []string{
		// unix:
		"unix://user:" + pw + "@/tmp/nonexistent.sock?db=abc",
		"unix://user:" + pw + "@/tmp/nonexistent.sock?dial_timeout=abc",
		"unix://user:" + pw + "@/tmp/nonexistent.sock?password=x",
		"unix://user:" + pw + "@",
		"unix:/user:" + pw + "@/tmp/nonexistent.sock",      // no "//": all of it is the path
		"unix:user:" + pw + "@/tmp/nonexistent.sock",       // opaque
		"unix:///tmp/user:" + pw + "@nonexistent.sock",     // credentials inside the path
		"unix://user:" + pw + "@host/tmp/nonexistent.sock", // a host, which go-redis ignores
		"unix://user:12#" + pw + "@/tmp/nonexistent.sock",  // an unescaped '#'
		"unix://user:" + pw + "@/tmp/nonexistent.sock#x",
		// redis: and others
		"redis://user:" + pw + ".example.com:6379",    // '@' typed as '.': the password is in the host
		"redis://user:" + pw + "example.com:6379",     // '@' left out
		"redis://user:1234#" + pw + "@localhost:6379", // an unescaped '#': host "user", port 1234
		"redis://user:12/" + pw + "@localhost:6379",   // an unescaped '/'
		"redis://user:12?" + pw + "@localhost:6379",   // an unescaped '?'
		"redis:user:" + pw + "@localhost:6379",        // opaque: go-redis would dial localhost:6379
		"redis://user:" + pw + "@localhost:6379/abc",
		"redis://user:" + pw + "@localhost:6379/0/1",
		"redis://user:" + pw + "@localhost:notaport",
		"redis://user:" + pw + "@localhost:6379?foo=bar",
		"redis://user:" + pw + "@local host:6379",
		"redis://user:" + pw + "@[::1",
		"redis://user:" + pw + "@[user:" + pw + "]:6379",
		"rediss://user:" + pw + "@localhost:6379?skip_verify=maybe",
		"http://user:" + pw + "@localhost:6379",
	} {
		s, err := NewFromURL(raw, Options{Prefix: "p:"})
		if err == nil {
			t.Errorf("NewFromURL(%q): accepted, want it refused", raw)
			for _, err := range exercise(s) {
				if err != nil && showsSecret(err.Error(), pw) {
					t.Errorf("NewFromURL(%q): a call's error shows the password: %q", raw, err)
				}
			}
			continue
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "redis: invalid URL: ") || showsSecret(msg, pw) {
			t.Errorf("NewFromURL(%q) = %q, want an error that starts with \"redis: invalid URL: \" and does not show the password", raw, msg)
		}
	}
	// Well-formed, with nothing listening: accepted (a degraded start), and
	// every call fails on a dial that go-redis logs.
	for _, raw := range []string{
		"unix://user:" + pw + "@" + sock + "?db=1",
		"unix://:" + pw + "@" + sock,
		"redis://user:" + pw + "@" + closedPort(t) + "/0",
		"rediss://:" + pw + "@" + closedPort(t),
	} {
		s, err := NewFromURL(raw, Options{Prefix: "p:"})
		if err != nil {
			t.Errorf("NewFromURL(%q): %v, want a store", raw, err)
			continue
		}
		failed := 0
		for _, err := range exercise(s) {
			if err != nil {
				failed++
				if showsSecret(err.Error(), pw) {
					t.Errorf("NewFromURL(%q): a call's error shows the password: %q", raw, err)
				}
			}
		}
		if failed == 0 {
			t.Errorf("NewFromURL(%q): every call succeeded, with nothing listening", raw)
		}
	}
	time.Sleep(100 * time.Millisecond) // the last background dials
	text := logs.text()
	if !strings.Contains(text, "dial") {
		t.Errorf("go-redis logged no failed dial, so this test checks nothing: %q", text)
	}
	if showsSecret(text, pw) {
		t.Errorf("go-redis's log shows the password:\n%s", text)
	}
}

// TestNewFromURLUnixSocket: a well-formed unix: URL, password and database
// included, reaches a server on its socket.
func TestNewFromURLUnixSocket(t *testing.T) {
	t.Parallel()
	// A socket path is at most about 100 bytes: t.TempDir() may be longer.
	dir, err := os.MkdirTemp("", "acsock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "redis.sock")
	const pw = "s3cr3t-Pw9"
	srv := redistest.Start(t, redistest.Config{Password: pw, Args: []string{"unixsocket " + sock, "unixsocketperm 700"}})
	s := mustOpen(t)(NewFromURL("unix://:"+pw+"@"+sock+"?db=2", Options{Prefix: "ux:"}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping over the socket: %v", err)
	}
	if err := s.Set(ctx, "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if o := s.Client().(*goredis.Client).Options(); o.Network != "unix" || o.Addr != sock {
		t.Fatalf("client dials %s %s, want unix %s", o.Network, o.Addr, sock)
	}
	raw := srv.Client(t)
	if err := raw.Do(ctx, "select", 2).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := raw.Get(ctx, "ux:k").Result(); err != nil || got != "v" {
		t.Fatalf("raw GET ux:k in db 2 = (%q, %v), want v", got, err)
	}
}
