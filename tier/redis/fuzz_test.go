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

// FuzzNewFromURLHidesPassword builds URLs around a known password and hands
// those go-redis cannot parse to NewFromURL (a URL it can parse would make
// NewFromURL connect to whatever host it names, so those are skipped).
//
// It checks: no panic, an error that starts with "redis: ", and no trace of
// the password in it, raw or escaped.
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
			t.Skip("parses: NewFromURL would connect")
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
