package redis

import (
	"context"
	"errors"
	"net"
	"strings"
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
		s, err := NewFromURL(u, "url:")
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
			_, err := NewFromURL(u, "")
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
		if _, err := NewFromURL(srv.URL(), "bad{prefix"); err == nil || !strings.Contains(err.Error(), "prefix") {
			t.Errorf("NewFromURL with a bad prefix: %v", err)
		}
	})

	t.Run("Unreachable", func(t *testing.T) {
		addr := closedPort(t)
		start := time.Now()
		_, err := NewFromURL("redis://"+addr, "")
		if err == nil {
			t.Fatal("NewFromURL of a closed port: no error")
		}
		want := "redis: connecting to " + addr + ": "
		if !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "refused") {
			t.Fatalf("error %q, want it to start with %q and say the connection was refused", err, want)
		}
		t.Logf("unreachable: %v after %v", err, time.Since(start).Round(time.Millisecond))
	})

	t.Run("WrongPassword", func(t *testing.T) {
		u := strings.Replace(srv.URL(), "s3cret", "wrong", 1)
		if u == srv.URL() {
			t.Fatalf("URL %q does not carry the password", u)
		}
		_, err := NewFromURL(u, "")
		want := "redis: authentication failed for " + srv.Addr() + ": "
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("error %v, want it to start with %q", err, want)
		}
		if strings.Contains(err.Error(), "wrong") && strings.Contains(err.Error(), "pass@") {
			t.Fatalf("error %q leaks the password", err)
		}
	})

	t.Run("NoPassword", func(t *testing.T) {
		_, err := NewFromURL("redis://"+srv.Addr(), "")
		want := "redis: authentication failed for " + srv.Addr() + ": "
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("error %v, want it to start with %q", err, want)
		}
	})
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
		s, err := NewFromConfig(Config{Addr: srv.Addr(), Username: "agent", Password: "pw", DB: 2, Prefix: "cfg:"})
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
		_, err = NewFromConfig(Config{Addr: srv.Addr(), Username: "agent", Password: "nope"})
		if err == nil || !strings.HasPrefix(err.Error(), "redis: authentication failed for "+srv.Addr()) {
			t.Fatalf("wrong ACL password: %v", err)
		}
	})

	t.Run("TLS", func(t *testing.T) {
		srv := redistest.Start(t, redistest.Config{TLS: true})
		s, err := NewFromConfig(Config{Addr: srv.Addr(), TLS: srv.TLSConfig()})
		if err != nil {
			t.Fatalf("NewFromConfig with TLS: %v", err)
		}
		defer s.Close()
		if err := s.Set(ctx, "k", []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
		// rediss:// cannot carry the throwaway CA: verification fails, clearly.
		_, err = NewFromURL("rediss://"+srv.Addr(), "")
		if err == nil || !strings.HasPrefix(err.Error(), "redis: connecting to "+srv.Addr()) ||
			!strings.Contains(err.Error(), "certificate") {
			t.Fatalf("rediss:// with an unknown CA: %v", err)
		}
		s2, err := NewFromURL("rediss://"+srv.Addr()+"?skip_verify=true", "")
		if err != nil {
			t.Fatalf("rediss:// with skip_verify: %v", err)
		}
		_ = s2.Close()
	})

	t.Run("Cluster", func(t *testing.T) {
		c := redistest.StartCluster(t, 3, 0)
		s, err := NewFromConfig(Config{Addrs: c.Addrs(), Prefix: "cl:"})
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
		if _, err := NewFromConfig(Config{Addrs: c.Addrs(), DB: 1}); err == nil {
			t.Error("cluster config with DB 1: no error")
		}
		if _, err := NewFromConfig(Config{Addr: c.Addrs()[0], Addrs: c.Addrs()}); err == nil {
			t.Error("config with both Addr and Addrs: no error")
		}
		_, err = NewFromConfig(Config{Addrs: []string{closedPort(t)}})
		if err == nil || !strings.HasPrefix(err.Error(), "redis: connecting to ") {
			t.Fatalf("unreachable cluster: %v", err)
		}
	})

	t.Run("Unreachable", func(t *testing.T) {
		addr := closedPort(t)
		_, err := NewFromConfig(Config{Addr: addr})
		if err == nil || !strings.HasPrefix(err.Error(), "redis: connecting to "+addr+": ") {
			t.Fatalf("error %v", err)
		}
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

// TestNewFromURLErrorHidesCredentialsInAddress: a malformed URL can make its
// credentials part of the address ("unix:/user:password@..." is a socket
// path to go-redis). Connecting then fails, and neither the error nor the
// go-redis dial error it wraps may show that address.
func TestNewFromURLErrorHidesCredentialsInAddress(t *testing.T) {
	const secret = "s3cret-Pw"
	raw := "unix:/user:" + secret + "@/no/such/socket"
	_, err := NewFromURL(raw, "p:")
	if err == nil {
		t.Fatal("NewFromURL connected to a socket that does not exist")
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("the error shows the password: %q", err)
	}
	if !strings.HasPrefix(err.Error(), "redis: connecting to the address in the URL") {
		t.Fatalf("error %q; want it to say it could not connect", err)
	}
	var ne *net.OpError
	if !errors.As(err, &ne) {
		t.Fatalf("error %q does not unwrap to the dial error", err)
	}
}
