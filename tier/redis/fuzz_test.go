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

// FuzzNewFromURLHidesPassword builds URLs around a known password. Those
// go-redis cannot parse go to NewFromURL, which must refuse them before any
// I/O; those it can parse go to the parsing half of NewFromURL (a parsable URL
// would make NewFromURL connect to whatever host it names).
//
// It checks: no panic; for a refused URL, an error that starts with
// "redis: " and no trace of the password in it, raw or escaped; for a parsed
// one, the options NewFromURL would connect with: the cache's tuning
// (context deadlines honoured, positive timeouts, at most one retry of its
// own), and a name for the server in errors that holds no password.
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
		if _, err := goredis.ParseURL(raw); err == nil {
			o, _, err := acredis.OptionsFromURL(raw)
			if err != nil {
				t.Fatalf("go-redis parses %q but NewFromURL would not: %v", raw, err)
			}
			if !o.ContextTimeoutEnabled || o.DialTimeout <= 0 || o.ReadTimeout == 0 || o.WriteTimeout == 0 ||
				o.MaxRetries > 1 || o.DialerRetries > 1 {
				t.Fatalf("%q: options not tuned for a cache: %+v", raw, o)
			}
			if shown := acredis.ShownAddr(o); strings.Contains(shown, fzSecret) {
				t.Fatalf("%q: errors would name the server %q, password included", raw, shown)
			}
			return
		}
		s, err := acredis.NewFromURL(raw, "fz:")
		if err == nil {
			_ = s.Close()
			t.Fatalf("NewFromURL accepted %q, which go-redis cannot parse", raw)
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
