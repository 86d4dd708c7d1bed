package redistest

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestMain fails the run if any goroutine of this package (a proxy pump, the
// reaper of a redis-server process) outlives the tests: every Close and
// Cleanup must have ended them.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := leakedGoroutines(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "redistest: goroutines still running after the tests:\n\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

func leakedGoroutines(wait time.Duration) string {
	deadline := time.Now().Add(wait)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		// The first stack is this goroutine's.
		for _, g := range strings.Split(string(buf), "\n\n")[1:] {
			if strings.Contains(g, "internal/redistest.") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func mustPing(t *testing.T, rdb redis.UniversalClient) {
	t.Helper()
	if err := rdb.Ping(ctxFor(t, 5*time.Second)).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}
}

// quickClient fails fast: no retries, short timeouts.
func quickClient(t *testing.T, opt *redis.Options) *redis.Client {
	opt.MaxRetries = -1
	opt.DialTimeout = time.Second
	opt.ReadTimeout = time.Second
	opt.WriteTimeout = time.Second
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestStartPing(t *testing.T) {
	t.Parallel()
	s := Start(t)
	rdb := s.Client(t)
	ctx := ctxFor(t, 5*time.Second)
	mustPing(t, rdb)
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := rdb.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET k = %q, %v; want v", got, err)
	}
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") {
		t.Errorf("Addr() = %q, want a loopback address", s.Addr())
	}
	if s.TLSConfig() != nil || s.CAFile() != "" {
		t.Error("a plain server has TLS settings")
	}
}

func TestURL(t *testing.T) {
	t.Parallel()
	const pass = `p@ss w:rd/"x"`
	s := Start(t, Config{Password: pass})
	u := s.URL()
	if !strings.HasPrefix(u, "redis://") {
		t.Fatalf("URL() = %q, want redis://", u)
	}
	opt, err := redis.ParseURL(u)
	if err != nil {
		t.Fatalf("ParseURL(%q): %v", u, err)
	}
	if opt.Addr != s.Addr() || opt.Password != pass || opt.Username != "" {
		t.Fatalf("ParseURL(%q) = addr %q user %q password %q", u, opt.Addr, opt.Username, opt.Password)
	}
	mustPing(t, quickClient(t, opt))

	if u := Start(t).URL(); strings.Contains(u, "@") {
		t.Errorf("URL() of a server without password = %q, has credentials", u)
	}
}

func TestPassword(t *testing.T) {
	t.Parallel()
	s := Start(t, Config{Password: "secret"})
	mustPing(t, s.Client(t))
	ctx := ctxFor(t, 5*time.Second)

	wrong := s.Options()
	wrong.Password = "wrong"
	if err := quickClient(t, wrong).Ping(ctx).Err(); err == nil {
		t.Error("PING with a wrong password succeeded")
	}
	none := s.Options()
	none.Password = ""
	if err := quickClient(t, none).Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Errorf("PING without a password: %v, want NOAUTH", err)
	}
}

func TestACLUser(t *testing.T) {
	t.Parallel()
	s := Start(t, Config{Password: "admin", ACLUser: "alice", ACLPassword: "wonder land"})
	ctx := ctxFor(t, 5*time.Second)
	if who, err := s.Client(t).Do(ctx, "ACL", "WHOAMI").Text(); err != nil || who != "alice" {
		t.Fatalf("ACL WHOAMI = %q, %v; want alice", who, err)
	}
	opt, err := redis.ParseURL(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	if opt.Username != "alice" || opt.Password != "wonder land" {
		t.Fatalf("URL() %q has user %q password %q", s.URL(), opt.Username, opt.Password)
	}
	if err := quickClient(t, opt).Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET as alice: %v", err)
	}
	wrong := s.Options()
	wrong.Password = "wonderland"
	if err := quickClient(t, wrong).Ping(ctx).Err(); err == nil {
		t.Error("PING as alice with a wrong password succeeded")
	}
	// The default user keeps its own password.
	def := s.Options()
	def.Username, def.Password = "", "admin"
	mustPing(t, quickClient(t, def))
}

func TestTLS(t *testing.T) {
	t.Parallel()
	s := Start(t, Config{TLS: true, Password: "pw"})
	mustPing(t, s.Client(t))
	ctx := ctxFor(t, 5*time.Second)

	if !strings.HasPrefix(s.URL(), "rediss://") {
		t.Errorf("URL() = %q, want rediss://", s.URL())
	}
	opt, err := redis.ParseURL(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	opt.TLSConfig = s.TLSConfig()
	mustPing(t, quickClient(t, opt))

	// CAFile alone is enough to trust the server.
	pem, err := os.ReadFile(s.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("CAFile %s holds no certificate", s.CAFile())
	}
	fromFile := s.Options()
	fromFile.TLSConfig = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	mustPing(t, quickClient(t, fromFile))

	plain := s.Options()
	plain.TLSConfig = nil
	if err := quickClient(t, plain).Ping(ctx).Err(); err == nil {
		t.Error("PING over plain TCP to the TLS port succeeded")
	}
	untrusted := s.Options()
	untrusted.TLSConfig = &tls.Config{ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if err := quickClient(t, untrusted).Ping(ctx).Err(); err == nil {
		t.Error("PING trusting only the system roots succeeded")
	}
}

func TestArgs(t *testing.T) {
	t.Parallel()
	s := Start(t, Config{Args: []string{"maxmemory 2mb", "maxmemory-policy allkeys-lru"}})
	ctx := ctxFor(t, 5*time.Second)
	got, err := s.Client(t).ConfigGet(ctx, "maxmemory*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if got["maxmemory"] != "2097152" || got["maxmemory-policy"] != "allkeys-lru" {
		t.Errorf("CONFIG GET maxmemory* = %v", got)
	}
	// The harness's defaults are in force.
	if got, _ := s.Client(t).ConfigGet(ctx, "save").Result(); got["save"] != "" {
		t.Errorf("save = %q, want none", got["save"])
	}
}

func TestBadConfig(t *testing.T) {
	t.Parallel()
	_, err := Launch(Config{Args: []string{"no-such-directive 1"}})
	if err == nil || !strings.HasPrefix(err.Error(), "redistest: ") || !strings.Contains(err.Error(), "no-such-directive") {
		t.Errorf("Launch with a bad directive: %v; want an error quoting redis-server's log", err)
	}
	for _, cfg := range []Config{
		{Args: []string{"maxmemory 1mb\nrequirepass x"}},
		{ACLPassword: "x"},
		{StartTimeout: -1},
	} {
		if _, err := Launch(cfg); err == nil || !strings.HasPrefix(err.Error(), "redistest: ") {
			t.Errorf("Launch(%+v): %v, want a redistest: error", cfg, err)
		}
	}
}

const installMessage = "redistest: redis-server not found in PATH: install it with 'apt-get install -y redis-server' (Debian/Ubuntu) or 'bash .ci/run', which installs it"

// fatalTB records what Start does when it cannot start a server.
type fatalTB struct {
	testing.TB
	fatal, skipped string
}

func (f *fatalTB) Helper()           {}
func (f *fatalTB) Fatal(args ...any) { f.fatal = fmt.Sprint(args...); runtime.Goexit() }
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fatalTB) Skip(args ...any) { f.skipped = fmt.Sprint(args...); runtime.Goexit() }
func (f *fatalTB) Skipf(format string, args ...any) {
	f.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fatalTB) SkipNow() { f.skipped = "SkipNow"; runtime.Goexit() }

// Not parallel: it changes PATH for the whole process.
func TestMissingBinary(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "redis-server")
	_, err := Launch(Config{Binary: missing})
	if !errors.Is(err, ErrNotInstalled) || !strings.HasPrefix(err.Error(), installMessage) {
		t.Errorf("Launch with a missing Binary: %v\nwant it to start with: %s", err, installMessage)
	}
	if _, err := LaunchCluster(1, 0, Config{Binary: missing}); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("LaunchCluster with a missing Binary: %v, want ErrNotInstalled", err)
	}

	t.Setenv("PATH", t.TempDir())
	if _, err := Launch(Config{}); err == nil || err.Error() != installMessage {
		t.Errorf("Launch without redis-server in PATH: %v\nwant: %s", err, installMessage)
	}

	// Start fails the test (it does not skip it) with the same message.
	tb := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Start(tb)
	}()
	<-done
	if tb.skipped != "" || tb.fatal != installMessage {
		t.Errorf("Start without redis-server: fatal %q, skipped %q; want fatal %q", tb.fatal, tb.skipped, installMessage)
	}
}

func TestKillRestart(t *testing.T) {
	t.Parallel()
	s := Start(t)
	addr := s.Addr()
	rdb := quickClient(t, s.Options())
	ctx := ctxFor(t, 10*time.Second)
	mustPing(t, rdb)

	s.Kill()
	s.Kill()
	if err := rdb.Ping(ctx).Err(); err == nil {
		t.Fatal("PING after Kill succeeded")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if s.Addr() != addr {
		t.Errorf("Addr after Restart = %s, want %s", s.Addr(), addr)
	}
	mustPing(t, rdb)

	// Restart of a running server replaces it.
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	mustPing(t, rdb)
	s.Kill() // the cleanup's Close must cope with a killed server
}

func TestStop(t *testing.T) {
	t.Parallel()
	s := Start(t)
	rdb := quickClient(t, s.Options())
	ctx := ctxFor(t, 10*time.Second)
	mustPing(t, rdb)
	s.Stop()
	s.Stop()
	if err := rdb.Ping(ctx).Err(); err == nil {
		t.Fatal("PING after Stop succeeded")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	mustPing(t, rdb)
}

func TestPauseResume(t *testing.T) {
	t.Parallel()
	s := Start(t)
	opt := s.Options()
	rdb := quickClient(t, opt)
	mustPing(t, rdb)

	s.Pause()
	s.Pause()
	ctx := ctxFor(t, 10*time.Second)
	short := s.Options()
	short.ReadTimeout = 200 * time.Millisecond
	err := quickClient(t, short).Ping(ctx).Err()
	var netErr net.Error
	if !errors.As(err, &netErr) || !netErr.Timeout() {
		t.Fatalf("PING to a paused server: %v, want a timeout", err)
	}
	s.Resume()
	s.Resume()
	mustPing(t, rdb)

	// Stop and Close work on a paused server.
	s.Pause()
	s.Stop()
	if err := rdb.Ping(ctx).Err(); err == nil {
		t.Error("PING after Stop of a paused server succeeded")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	s.Pause() // left paused for the cleanup's Close
}

func TestPortTaken(t *testing.T) {
	t.Parallel()
	// An Args override pins every attempt to a port that is in use, so
	// Launch sees the bind race on each of its retries and gives up.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	if _, err := Launch(Config{Args: []string{fmt.Sprint("port ", port)}}); !errors.Is(err, errAddrInUse) {
		t.Errorf("Launch on a taken port: %v, want address already in use", err)
	}

	// Restart keeps its port, so it fails if someone took it meanwhile.
	s := Start(t)
	s.Kill()
	thief, err := net.Listen("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer thief.Close()
	if err := s.Restart(); !errors.Is(err, errAddrInUse) || !strings.Contains(err.Error(), s.Addr()) {
		t.Errorf("Restart on a taken port: %v, want address already in use", err)
	}
	thief.Close()
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	mustPing(t, quickClient(t, s.Options()))
}

func TestMethodsAfterClose(t *testing.T) {
	t.Parallel()
	s, err := Launch(Config{})
	if err != nil {
		t.Fatal(err)
	}
	dir := s.dir
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	s.Kill()
	s.Stop()
	s.Pause()
	s.Resume()
	if err := s.Restart(); err == nil {
		t.Error("Restart after Close succeeded")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the server's directory %s survived Close: %v", dir, err)
	}
	if err := quickClient(t, s.Options()).Ping(t.Context()).Err(); err == nil {
		t.Error("PING after Close succeeded")
	}
}

func TestCluster(t *testing.T) {
	t.Parallel()
	start := time.Now()
	c := StartCluster(t, 3, 1)
	t.Logf("3×1 cluster ready in %v", time.Since(start))
	ctx := ctxFor(t, 20*time.Second)

	if n := len(c.Addrs()); n != 6 {
		t.Fatalf("Addrs() has %d nodes, want 6", n)
	}
	nodes := c.Nodes()
	masterIDs := make(map[string]bool)
	for _, n := range nodes {
		if n.Role == RoleMaster {
			masterIDs[n.ID] = true
		}
	}
	if len(masterIDs) != 3 {
		t.Fatalf("Nodes() = %+v, want 3 masters", nodes)
	}
	for _, n := range nodes {
		if n.Role != RoleMaster && (n.Role != RoleReplica || !masterIDs[n.MasterID]) {
			t.Errorf("node %s: role %s, master %q; want a replica of a master", n.Server.Addr(), n.Role, n.MasterID)
		}
	}

	rdb := c.Client(t)
	setGet(t, ctx, rdb, "before")
	err := rdb.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		n, err := m.DBSize(ctx).Result()
		if err == nil && n == 0 {
			err = fmt.Errorf("master %s holds no key", m.Options().Addr)
		}
		return err
	})
	if err != nil {
		t.Fatalf("keys are not spread over the masters: %v", err)
	}
	slot, err := rdb.ClusterKeySlot(ctx, "before:0").Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		n, err := m.ClusterCountKeysInSlot(ctx, int(slot)).Result()
		if err == nil && n > 1 {
			err = fmt.Errorf("slot %d holds %d keys, want at most 1", slot, n)
		}
		return err
	}); err != nil {
		t.Error(err)
	}

	start = time.Now()
	killed, err := c.KillMaster(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitForFailover(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("failover took %v", time.Since(start))

	var killedID string
	for _, n := range nodes {
		if n.Server == killed {
			killedID = n.ID
		}
	}
	promoted := false
	for _, n := range c.Nodes() {
		switch {
		case n.Server == killed && n.Role != RoleUnknown:
			t.Errorf("the killed master %s reports role %s", killed.Addr(), n.Role)
		case n.Role == RoleMaster && !masterIDs[n.ID]:
			promoted = true
		}
	}
	if killedID == "" || !masterIDs[killedID] || !promoted {
		t.Errorf("KillMaster killed %s (id %q, a master: %v); a replica promoted: %v", killed.Addr(), killedID, masterIDs[killedID], promoted)
	}
	setGet(t, ctx, c.Client(t), "after")

	// The killed node rejoins, now as a replica of the node that replaced it.
	if err := killed.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := poll(ctx, "the old master to rejoin", func() string {
		for _, n := range c.Nodes() {
			if n.Server == killed && n.Role != RoleReplica {
				return fmt.Sprintf("role %s", n.Role)
			}
		}
		return ""
	}); err != nil {
		t.Fatal(err)
	}
}

func TestClusterTLSPassword(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 2, 1, Config{TLS: true, Password: "pw"})
	ctx := ctxFor(t, 20*time.Second)
	setGet(t, ctx, c.Client(t), "tls")
	opt := c.ClusterOptions()
	if opt.TLSConfig == nil || opt.Password != "pw" {
		t.Errorf("ClusterOptions() = %+v, want TLS and the password", opt)
	}
}

func TestClusterArgs(t *testing.T) {
	t.Parallel()
	if _, err := LaunchCluster(0, 1); err == nil {
		t.Error("LaunchCluster(0, 1) succeeded")
	}
	c := StartCluster(t, 1, 0, Config{Args: []string{"maxmemory 3mb"}})
	got, err := c.Client(t).ConfigGet(ctxFor(t, 5*time.Second), "maxmemory").Result()
	if err != nil || got["maxmemory"] != "3145728" {
		t.Errorf("CONFIG GET maxmemory = %v, %v", got, err)
	}
	if _, err := c.KillMaster(1); err == nil {
		t.Error("KillMaster(1) of a one-master cluster succeeded")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// setGet writes and reads back 100 keys, which land in many slots.
func setGet(t *testing.T, ctx context.Context, rdb *redis.ClusterClient, prefix string) {
	t.Helper()
	for i := range 100 {
		key := fmt.Sprintf("%s:%d", prefix, i)
		if err := rdb.Set(ctx, key, i, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", key, err)
		}
	}
	for i := range 100 {
		key := fmt.Sprintf("%s:%d", prefix, i)
		if got, err := rdb.Get(ctx, key).Int(); err != nil || got != i {
			t.Fatalf("GET %s = %d, %v; want %d", key, got, err, i)
		}
	}
}

func newProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := NewProxy(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

// rawConn is a hand-driven RESP connection, so tests see exactly what the
// proxy delivers and when.
type rawConn struct {
	t *testing.T
	net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, Conn: c, r: bufio.NewReader(c)}
}

func (c *rawConn) send(cmd string) {
	c.t.Helper()
	c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\r\n", cmd); err != nil {
		c.t.Fatalf("write %s: %v", cmd, err)
	}
}

// readLine reads one reply line within d.
func (c *rawConn) readLine(d time.Duration) (string, error) {
	c.SetReadDeadline(time.Now().Add(d))
	line, err := c.r.ReadString('\n')
	return strings.TrimSpace(line), err
}

func (c *rawConn) wantPong() {
	c.t.Helper()
	if line, err := c.readLine(5 * time.Second); err != nil || line != "+PONG" {
		c.t.Fatalf("reply %q, %v; want +PONG", line, err)
	}
}

func wantTimeout(t *testing.T, line string, err error) {
	t.Helper()
	var netErr net.Error
	if !errors.As(err, &netErr) || !netErr.Timeout() {
		t.Fatalf("read %q, %v; want a timeout", line, err)
	}
}

func TestProxyForwards(t *testing.T) {
	t.Parallel()
	s := Start(t)
	p := newProxy(t, s.Addr())
	opt := s.Options()
	opt.Addr = p.Addr()
	rdb := quickClient(t, opt)
	ctx := ctxFor(t, 5*time.Second)
	mustPing(t, rdb)
	big := strings.Repeat("x", 1<<20) // many chunks each way
	if err := rdb.Set(ctx, "big", big, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := rdb.Get(ctx, "big").Result(); err != nil || got != big {
		t.Fatalf("GET big through the proxy: %d bytes, %v", len(got), err)
	}
}

func TestProxyLatency(t *testing.T) {
	t.Parallel()
	s := Start(t)
	p := newProxy(t, s.Addr())
	c := dialRaw(t, p.Addr())
	c.send("PING")
	c.wantPong()

	const latency = 50 * time.Millisecond
	p.SetLatency(latency)
	for range 3 {
		start := time.Now()
		c.send("PING")
		c.wantPong()
		// Both the request and the reply are delayed.
		if rtt := time.Since(start); rtt < 2*latency {
			t.Errorf("round trip %v with latency %v, want at least %v", rtt, latency, 2*latency)
		}
	}
	p.SetLatency(0)
	c.send("PING")
	c.wantPong()
}

func TestProxyBlackhole(t *testing.T) {
	t.Parallel()
	s := Start(t)
	p := newProxy(t, s.Addr())
	before := dialRaw(t, p.Addr())
	before.send("PING")
	before.wantPong()

	p.Blackhole(true)
	p.Blackhole(true)
	before.send("PING")
	line, err := before.readLine(200 * time.Millisecond)
	wantTimeout(t, line, err)
	// New connections are accepted and held.
	during := dialRaw(t, p.Addr())
	during.send("PING")
	line, err = during.readLine(200 * time.Millisecond)
	wantTimeout(t, line, err)

	// Lifting it delivers what was held.
	p.Blackhole(false)
	p.Blackhole(false)
	before.wantPong()
	during.wantPong()
}

func TestProxyDropAll(t *testing.T) {
	t.Parallel()
	s := Start(t)
	p := newProxy(t, s.Addr())
	opt := s.Options()
	opt.Addr = p.Addr()
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	mustPing(t, rdb)
	c := dialRaw(t, p.Addr())
	c.send("PING")
	c.wantPong()

	p.DropAll()
	line, err := c.readLine(5 * time.Second)
	var netErr net.Error
	if err == nil || (errors.As(err, &netErr) && netErr.Timeout()) {
		t.Fatalf("read after DropAll: %q, %v; want the connection closed", line, err)
	}
	// go-redis notices the dead connection and dials again through the proxy.
	mustPing(t, rdb)
}

func TestProxyTargetDown(t *testing.T) {
	t.Parallel()
	s := Start(t)
	p := newProxy(t, s.Addr())
	s.Kill()
	c := dialRaw(t, p.Addr())
	c.send("PING")
	if line, err := c.readLine(5 * time.Second); err == nil {
		t.Fatalf("read through a proxy to a dead server: %q", line)
	}
}

func TestProxyClose(t *testing.T) {
	t.Parallel()
	s := Start(t)
	p, err := NewProxy(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	open := dialRaw(t, p.Addr())
	open.send("PING")
	open.wantPong()
	p.SetLatency(time.Hour) // a pump asleep in the latency
	open.send("PING")
	p.Blackhole(true) // and a connection held in the blackhole
	held := dialRaw(t, p.Addr())
	held.send("PING")
	time.Sleep(20 * time.Millisecond)

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for _, c := range []*rawConn{open, held} {
		if line, err := c.readLine(5 * time.Second); err == nil {
			t.Errorf("read after Close: %q, want the connection closed", line)
		}
	}
	if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		c.Close()
		t.Error("the proxy still accepts connections after Close")
	}
}

func TestQuoteConf(t *testing.T) {
	for in, want := range map[string]string{
		"":        `""`,
		"plain":   `"plain"`,
		`a "b" c`: `"a \"b\" c"`,
		`back\`:   `"back\\"`,
		"tab\tnl": `"tab\x09nl"`,
	} {
		if got := quoteConf(in); got != want {
			t.Errorf("quoteConf(%q) = %s, want %s", in, got, want)
		}
	}
}
