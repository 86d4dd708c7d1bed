package redis

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
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
	// Prefix is Options.Prefix: default DefaultPrefix.
	Prefix string
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
// is set), checks with PING that the server answers and accepts the
// credentials, and returns a store that owns the client. The client sets
// ContextTimeoutEnabled, so a context deadline bounds every call.
//
// An unreachable server or wrong credentials fail here with a clear error
// ("redis: connecting to 127.0.0.1:6379: ...", "redis: authentication failed
// for ...") rather than on the first cache miss.
func NewFromConfig(cfg Config) (*Store, error) {
	opts := Options{Prefix: cfg.Prefix, CloseClient: true}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	var client goredis.UniversalClient
	var where string
	if len(cfg.Addrs) > 0 {
		if cfg.Addr != "" {
			return nil, errors.New("redis: config sets both Addr and Addrs: use Addr for one server, Addrs for a cluster")
		}
		if cfg.DB != 0 {
			return nil, errors.New("redis: a cluster has only database 0")
		}
		where = strings.Join(cfg.Addrs, ",")
		client = goredis.NewClusterClient(&goredis.ClusterOptions{
			Addrs:                 cfg.Addrs,
			Username:              cfg.Username,
			Password:              cfg.Password,
			TLSConfig:             cfg.TLS,
			DialTimeout:           orDefault(cfg.DialTimeout, DefaultDialTimeout),
			ReadTimeout:           orDefault(cfg.ReadTimeout, DefaultReadTimeout),
			WriteTimeout:          orDefault(cfg.WriteTimeout, DefaultWriteTimeout),
			PoolSize:              cfg.PoolSize,
			ContextTimeoutEnabled: true,
			DialerRetries:         1,
			MaxRetries:            1,
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
		where = o.Addr
		client = goredis.NewClient(o)
	}
	return open(client, where, cfg.DialTimeout, opts)
}

// NewFromURL is [NewFromConfig] for a URL: redis://[user:password@]host[:port][/db]
// or rediss:// for TLS (unix:///path/to/socket also works), with the query
// options go-redis's ParseURL knows (dial_timeout, read_timeout,
// write_timeout, pool_size, protocol, client_name, skip_verify, ...).
// Timeouts the URL leaves out get this package's short defaults.
// Errors never echo the URL, which may hold a password.
func NewFromURL(rawURL string, prefix string) (*Store, error) {
	opts := Options{Prefix: prefix, CloseClient: true}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	o, dial, err := optionsFromURL(rawURL)
	if err != nil {
		return nil, err
	}
	shown := shownAddr(o)
	s, err := open(goredis.NewClient(o), shown, dial, opts)
	if err != nil && shown != o.Addr {
		// go-redis's dial errors quote the address too.
		return nil, &redactedError{msg: strings.ReplaceAll(err.Error(), o.Addr, shown), err: err}
	}
	return s, err
}

// shownAddr is how errors name the server of a URL: its address, unless the
// address may hold credentials, as a malformed URL can put them there
// ("unix:/user:password@..." makes all of it a socket path).
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
	dial := o.DialTimeout
	applyDefaults(o)
	return o, dial, nil
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

// applyDefaults sets the short timeouts where o leaves them zero, and makes
// context deadlines bound each call.
// applyDefaults tunes a client for a cache: short timeouts, context
// deadlines honoured, and few retries — go-redis otherwise retries a refused
// dial five times 100ms apart inside one call, so a dead server would cost
// every cache call its whole timeout instead of failing fast and letting the
// cache's circuit breaker open.
func applyDefaults(o *goredis.Options) {
	o.DialTimeout = orDefault(o.DialTimeout, DefaultDialTimeout)
	o.ReadTimeout = orDefault(o.ReadTimeout, DefaultReadTimeout)
	o.WriteTimeout = orDefault(o.WriteTimeout, DefaultWriteTimeout)
	o.ContextTimeoutEnabled = true
	if o.DialerRetries == 0 {
		o.DialerRetries = 1
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = 1
	}
}

// open checks that client reaches a server that accepts its credentials, and
// wraps it in a store that owns it.
func open(client goredis.UniversalClient, where string, dial time.Duration, opts Options) (*Store, error) {
	dial = orDefault(dial, DefaultDialTimeout)
	if dial < 0 {
		dial = 10 * time.Second
	}
	// Time for a dial and a retry or two; go-redis retries refused dials.
	ctx, cancel := context.WithTimeout(context.Background(), 3*dial+time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		if goredis.IsAuthError(err) {
			return nil, fmt.Errorf("redis: authentication failed for %s: %w", where, err)
		}
		return nil, fmt.Errorf("redis: connecting to %s: %w", where, err)
	}
	s, err := New(client, opts)
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	return s, nil
}
