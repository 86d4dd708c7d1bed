package reliability

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/internal/leakcheck"
	"github.com/agentcache/agentcache-go/internal/redistest"
	"github.com/agentcache/agentcache-go/internal/testkit/redisenv"
	"github.com/agentcache/agentcache-go/internal/testkit/wait"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
	"github.com/agentcache/agentcache-go/tier"
	acredis "github.com/agentcache/agentcache-go/tier/redis"
)

const (
	aclUser     = "agent"
	aclPassword = "pa ss\"word-Ω"
	adminPass   = "admin-secret"
)

// caPool reads a CA file the way an application configures one.
func caPool(t testing.TB, file string) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", file)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// roundTrip runs a cache on each store: A loads a per-user value, B reads
// it from L2, A invalidates it and B reloads it (the message crossed Redis).
func roundTrip(t testing.TB, sa, sb tier.Remote) {
	t.Helper()
	a := newCache(t, agentcache.Options{L2: sa, L2Timeout: time.Second})
	b := newCache(t, agentcache.Options{L2: sb, L2Timeout: time.Second})
	res := resource.Resource{Name: "rel_secure", Scope: scope.User, TTL: time.Minute}
	var runs atomic.Int64
	tool := func(ctx context.Context, q string) (string, error) {
		u, _ := scope.UserFrom(ctx)
		return u + ":" + q + ":" + string(rune('0'+runs.Add(1))), nil
	}
	ga, err := agentcache.Wrap(a, res, tool, agentcache.WriteThrough())
	if err != nil {
		t.Fatal(err)
	}
	gb, err := agentcache.Wrap(b, res, tool)
	if err != nil {
		t.Fatal(err)
	}
	ctx := scope.WithUser(context.Background(), "alice")
	first, err := ga(ctx, "q")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := gb(ctx, "q"); err != nil || got != first || runs.Load() != 1 || b.Stats().L2Hits != 1 {
		t.Fatalf("B read %q, %v after %d tool runs (%d L2 hits); want A's %q from L2", got, err, runs.Load(), b.Stats().L2Hits, first)
	}
	if err := a.Invalidate(ctx, agentcache.TargetResourceScope(res, "alice")); err != nil {
		t.Fatalf("Invalidate: %v", err)
	}
	wait.For(t, 5*time.Second, "B to reload after A's invalidation", func() bool {
		got, err := gb(ctx, "q")
		return err == nil && got != first
	})
	if s := a.Stats(); s.L2Errors != 0 || s.FleetErrors != 0 {
		t.Fatalf("A: %d L2 errors, %d fleet errors", s.L2Errors, s.FleetErrors)
	}
}

// TestSecurityACLAndTLS runs the cache against a redis-server that accepts
// TLS only and has an ACL user, through both tier/redis constructors.
//
// Promises checked: NewFromConfig (ACL user, password, TLS with the CA file)
// and NewFromURL (rediss://user:password@…, the CA trusted through
// SSL_CERT_FILE) give a working cache — values shared through L2 and
// invalidations through pub/sub; a user confined to the cache's prefix by
// ACL key and channel patterns is enough; a wrong password, a wrong user, no
// credentials, plain TCP to a TLS port and an untrusted certificate each
// fail at start with a clear error that never contains the password.
func TestSecurityACLAndTLS(t *testing.T) {
	leakcheck.Check(t)
	srv := redistest.Start(t, redistest.Config{TLS: true, Password: adminPass, ACLUser: aclUser, ACLPassword: aclPassword})
	tlsConf := caPool(t, srv.CAFile())
	prefix := redisenv.Prefix(t, "rel-")
	config := func(mod func(*acredis.Config)) acredis.Config {
		c := acredis.Config{Addr: srv.Addr(), Username: aclUser, Password: aclPassword, TLS: tlsConf}
		if mod != nil {
			mod(&c)
		}
		return c
	}
	open := func(t *testing.T, cfg acredis.Config, prefix string) *acredis.Store {
		t.Helper()
		s, err := acredis.NewFromConfig(cfg, acredis.Options{Prefix: prefix})
		if err != nil {
			t.Fatalf("NewFromConfig: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}

	t.Run("NewFromConfig with ACL user over TLS", func(t *testing.T) {
		roundTrip(t, open(t, config(nil), prefix), open(t, config(nil), prefix))
	})

	t.Run("ACL user confined to the prefix", func(t *testing.T) {
		admin := srv.Client(t)
		ctx := context.Background()
		const user, pass = "confined", "confined-pw"
		p := prefix + "conf:"
		if err := admin.Do(ctx, "ACL", "SETUSER", user, "reset", "on", ">"+pass, "~"+p+"*", "&"+p+"*", "+@all").Err(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = admin.Do(context.Background(), "ACL", "DELUSER", user).Err() })
		cfg := config(func(c *acredis.Config) { c.Username, c.Password = user, pass })
		sa, sb := open(t, cfg, p), open(t, cfg, p)
		roundTrip(t, sa, sb)
		// The confinement is real: the same user cannot touch another
		// prefix.
		out := open(t, config(func(c *acredis.Config) { c.Username, c.Password = user, pass }), prefix+"other:")
		if err := out.Set(ctx, "k", []byte("v"), time.Minute); err == nil || !strings.Contains(err.Error(), "NOPERM") {
			t.Fatalf("write outside the permitted prefix: %v; want NOPERM", err)
		}
	})

	t.Run("NewFromURL rediss with the CA file", func(t *testing.T) {
		// The CA of a rediss:// URL comes from the system trust store;
		// SSL_CERT_FILE adds a CA file to it. The store is read once per
		// process, so the check runs in a child process.
		u := url.URL{Scheme: "rediss", Host: srv.Addr(), User: url.UserPassword(aclUser, aclPassword)}
		cmd := exec.Command(os.Args[0], "-test.run=^TestSecurityURLChild$", "-test.v")
		cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+srv.CAFile(), "RELIABILITY_REDIS_URL="+u.String(), "RELIABILITY_PREFIX="+prefix+"url:")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestSecurityURLChild") {
			t.Fatalf("child: %v\n%s", err, out)
		}
	})

	// The constructors start degraded; Ping is the explicit check.
	ping := func(s *acredis.Store, err error) error {
		if err != nil {
			return err
		}
		defer s.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return s.Ping(ctx)
	}
	bad := []struct {
		name string
		open func() error
		want string
	}{
		{"wrong password", func() error {
			return ping(acredis.NewFromConfig(config(func(c *acredis.Config) { c.Password = "not-" + aclPassword }), acredis.Options{Prefix: prefix}))
		}, "authentication failed"},
		{"wrong user", func() error {
			return ping(acredis.NewFromConfig(config(func(c *acredis.Config) { c.Username = "mallory" }), acredis.Options{Prefix: prefix}))
		}, "authentication failed"},
		{"no credentials", func() error {
			return ping(acredis.NewFromConfig(config(func(c *acredis.Config) { c.Username, c.Password = "", "" }), acredis.Options{Prefix: prefix}))
		}, "authentication failed"},
		{"wrong password in URL", func() error {
			u := url.URL{Scheme: "rediss", Host: srv.Addr(), User: url.UserPassword(aclUser, "not-"+aclPassword), RawQuery: "skip_verify=true"}
			return ping(acredis.NewFromURL(u.String(), acredis.Options{Prefix: prefix}))
		}, "authentication failed"},
		{"plain TCP to the TLS port", func() error {
			return ping(acredis.NewFromConfig(config(func(c *acredis.Config) { c.TLS = nil }), acredis.Options{Prefix: prefix}))
		}, "redis: connecting to " + srv.Addr()},
		{"untrusted certificate", func() error {
			// Loading the system roots the first time takes long under
			// -race on a busy machine, and counts against the dial timeout.
			_, _ = x509.SystemCertPool()
			u := url.URL{Scheme: "rediss", Host: srv.Addr(), User: url.UserPassword(aclUser, aclPassword)}
			return ping(acredis.NewFromURL(u.String(), acredis.Options{Prefix: prefix}))
		}, "certificate"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := tc.open()
			d := time.Since(start)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not say %q", msg, tc.want)
			}
			if strings.Contains(msg, aclPassword) || strings.Contains(msg, "not-"+aclPassword) || strings.Contains(msg, url.QueryEscape(aclPassword)) {
				t.Errorf("error %q contains the password", msg)
			}
			if d > 3*acredis.DefaultDialTimeout+2*time.Second {
				t.Errorf("took %v to fail", d)
			}
			t.Logf("%v: %v", d.Round(time.Millisecond), msg)
		})
	}
}

// TestSecurityURLChild is the child process of the NewFromURL subtest.
func TestSecurityURLChild(t *testing.T) {
	raw := os.Getenv("RELIABILITY_REDIS_URL")
	if raw == "" {
		t.Skip("runs as the child of TestSecurityACLAndTLS")
	}
	prefix := os.Getenv("RELIABILITY_PREFIX")
	open := func() *acredis.Store {
		s, err := acredis.NewFromURL(raw, acredis.Options{Prefix: prefix})
		if err != nil {
			t.Fatalf("NewFromURL: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	roundTrip(t, open(), open())
}

// TestURLErrorsNeverShowThePassword: NewFromURL promises that its errors never
// echo the URL, which may hold a password, but it passes go-redis's parse
// errors through, and some of them quote the URL's path or query — which is
// where the credentials land when the URL has a typo. Found by
// tier/redis.FuzzNewFromURLHidesPassword.
//
// Cause: NewFromURL (tier/redis/config.go) strips only *url.Error; go-redis's
// ParseURL formats "invalid database number: %q" and "invalid URL path: %s"
// with the path, and "unexpected option: %s" with the query keys.
// Proposed fix: report the kind of error only ("redis: invalid URL: invalid
// database number"), cutting go-redis's message at its first ':' after the
// kind, or redact the userinfo-looking part of the raw URL from it.
//
// Status: fixed in 822504e.
func TestURLErrorsNeverShowThePassword(t *testing.T) {
	const secret = "s3cret-pw"
	for _, raw := range []string{
		"redis:/user:" + secret + "@127.0.0.1:6379", // one slash
		"redis://127.0.0.1:6379/user:" + secret,     // credentials in the path
		"redis://127.0.0.1:6379/0?user:" + secret,   // in the query
	} {
		_, err := acredis.NewFromURL(raw, acredis.Options{Prefix: "p:"})
		if err == nil {
			t.Errorf("%q: no error", strings.ReplaceAll(raw, secret, "***"))
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("NewFromURL(%q) = %q: the error shows the password", strings.ReplaceAll(raw, secret, "***"), strings.ReplaceAll(err.Error(), secret, "<PASSWORD>"))
		}
	}
}
