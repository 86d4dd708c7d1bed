package redis_test

// Fuzz target of the reliability suite (issue 10): a Redis URL is
// configuration that often comes from the environment, password included,
// and errors end up in logs.

import (
	"net/url"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	acredis "github.com/agentcache/agentcache-go/tier/redis"
)

const fzSecret = "hunter2-Zq9"

// FuzzNewFromURLHidesPassword builds URLs around a known password and parses
// them as NewFromURL does, without connecting (a URL it accepts would make
// NewFromURL connect to whatever host it names).
//
// It checks: no panic; every URL go-redis cannot parse is refused; for a
// refused URL, NewFromURL's error too, which starts with "redis: " and shows
// no trace of the password, raw or escaped; for an accepted one, the options
// NewFromURL would connect with: the cache's tuning (context deadlines
// honoured, positive timeouts, at most one retry of its own), and an
// address that holds no password (go-redis logs it with every failed dial),
// nor does the name for the server in errors.
func FuzzNewFromURLHidesPassword(f *testing.F) {
	f.Add("redis://", "127.0.0.1:6379/x")
	f.Add("rediss://", "127.0.0.1:6379/0?dial_timeout=abc")
	f.Add("redis://", "127.0.0.1:port")
	f.Add("redis://", "[::1")
	f.Add("unix://", "")
	f.Add("http://", "host")
	f.Add("redis://", "host:6379/0?pool_size=-x&password=x")
	f.Add("redis://", "host:6379/99999999999999999999")
	f.Add("redis://u:", "h")
	f.Add("redis:// ", "h")
	f.Add("redis://%zz", "h")
	f.Add("redis://", "host:6379/0?protocol=9")
	f.Add("redis://", "host:6379/0?unknown_option=1")
	f.Fuzz(func(t *testing.T, before, after string) {
		raw := before + "user:" + fzSecret + "@" + after
		o, _, err := acredis.OptionsFromURL(raw)
		if err == nil {
			if _, perr := goredis.ParseURL(raw); perr != nil {
				t.Fatalf("NewFromURL would accept %q, which go-redis cannot parse: %v", raw, perr)
			}
			if !o.ContextTimeoutEnabled || o.DialTimeout <= 0 || o.ReadTimeout == 0 || o.WriteTimeout == 0 ||
				o.MaxRetries > 1 || o.DialerRetries > 1 {
				t.Fatalf("%q: options not tuned for a cache: %+v", raw, o)
			}
			if strings.Contains(o.Addr, fzSecret) {
				t.Fatalf("%q: the address %q, which go-redis logs, holds the password", raw, o.Addr)
			}
			if shown := acredis.ShownAddr(o); strings.Contains(shown, fzSecret) {
				t.Fatalf("%q: errors would name the server %q, password included", raw, shown)
			}
			return
		}
		s, err := acredis.NewFromURL(raw, acredis.Options{Prefix: "fz:"})
		if err == nil {
			_ = s.Close()
			t.Fatalf("NewFromURL accepted %q, which its parsing refuses", raw)
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "redis: ") {
			t.Errorf("error %q does not start with the package name", msg)
		}
		for _, form := range []string{fzSecret, url.QueryEscape(fzSecret), url.PathEscape(fzSecret)} {
			if strings.Contains(msg, form) {
				t.Fatalf("the error for %q shows the password: %q", raw, msg)
			}
		}
	})
}
