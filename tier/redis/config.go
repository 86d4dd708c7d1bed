package redis

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/tier"
)

// Timeouts of the clients that NewFromConfig and NewFromURL create, when the
// configuration leaves them zero. They are short because a cache that waits
// long for Redis is slower than no cache: a call that times out is a miss.
const (
	DefaultDialTimeout  = time.Second
	DefaultReadTimeout  = 200 * time.Millisecond
	DefaultWriteTimeout = 200 * time.Millisecond
)

// Config describes a Redis deployment for [NewFromConfig]. The zero value is
// a server on localhost:6379 with no password.
type Config struct {
	// Addr is the "host:port" of a single server. Default "localhost:6379"
	// (when Addrs is empty too).
	Addr string
	// Addrs are seed nodes of a Redis Cluster: setting it makes a cluster
	// client. Addr must then be empty and DB zero.
	Addrs []string
	// DB is the database number (single server only). Default 0.
	DB int
	// Username is the ACL user. Default: none (the default user).
	Username string
	// Password is the user's password. Default: none.
	Password string
	// TLS enables TLS with this configuration. Default nil: plain TCP.
	TLS *tls.Config
	// DialTimeout bounds establishing a connection. Default
	// DefaultDialTimeout (1s).
	DialTimeout time.Duration
	// ReadTimeout bounds waiting for each reply (of a whole pipeline for a
	// batch). Default DefaultReadTimeout (200ms); -1 means no timeout.
	ReadTimeout time.Duration
	// WriteTimeout bounds sending each command or pipeline. Default
	// DefaultWriteTimeout (200ms); -1 means no timeout.
	WriteTimeout time.Duration
	// PoolSize is the most connections per server. Default: go-redis's
	// (10 per GOMAXPROCS).
	PoolSize int
}

// NewFromConfig creates a go-redis client for cfg (a cluster client if Addrs
// is set) and returns a store that owns it. The client is tuned for a cache:
// context deadlines bound every call, and a server that refuses connections
// costs a call one dial, not retries (see [NewFromURL]).
//
// NewFromConfig does no I/O. A configuration it cannot use (Addr and Addrs
// both set, a database on a cluster, a bad prefix) fails here, at once; an
// unreachable server or wrong credentials do not: the store starts degraded,
// each call fails fast until Redis answers, and it connects by itself once
// Redis is there, without being rebuilt. Call [Store.Ping] to check at start.
// Since it does not block, it takes no context (like go-redis's NewClient).
//
// opts are the store's, as for [New]; the store always closes the client it
// created (opts.CloseClient is implied).
func NewFromConfig(cfg Config, opts Options) (*Store, error) {
	opts.CloseClient = true
	if err := opts.validate(); err != nil {
		return nil, err
	}
	var client goredis.UniversalClient
	if len(cfg.Addrs) > 0 {
		if cfg.Addr != "" {
			return nil, errors.New("redis: config sets both Addr and Addrs: use Addr for one server, Addrs for a cluster")
		}
		if cfg.DB != 0 {
			return nil, errors.New("redis: a cluster has only database 0")
		}
		dial := orDefault(cfg.DialTimeout, DefaultDialTimeout)
		client = goredis.NewClusterClient(&goredis.ClusterOptions{
			Addrs:                 cfg.Addrs,
			Username:              cfg.Username,
			Password:              cfg.Password,
			TLSConfig:             cfg.TLS,
			Dialer:                dialer(dial, cfg.TLS),
			DialTimeout:           dial,
			ReadTimeout:           orDefault(cfg.ReadTimeout, DefaultReadTimeout),
			WriteTimeout:          orDefault(cfg.WriteTimeout, DefaultWriteTimeout),
			PoolSize:              cfg.PoolSize,
			ContextTimeoutEnabled: true,
			DialerRetries:         1,
			// No retry inside a node client. The cluster client still
			// follows MOVED and ASK (MaxRedirects), and retries a failed
			// node at most three times: a millisecond or two apart, not
			// go-redis's default of 10ms doubling, so that a dead master
			// costs a call milliseconds.
			MaxRetries:      -1,
			MinRetryBackoff: time.Millisecond,
			MaxRetryBackoff: 2 * time.Millisecond,
		})
	} else {
		o := &goredis.Options{
			Addr:      cfg.Addr,
			DB:        cfg.DB,
			Username:  cfg.Username,
			Password:  cfg.Password,
			TLSConfig: cfg.TLS,
			PoolSize:  cfg.PoolSize,
		}
		if o.Addr == "" {
			o.Addr = "localhost:6379"
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = cfg.DialTimeout, cfg.ReadTimeout, cfg.WriteTimeout
		applyDefaults(o)
		client = goredis.NewClient(o)
	}
	return own(client, opts)
}

// NewFromURL is [NewFromConfig] for a URL: redis://[user:password@]host[:port][/db]
// or rediss:// for TLS (unix:///path/to/socket also works), with the query
// options go-redis's ParseURL knows (dial_timeout, read_timeout,
// write_timeout, pool_size, protocol, client_name, skip_verify, ...).
// Timeouts the URL leaves out get this package's short defaults; retries it
// leaves out are none: a refused connection fails the call after one dial
// (one round trip, to the refusal), instead of go-redis's default of five
// dials 100ms apart and three retries of the command.
//
// Like NewFromConfig it does no I/O: a URL that cannot be parsed fails at
// once ("redis: invalid URL: ..."), an unreachable server does not (call
// [Store.Ping] to check). So does a URL go-redis would parse with part of
// it ignored or taken for the address, where a password misplaced by a typo
// or an unescaped '#', '/', '?' or '@' would end up (and go-redis logs the
// address with every failed dial): a '#' anywhere, no "//" after the scheme,
// a host that is no host name or IP address, a unix: URL with a host or
// with '@' in its socket path. Errors never echo the URL, which may hold a
// password, neither here nor later from the store's calls.
//
// opts are the store's, as for [New]; the store always closes the client it
// created (opts.CloseClient is implied).
func NewFromURL(rawURL string, opts Options) (*Store, error) {
	opts.CloseClient = true
	if err := opts.validate(); err != nil {
		return nil, err
	}
	o, _, err := optionsFromURL(rawURL)
	if err != nil {
		return nil, err
	}
	return own(goredis.NewClient(o), opts)
}

// own wraps client in a store that owns it.
func own(client goredis.UniversalClient, opts Options) (*Store, error) {
	s, err := New(client, opts)
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	return s, nil
}

// shownAddr is how errors name the server of a URL: its address, unless the
// address may hold credentials, as a malformed address can (NewFromURL
// refuses the URLs that would make one, such as "unix:/user:password@...",
// all of it a socket path; a Config's Addr is the user's).
func shownAddr(o *goredis.Options) string {
	if strings.Contains(o.Addr, "@") || o.Password != "" && strings.Contains(o.Addr, o.Password) {
		return "the address in the URL"
	}
	return o.Addr
}

// redactedError is an error whose message had the address taken out; it
// still unwraps to the original (errors.Is and As see through it).
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// optionsFromURL parses rawURL into the client options NewFromURL uses,
// tuned by applyDefaults, and returns the dial timeout the URL itself set
// (0: none). It does no I/O.
func optionsFromURL(rawURL string) (*goredis.Options, time.Duration, error) {
	o, err := goredis.ParseURL(rawURL)
	if err != nil {
		return nil, 0, fmt.Errorf("redis: invalid URL: %s", urlErrorKind(err))
	}
	if msg := malformedURL(rawURL); msg != "" {
		return nil, 0, errors.New("redis: invalid URL: " + msg)
	}
	dial := o.DialTimeout
	applyDefaults(o)
	return o, dial, nil
}

// malformedURL returns why rawURL, which go-redis parses, is still refused (""
// if it is not): the shapes in which go-redis ignores part of the URL or
// takes part of it for the address, where a password misplaced by a typo or
// an unescaped '#', '/' or '@' would end up. go-redis logs dial errors, and
// they name the address. The reasons are fixed text: they never quote the
// URL.
func malformedURL(rawURL string) string {
	if strings.Contains(rawURL, "#") { // a fragment, which go-redis ignores
		return "a '#' (in a password it is written %23)"
	}
	u, err := url.Parse(rawURL)
	if err != nil { // go-redis parsed it: cannot happen
		return "cannot parse it"
	}
	if u.Opaque != "" {
		return "no '//' after the scheme"
	}
	if u.Scheme == "unix" {
		if u.Host != "" {
			return "a unix: URL takes no host: unix:///path or unix://user:password@/path"
		}
		if strings.Contains(u.Path, "@") {
			return "'@' in the socket path: credentials go before it, unix://user:password@/path"
		}
		return ""
	}
	if h := u.Hostname(); h != "" && !validHost(h) {
		return "the host is not a host name or IP address (is the '@' after the password missing?)"
	}
	return ""
}

// validHost reports whether h is an IP address (with a zone, for IPv6) or
// a host name: letters, digits, '-', '_' and '.'.
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// urlErrorKind keeps only the kind of a URL parse error ("invalid database
// number", "unexpected option"). The details quote parts of the URL, and in
// a malformed URL any part may hold the password.
func urlErrorKind(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // url.Error repeats the URL
	}
	msg := strings.TrimPrefix(err.Error(), "redis: ")
	if i := strings.Index(msg, ":"); i >= 0 {
		msg = msg[:i]
	}
	if strings.ContainsAny(msg, `"@/`) || len(msg) > 60 {
		return "cannot parse it"
	}
	return msg
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// applyDefaults tunes a client for a cache: short timeouts, context
// deadlines honoured, and no retries unless o asks for them. go-redis
// otherwise dials a refused address five times 100ms apart, and retries the
// command three times on top (a dial error is retryable), so a dead server
// would cost every cache call its whole timeout instead of failing at once
// and letting the cache's circuit breaker open. With one dial and no retry
// a refused connection is an error after one round trip to the kernel. A
// stale pooled connection needs no retry either: go-redis checks a pooled
// connection before it hands it out.
func applyDefaults(o *goredis.Options) {
	o.DialTimeout = orDefault(o.DialTimeout, DefaultDialTimeout)
	o.ReadTimeout = orDefault(o.ReadTimeout, DefaultReadTimeout)
	o.WriteTimeout = orDefault(o.WriteTimeout, DefaultWriteTimeout)
	o.ContextTimeoutEnabled = true
	if o.DialerRetries == 0 {
		o.DialerRetries = 1
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = -1 // go-redis: -1 is none, 0 is its default of 3
	}
	if o.Dialer == nil {
		o.Dialer = dialer(o.DialTimeout, o.TLSConfig)
		if shown := shownAddr(o); shown != o.Addr {
			o.Dialer = hideAddr(o.Dialer, o.Addr, shown)
		}
	}
}

// keepAlive is go-redis's TCP keep-alive policy for its default dialer.
var keepAlive = net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 3}

type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// dialer is the dialer of the clients this package creates: go-redis's
// default, except that a TLS handshake ends with the context too. go-redis's
// own uses tls.DialWithDialer, which honours only the dial timeout, so a TLS
// server that accepts and never answers would hold a call for the whole
// DialTimeout whatever the call's deadline. A timeout <= 0 leaves the
// context alone to bound the dial.
func dialer(timeout time.Duration, conf *tls.Config) dialFunc {
	nd := &net.Dialer{Timeout: max(timeout, 0), KeepAliveConfig: keepAlive}
	if conf == nil {
		return nd.DialContext
	}
	td := &tls.Dialer{NetDialer: nd, Config: conf}
	return td.DialContext
}

// hideAddr makes the errors of dial name the server as shown instead of by
// addr, which holds credentials. go-redis returns dial errors from every
// call (and logs them), so they are rewritten where they are made.
func hideAddr(dial dialFunc, addr, shown string) dialFunc {
	return func(ctx context.Context, network, a string) (net.Conn, error) {
		c, err := dial(ctx, network, a)
		if err != nil {
			err = redactAddr(err, addr, shown)
		}
		return c, err
	}
}

// redactAddr returns err with addr replaced by shown. A *net.OpError stays
// one (go-redis retries and reports dial errors by their type), with its
// address replaced; anything else becomes a plain message.
func redactAddr(err error, addr, shown string) error {
	if !strings.Contains(err.Error(), addr) {
		return err
	}
	if oe, ok := err.(*net.OpError); ok {
		c := *oe
		c.Addr = hiddenAddr{network: oe.Net, shown: shown}
		if c.Err != nil && strings.Contains(c.Err.Error(), addr) {
			c.Err = errors.New(strings.ReplaceAll(c.Err.Error(), addr, shown))
		}
		if !strings.Contains(c.Error(), addr) {
			return &c
		}
	}
	return errors.New(strings.ReplaceAll(err.Error(), addr, shown))
}

// hiddenAddr is a net.Addr that does not say what it is.
type hiddenAddr struct{ network, shown string }

func (a hiddenAddr) Network() string { return a.network }
func (a hiddenAddr) String() string  { return a.shown }

// Ping checks that Redis answers and accepts the store's credentials: a
// PING to the server, to every master of a cluster, to every shard of a
// Ring, in parallel. It returns nil when all answer, or the first failure:
// "redis: connecting to 127.0.0.1:6379: ..." or "redis: authentication
// failed for 127.0.0.1:6379: ...", wrapping the go-redis error and, when ctx
// ended, ctx.Err().
//
// The constructors do not call it, so that a service starts (degraded) while
// Redis is down. Call it at start with a deadline to refuse to run without
// Redis, or to log that the cache starts without its L2.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.begin(ctx, "ping"); err != nil {
		return err
	}
	var (
		mu    sync.Mutex
		first error
	)
	skipped, err := s.eachServer(ctx, func(ctx context.Context, srv storeServer) {
		if err := srv.client.Ping(ctx).Err(); err != nil {
			err = s.pingError(ctx, srv.addr, err)
			if srv.rawAddr != srv.addr {
				err = &redactedError{msg: strings.ReplaceAll(err.Error(), srv.rawAddr, srv.addr), err: err}
			}
			mu.Lock()
			if first == nil {
				first = err
			}
			mu.Unlock()
		}
	})
	if first != nil {
		return first
	}
	if err != nil {
		return s.pingError(ctx, strings.Join(skipped, ","), err)
	}
	return nil
}

// pingError is the error of Ping for the server at where.
func (s *Store) pingError(ctx context.Context, where string, err error) error {
	switch {
	case errors.Is(err, goredis.ErrClosed):
		return fmt.Errorf("redis: ping: %w: %w", tier.ErrClosed, err)
	case goredis.IsAuthError(err):
		return fmt.Errorf("redis: authentication failed for %s: %w", where, err)
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("redis: connecting to %s: %w: %w", where, cerr, err)
	}
	return fmt.Errorf("redis: connecting to %s: %w", where, err)
}
