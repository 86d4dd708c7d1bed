package redistest

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// stopTimeout bounds a graceful Stop before it falls back to SIGKILL.
const stopTimeout = 10 * time.Second

// errAddrInUse marks a start that failed because another process took the
// port first; Launch then retries on other ports.
var errAddrInUse = errors.New("address already in use")

// Server is a redis-server process on a loopback port. Its methods are safe
// for concurrent use, safe to call more than once, and safe to call after
// Kill, Stop or Close.
type Server struct {
	cfg     Config
	binary  string
	dir     string // the server's own files; removed on Close
	conf    string
	logPath string
	outPath string
	tls     *tlsFiles // nil without TLS
	cluster bool

	// port and busPort are set before the Server is returned and never
	// change afterwards: Restart reuses them.
	port, busPort int

	mu     sync.Mutex // guards proc and closed, and serializes lifecycle calls
	proc   *process   // the running process; nil after Kill, Stop and Close
	closed bool
}

// Launch starts a redis-server configured by cfg and waits until it answers.
// The caller must call [Server.Close]. In tests, use [Start].
//
// If redis-server is not installed, the error is (or wraps)
// [ErrNotInstalled], which says how to install it.
func Launch(cfg Config) (*Server, error) {
	return launch(cfg, nil, false)
}

// Start launches a server for the duration of a test: it calls tb.Fatal if the
// server cannot start (including when redis-server is not installed: the test
// fails, it does not skip) and closes the server when the test and its
// subtests end. If the test failed, the end of the server's log is logged.
// cfg is optional; pass at most one.
func Start(tb testing.TB, cfg ...Config) *Server {
	tb.Helper()
	c, err := oneConfig(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := Launch(c)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("redistest: end of the log of redis-server %s:\n%s", s.Addr(), s.logTail(40))
		}
		if err := s.Close(); err != nil {
			tb.Error(err)
		}
	})
	return s
}

func launch(cfg Config, shared *tlsFiles, cluster bool) (*Server, error) {
	cfg.Args = append([]string(nil), cfg.Args...)
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	binary, err := findBinary(cfg.Binary)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	s := &Server{
		cfg:     cfg,
		binary:  binary,
		dir:     dir,
		conf:    filepath.Join(dir, "redis.conf"),
		logPath: filepath.Join(dir, "redis.log"),
		outPath: filepath.Join(dir, "stdout.log"),
		cluster: cluster,
		tls:     shared,
	}
	if cfg.TLS && s.tls == nil {
		if s.tls, err = newTLSFiles(dir); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	if err := s.startOnFreePort(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// startOnFreePort picks ports and starts the server, retrying on other ports
// when another process wins the race for them.
func (s *Server) startOnFreePort() error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		n := 1
		if s.cluster {
			n = 2
		}
		var ports []int
		if ports, err = reservePorts(n); err != nil {
			return err
		}
		s.port = ports[0]
		if s.cluster {
			s.busPort = ports[1]
		}
		if err = s.writeConf(); err == nil {
			if err = s.start(); err == nil {
				return nil
			}
		}
		releasePorts(ports...)
		if !errors.Is(err, errAddrInUse) {
			return err
		}
	}
	return err
}

func (s *Server) writeConf() error {
	var w confWriter
	w.line("bind", "127.0.0.1")
	if s.tls != nil {
		w.line("port", "0")
		w.line("tls-port", strconv.Itoa(s.port))
		w.line("tls-cert-file", s.tls.certFile)
		w.line("tls-key-file", s.tls.keyFile)
		w.line("tls-ca-cert-file", s.tls.caFile)
		w.line("tls-auth-clients", "no")
	} else {
		w.line("port", strconv.Itoa(s.port))
	}
	w.line("dir", s.dir)
	w.line("logfile", s.logPath)
	w.line("daemonize", "no")
	w.line("save", "")
	w.line("appendonly", "no")
	// Lets tests use DEBUG SLEEP and friends, from loopback only.
	w.line("enable-debug-command", "local")
	if s.cfg.Password != "" {
		w.line("requirepass", s.cfg.Password)
		w.line("masterauth", s.cfg.Password)
	}
	if s.cfg.ACLUser != "" {
		pass := "nopass"
		if s.cfg.ACLPassword != "" {
			pass = ">" + s.cfg.ACLPassword
		}
		w.line("user", s.cfg.ACLUser, "on", pass, "~*", "&*", "+@all")
	}
	if s.cluster {
		w.line("cluster-enabled", "yes")
		w.line("cluster-config-file", "nodes.conf")
		w.line("cluster-node-timeout", "1000")
		w.line("cluster-port", strconv.Itoa(s.busPort))
		// A replica may take over however long its link has been down, so a
		// failover test does not depend on timing.
		w.line("cluster-replica-validity-factor", "0")
		// Redis 7 waits 5s before a diskless full sync to batch replicas.
		w.line("repl-diskless-sync-delay", "0")
		if s.tls != nil {
			w.line("tls-cluster", "yes")
			w.line("tls-replication", "yes")
		}
	}
	for _, a := range s.cfg.Args {
		w.raw(a)
	}
	if err := os.WriteFile(s.conf, []byte(w.b.String()), 0o600); err != nil {
		return fmt.Errorf("redistest: %w", err)
	}
	return nil
}

// start runs the process and waits until it answers. The caller holds s.mu
// or has not published s yet.
func (s *Server) start() error {
	p, err := spawn(s.binary, s.conf, s.dir, s.logPath, s.outPath)
	if err != nil {
		return err
	}
	if err := s.waitReady(p); err != nil {
		p.kill()
		return err
	}
	s.proc = p
	return nil
}

// waitReady polls until p itself answers on the port: INFO must report p's
// pid, because after a lost port race the answer may come from someone
// else's redis-server.
func (s *Server) waitReady(p *process) error {
	timeout := s.cfg.startTimeout()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if p.exited() {
			tail := p.logTail(20)
			if containsAddrInUse(tail) {
				return fmt.Errorf("redistest: redis-server could not bind %s: %w", s.Addr(), errAddrInUse)
			}
			return fmt.Errorf("redistest: redis-server exited during startup (%v); end of its log:\n%s", p.err, tail)
		}
		pid, err := s.pid()
		switch {
		case err == nil && pid == p.cmd.Process.Pid:
			return nil
		case err == nil:
			last = fmt.Errorf("%s is answered by another redis-server (pid %d)", s.Addr(), pid)
		default:
			last = err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redistest: redis-server on %s did not answer within %v (last error: %v); end of its log:\n%s",
				s.Addr(), timeout, last, p.logTail(20))
		}
		select {
		case <-p.done:
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func containsAddrInUse(log string) bool {
	return strings.Contains(strings.ToLower(log), "address already in use")
}

// pid asks the server on the port for its process id.
func (s *Server) pid() (int, error) {
	c, err := s.dial(500 * time.Millisecond)
	if err != nil {
		return 0, err
	}
	defer c.close()
	info, err := c.str("INFO", "server")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(infoFields(info)["process_id"])
}

// dial opens a harness connection, logged in as the default user.
func (s *Server) dial(timeout time.Duration) (*respConn, error) {
	return dialRESP(s.Addr(), s.TLSConfig(), s.cfg.Password, timeout)
}

// logTail returns the end of the server's output over all its runs.
func (s *Server) logTail(n int) string {
	return logTail(s.outPath, 0, s.logPath, 0, n)
}

// Addr returns the server's address, "127.0.0.1:port". It does not change
// across Restart.
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// URL returns a redis:// URL for the server (rediss:// with TLS), with the
// credentials that [Server.Options] uses. [redis.ParseURL] reads it; for a
// TLS server, replace the parsed TLSConfig with [Server.TLSConfig], since the
// URL cannot carry the throwaway CA.
func (s *Server) URL() string {
	u := url.URL{Scheme: "redis", Host: s.Addr()}
	if s.tls != nil {
		u.Scheme = "rediss"
	}
	if user, pass := s.cfg.clientCredentials(); user != "" || pass != "" {
		u.User = url.UserPassword(user, pass)
	}
	return u.String()
}

// Options returns a fresh go-redis configuration for the server: its address,
// the ACL user's credentials if [Config.ACLUser] is set (otherwise the
// default user's password, if any), and [Server.TLSConfig] with TLS. Other
// fields keep go-redis's defaults; the caller may change them.
func (s *Server) Options() *redis.Options {
	user, pass := s.cfg.clientCredentials()
	return &redis.Options{
		Addr:      s.Addr(),
		Username:  user,
		Password:  pass,
		TLSConfig: s.TLSConfig(),
	}
}

// Client returns a go-redis client built from [Server.Options]. It is closed
// when the test ends, before the server is.
func (s *Server) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(s.Options())
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// CAFile returns the path of the PEM file of the CA that signed the server's
// certificate, or "" without TLS. It is removed on Close.
func (s *Server) CAFile() string {
	if s.tls == nil {
		return ""
	}
	return s.tls.caFile
}

// TLSConfig returns a new client TLS configuration that trusts the server's
// throwaway CA, or nil without TLS.
func (s *Server) TLSConfig() *tls.Config {
	if s.tls == nil {
		return nil
	}
	return s.tls.clientConfig()
}

// Kill ends the server with SIGKILL, as a crash would, and waits until the
// process is gone. Clients get connection errors until [Server.Restart].
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
}

func (s *Server) killLocked() {
	if s.proc != nil {
		s.proc.kill()
		s.proc = nil
	}
}

// Stop shuts the server down gracefully with SIGTERM (it is resumed first
// if paused) and waits until it exits, killing it if that takes longer
// than 10s.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	if p == nil {
		return
	}
	_ = terminate(p.cmd.Process)
	_ = resume(p.cmd.Process)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		p.kill()
	}
	s.proc = nil
}

// Restart stops the server if it is running (with SIGKILL) and starts it again
// on the same address with the same configuration. The data does not
// survive, except a cluster node's identity and membership. It fails after
// Close, or if another process took the port meanwhile.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("redistest: Restart after Close")
	}
	s.killLocked()
	// The port is fixed now; if another process holds it, wait a little in
	// case it is about to let go.
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := s.start()
		if err == nil || !errors.Is(err, errAddrInUse) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Pause freezes the server with SIGSTOP: connections stay open and requests
// get no answer, as with a server stuck in a long command or a hung host. It
// returns once the kernel reports the process stopped. It does nothing if the
// server is not running.
func (s *Server) Pause() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	if pause(s.proc.cmd.Process) == nil {
		waitStopped(s.proc.cmd.Process.Pid)
	}
}

// Resume undoes [Server.Pause] with SIGCONT. It does nothing if the server is
// not running or not paused.
func (s *Server) Resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		_ = resume(s.proc.cmd.Process)
	}
}

// Close kills the server and removes its files. Later calls return nil and
// do nothing; Restart fails after Close.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.killLocked()
	releasePorts(s.port)
	if s.busPort != 0 {
		releasePorts(s.busPort)
	}
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("redistest: remove the files of %s: %w", s.Addr(), err)
	}
	return nil
}
