package redis

import (
	"context"
	"errors"
	"log"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/internal/redistest"
	"github.com/agentcache/agentcache-go/tier"
)

func TestNewValidatesOptions(t *testing.T) {
	t.Parallel()
	client := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1"})
	defer client.Close()
	for _, tc := range []struct {
		prefix, wantErr string
	}{
		{strings.Repeat("p", MaxPrefixLen+1), "redis: prefix is 129 bytes, longer than 128"},
		{"app{x}:", `redis: prefix must not contain "{"`},
		{"app}:", `redis: prefix must not contain "}"`},
		{"app\n:", `redis: prefix must not contain control character "\n"`},
		{"app\x00:", `redis: prefix must not contain control character "\x00"`},
		{"app\x7f:", `redis: prefix must not contain control character "\x7f"`},
		{"a", "redis: prefix must end with ':'"},
		{"tenant1", "redis: prefix must end with ':'"},
		{"svc:env", "redis: prefix must end with ':'"},
	} {
		_, err := New(client, Options{Prefix: tc.prefix})
		if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
			t.Errorf("New(prefix %q) error = %v, want %q", tc.prefix, err, tc.wantErr)
		}
	}
	if _, err := New(nil, Options{}); err == nil || !strings.HasPrefix(err.Error(), "redis: ") {
		t.Errorf("New(nil client) error = %v", err)
	}
	if _, err := New(client, Options{SubscriptionBuffer: -1}); err == nil {
		t.Error("New with a negative subscription buffer: no error")
	}
	for _, ok := range []string{"", "a:", strings.Repeat("p", MaxPrefixLen-1) + ":", "svc:env:*?[]\\ ünï:"} {
		s, err := New(client, Options{Prefix: ok})
		if err != nil {
			t.Errorf("New(prefix %q): %v", ok, err)
			continue
		}
		if want := ok; want != "" && s.Prefix() != want {
			t.Errorf("Prefix() = %q, want %q", s.Prefix(), want)
		}
	}
	s, _ := New(client, Options{})
	if s.Prefix() != DefaultPrefix {
		t.Errorf("default prefix = %q, want %q", s.Prefix(), DefaultPrefix)
	}
}

func TestNewFromURL(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Config{Password: "s3cret pass"})
	ctx := context.Background()

	t.Run("PasswordAndDB", func(t *testing.T) {
		u := srv.URL() + "/3?read_timeout=2s&client_name=agentcache-test"
		s, err := NewFromURL(u, Options{Prefix: "url:"})
		if err != nil {
			t.Fatalf("NewFromURL: %v", err)
		}
		defer s.Close()
		if err := s.Set(ctx, "k", []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
		// The key landed in database 3, under the prefix.
		raw := srv.Client(t)
		if err := raw.Do(ctx, "select", 3).Err(); err != nil {
			t.Fatal(err)
		}
		if got, err := raw.Get(ctx, "url:k").Result(); err != nil || got != "v" {
			t.Fatalf("raw GET url:k in db 3 = (%q, %v), want v", got, err)
		}
		o := s.Client().(*goredis.Client).Options()
		if !o.ContextTimeoutEnabled {
			t.Error("client made by NewFromURL does not set ContextTimeoutEnabled")
		}
		if o.ReadTimeout != 2*time.Second || o.WriteTimeout != DefaultWriteTimeout || o.DialTimeout != DefaultDialTimeout {
			t.Errorf("timeouts dial %v read %v write %v, want %v 2s %v (URL value kept, defaults elsewhere)",
				o.DialTimeout, o.ReadTimeout, o.WriteTimeout, DefaultDialTimeout, DefaultWriteTimeout)
		}
		// The store owns the client.
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Client().Ping(ctx).Err(); !errors.Is(err, goredis.ErrClosed) {
			t.Errorf("client after Close: %v, want it closed", err)
		}
	})

	t.Run("BadURL", func(t *testing.T) {
		for _, u := range []string{
			"http://localhost:6379",
			"redis://user:hunter2@localhost:notaport",
			"redis://user:hunter2@localhost:6379/notadb",
			"redis://localhost:6379/0?no_such_option=1",
			"redis://us er:hunter2@local host",
			"::::",
		} {
			_, err := NewFromURL(u, Options{})
			if err == nil {
				t.Errorf("NewFromURL(%q): no error", u)
				continue
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "redis: invalid URL: ") {
				t.Errorf("NewFromURL(%q) error %q does not start with \"redis: invalid URL: \"", u, msg)
			}
			if strings.Contains(msg, "hunter2") {
				t.Errorf("NewFromURL(%q) error %q leaks the password", u, msg)
			}
		}
		if _, err := NewFromURL(srv.URL(), Options{Prefix: "bad{prefix"}); err == nil || !strings.Contains(err.Error(), "prefix") {
			t.Errorf("NewFromURL with a bad prefix: %v", err)
		}
	})

	// An unreachable server or wrong credentials are a degraded start, not
	// a failure: the store is returned, and Ping reports the problem.
	t.Run("Unreachable", func(t *testing.T) {
		addr := closedPort(t)
		s := mustOpen(t)(NewFromURL("redis://"+addr, Options{}))
		wantPingError(t, s, "redis: connecting to "+addr+": ", "refused")
	})

	t.Run("WrongPassword", func(t *testing.T) {
		u := strings.Replace(srv.URL(), "s3cret", "wrong", 1)
		if u == srv.URL() {
			t.Fatalf("URL %q does not carry the password", u)
		}
		s := mustOpen(t)(NewFromURL(u, Options{}))
		err := wantPingError(t, s, "redis: authentication failed for "+srv.Addr()+": ", "")
		if strings.Contains(err.Error(), "wrong") && strings.Contains(err.Error(), "pass@") {
			t.Fatalf("error %q leaks the password", err)
		}
	})

	t.Run("NoPassword", func(t *testing.T) {
		s := mustOpen(t)(NewFromURL("redis://"+srv.Addr(), Options{}))
		wantPingError(t, s, "redis: authentication failed for "+srv.Addr()+": ", "")
	})
}

// mustOpen returns a function that fails t unless a constructor returned a
// store, and closes the store when the test ends.
func mustOpen(t *testing.T) func(*Store, error) *Store {
	return func(s *Store, err error) *Store {
		t.Helper()
		if err != nil {
			t.Fatalf("the constructor refused to start: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
}

// wantPingError checks that s.Ping fails with an error that starts with
// prefix and contains substr, and returns it.
func wantPingError(t *testing.T, s *Store, prefix, substr string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.Ping(ctx)
	if err == nil || !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), substr) {
		t.Fatalf("Ping = %v, want an error that starts with %q and says %q", err, prefix, substr)
	}
	return err
}

// closedPort returns a loopback address that refuses connections.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func TestNewFromConfig(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("ACLUserAndDefaults", func(t *testing.T) {
		srv := redistest.Start(t, redistest.Config{ACLUser: "agent", ACLPassword: "pw"})
		s, err := NewFromConfig(Config{Addr: srv.Addr(), Username: "agent", Password: "pw", DB: 2}, Options{Prefix: "cfg:"})
		if err != nil {
			t.Fatalf("NewFromConfig: %v", err)
		}
		defer s.Close()
		if err := s.Set(ctx, "k", []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
		if v, ok, err := s.Get(ctx, "k"); err != nil || !ok || string(v) != "v" {
			t.Fatalf("Get = (%q, %v, %v)", v, ok, err)
		}
		o := s.Client().(*goredis.Client).Options()
		if o.DialTimeout != DefaultDialTimeout || o.ReadTimeout != DefaultReadTimeout ||
			o.WriteTimeout != DefaultWriteTimeout || !o.ContextTimeoutEnabled || o.DB != 2 {
			t.Errorf("client options: dial %v read %v write %v ctx %v db %d",
				o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.ContextTimeoutEnabled, o.DB)
		}
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("Ping: %v", err)
		}
		wrong := mustOpen(t)(NewFromConfig(Config{Addr: srv.Addr(), Username: "agent", Password: "nope"}, Options{}))
		wantPingError(t, wrong, "redis: authentication failed for "+srv.Addr(), "")
	})

	t.Run("TLS", func(t *testing.T) {
		srv := redistest.Start(t, redistest.Config{TLS: true})
		s, err := NewFromConfig(Config{Addr: srv.Addr(), TLS: srv.TLSConfig()}, Options{})
		if err != nil {
			t.Fatalf("NewFromConfig with TLS: %v", err)
		}
		defer s.Close()
		if err := s.Set(ctx, "k", []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
		// rediss:// cannot carry the throwaway CA: verification fails, clearly.
		unknownCA := mustOpen(t)(NewFromURL("rediss://"+srv.Addr(), Options{}))
		wantPingError(t, unknownCA, "redis: connecting to "+srv.Addr(), "certificate")
		s2 := mustOpen(t)(NewFromURL("rediss://"+srv.Addr()+"?skip_verify=true", Options{}))
		if err := s2.Ping(ctx); err != nil {
			t.Fatalf("rediss:// with skip_verify: %v", err)
		}
	})

	t.Run("Cluster", func(t *testing.T) {
		c := redistest.StartCluster(t, 3, 0)
		s, err := NewFromConfig(Config{Addrs: c.Addrs()}, Options{Prefix: "cl:"})
		if err != nil {
			t.Fatalf("NewFromConfig(cluster): %v", err)
		}
		defer s.Close()
		if _, ok := s.Client().(*goredis.ClusterClient); !ok {
			t.Fatalf("client is %T, want a cluster client", s.Client())
		}
		if err := s.Set(ctx, "k", []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
		if _, err := NewFromConfig(Config{Addrs: c.Addrs(), DB: 1}, Options{}); err == nil {
			t.Error("cluster config with DB 1: no error")
		}
		if _, err := NewFromConfig(Config{Addr: c.Addrs()[0], Addrs: c.Addrs()}, Options{}); err == nil {
			t.Error("config with both Addr and Addrs: no error")
		}
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("Ping of every master: %v", err)
		}
		addr := closedPort(t)
		down := mustOpen(t)(NewFromConfig(Config{Addrs: []string{addr}}, Options{}))
		wantPingError(t, down, "redis: connecting to "+addr+": ", "refused")
	})

	t.Run("Unreachable", func(t *testing.T) {
		addr := closedPort(t)
		s := mustOpen(t)(NewFromConfig(Config{Addr: addr}, Options{}))
		wantPingError(t, s, "redis: connecting to "+addr+": ", "refused")
	})
}

func TestClosedClientIsErrClosed(t *testing.T) {
	srv := redistest.Start(t)
	client := singleClient(t, srv)
	s, err := New(client, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_ = client.Close() // the caller closed its client under the store
	if _, _, err := s.Get(context.Background(), "k"); !errors.Is(err, tier.ErrClosed) {
		t.Fatalf("Get on a closed client: %v, want tier.ErrClosed", err)
	}
}

// TestNewFromConfigErrorHidesCredentialsInAddress: an address that may hold
// credentials (here a socket path with "user:password@" in it, as the
// malformed URL "unix:/user:password@..." would make it, which NewFromURL
// refuses) is never shown: connecting fails, and neither Ping's error, nor
// the go-redis dial error it wraps, nor the errors of the store's calls may
// show that address.
func TestNewFromConfigErrorHidesCredentialsInAddress(t *testing.T) {
	const secret = "s3cret-Pw"
	s := mustOpen(t)(NewFromConfig(Config{Addr: "/user:" + secret + "@/no/such/socket"}, Options{Prefix: "p:"}))
	err := wantPingError(t, s, "redis: connecting to the address in the URL", "")
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("the error shows the password: %q", err)
	}
	var ne *net.OpError
	if !errors.As(err, &ne) {
		t.Fatalf("error %q does not unwrap to the dial error", err)
	}
	if strings.Contains(ne.Error(), secret) {
		t.Fatalf("the dial error it wraps shows the password: %q", ne)
	}
	ctx := context.Background()
	_, _, err = s.Get(ctx, "k")
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("Get = %v; want an error that does not show the password", err)
	}
	if err := s.Clear(ctx); err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("Clear = %v; want an error that does not show the password", err)
	}
}

// TestDegradedStart: a store built while nothing listens on its address is
// returned; each call fails at once, after one dial (no retry, and no
// timeout to wait out: the calls have no deadline, only the refused dial
// ends them); Ping says why; and once Redis listens there, the same store
// works.
func TestDegradedStart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		open func(addr string) (*Store, error)
	}{
		{"NewFromURL", func(addr string) (*Store, error) { return NewFromURL("redis://"+addr+"/0", Options{Prefix: "deg:"}) }},
		{"NewFromConfig", func(addr string) (*Store, error) { return NewFromConfig(Config{Addr: addr}, Options{Prefix: "deg:"}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t)
			srv.Kill()
			s := mustOpen(t)(tc.open(srv.Addr()))
			dials := &dialCounter{}
			s.Client().AddHook(dials)
			ctx := context.Background()
			for i := range 3 {
				before := dials.n.Load()
				_, _, err := s.Get(ctx, "k")
				if !errors.Is(err, syscall.ECONNREFUSED) || !strings.HasPrefix(err.Error(), "redis: get: ") {
					t.Fatalf("Get %d with the server down = %v, want a refused connection", i, err)
				}
				if n := dials.n.Load() - before; n != 1 {
					t.Fatalf("Get %d dialed %d times, want once", i, n)
				}
			}
			before := dials.n.Load()
			if err := s.Set(ctx, "k", []byte("v"), 0); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("Set with the server down = %v, want a refused connection", err)
			}
			if n := dials.n.Load() - before; n != 1 {
				t.Fatalf("Set dialed %d times, want once", n)
			}
			err := wantPingError(t, s, "redis: connecting to "+srv.Addr()+": ", "refused")
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("Ping error %v does not wrap ECONNREFUSED", err)
			}

			if err := srv.Restart(); err != nil {
				t.Fatal(err)
			}
			if err := s.Ping(ctx); err != nil {
				t.Fatalf("Ping once Redis is back: %v", err)
			}
			if err := s.Set(ctx, "k", []byte("v"), 0); err != nil {
				t.Fatalf("Set once Redis is back: %v", err)
			}
			if v, ok, err := s.Get(ctx, "k"); err != nil || !ok || string(v) != "v" {
				t.Fatalf("Get once Redis is back = (%q, %v, %v), want v", v, ok, err)
			}
		})
	}
}

// TestDegradedStartCluster: the same for a cluster client whose seed
// refuses connections: the store is returned, a call fails after one dial
// (for the slot map it asks the seed for), Ping says why.
func TestDegradedStartCluster(t *testing.T) {
	t.Parallel()
	addr := closedPort(t)
	s := mustOpen(t)(NewFromConfig(Config{Addrs: []string{addr}}, Options{Prefix: "deg:"}))
	dials := &dialCounter{}
	s.Client().(*goredis.ClusterClient).OnNewNode(func(node *goredis.Client) { node.AddHook(dials) })
	ctx := context.Background()
	const calls = 5
	for i := range calls {
		if _, _, err := s.Get(ctx, "k"); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("Get %d with the cluster down = %v, want a refused connection", i, err)
		}
	}
	// Besides its own dial, each failed call asks go-redis for a new slot
	// map (Store.fail), which dials once more in the background; once a
	// node's dials have failed PoolSize times, go-redis stops dialing it
	// until a background probe gets through.
	if n := dials.n.Load(); n < 1 || n > 2*calls {
		t.Fatalf("%d calls dialed %d times, want at most one dial per call and one per slot-map reload", calls, n)
	}
	wantPingError(t, s, "redis: connecting to "+addr+": ", "refused")
}

// TestPingAfterClose: Ping of a closed store says so.
func TestPingAfterClose(t *testing.T) {
	t.Parallel()
	s, err := NewFromConfig(Config{Addr: closedPort(t)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if err := s.Ping(context.Background()); !errors.Is(err, tier.ErrClosed) {
		t.Fatalf("Ping after Close = %v, want tier.ErrClosed", err)
	}
}

// A service that starts while Redis is down: the store is returned, the
// cache runs on L1 until Redis answers, and Ping says what is wrong.
func ExampleStore_Ping() {
	store, err := NewFromURL("redis://:secret@localhost:6379/0", Options{Prefix: "shop:prod:"})
	if err != nil {
		log.Fatal(err) // a malformed URL or prefix: the configuration is wrong
	}
	defer store.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := store.Ping(ctx); err != nil {
		// e.g. redis: connecting to localhost:6379: dial tcp ...: connection refused
		log.Printf("starting without the shared cache: %v", err)
	}
}
