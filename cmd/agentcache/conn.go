package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/internal/keyspace"
	"github.com/agentcache/agentcache-go/tier"
	"github.com/agentcache/agentcache-go/tier/redis"
)

// Timeouts of the CLI's connections. The library's defaults are tuned for a
// cache on the request path (a slow answer is a miss); an operator's SCAN of
// a large keyspace over a remote link deserves more patience.
const (
	dialTimeout = 3 * time.Second
	ioTimeout   = 5 * time.Second
	scanCount   = 1000 // COUNT hint of each SCAN page
	batchSize   = 500  // commands per pipeline
)

// connFlags are the connection flags every command but version takes.
type connFlags struct {
	url, cluster, prefix string
}

func (c *connFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.url, "url", "", "`URL` of one server: redis://[user:password@]host:port[/db] or rediss:// (default $AGENTCACHE_URL)")
	fs.StringVar(&c.cluster, "cluster", "", "Redis Cluster seeds: `host:port,...` or a redis:// URL with more seeds as ?addr=host:port (default $AGENTCACHE_CLUSTER)")
	fs.StringVar(&c.prefix, "prefix", "", "key `prefix` of the cache (default $AGENTCACHE_PREFIX, else \"agentcache:\")")
}

// merge fills the flags this set leaves empty from o (flags given before
// the command), then from the environment.
func (c *connFlags) merge(o connFlags, getenv func(string) string) {
	if c.url == "" && c.cluster == "" {
		c.url, c.cluster = o.url, o.cluster
	}
	if c.prefix == "" {
		c.prefix = o.prefix
	}
	if c.url == "" && c.cluster == "" {
		c.url, c.cluster = getenv("AGENTCACHE_URL"), getenv("AGENTCACHE_CLUSTER")
	}
	if c.prefix == "" {
		c.prefix = getenv("AGENTCACHE_PREFIX")
	}
	if c.prefix == "" {
		c.prefix = redis.DefaultPrefix
	}
}

// conn is an open connection to the cache's Redis.
type conn struct {
	store   *redis.Store
	client  goredis.UniversalClient
	cluster *goredis.ClusterClient // nil for a single server
	prefix  string
	where   string // for messages; never holds credentials
}

// connect opens the store the flags describe and checks that the server
// answers and accepts the credentials.
func connect(c connFlags) (*conn, error) {
	var (
		st    *redis.Store
		err   error
		where string
	)
	switch {
	case c.url != "" && c.cluster != "":
		return nil, usageError("give -url or -cluster, not both")
	case c.url != "":
		u, werr := withTimeouts(c.url)
		if werr != nil {
			return nil, werr
		}
		where = u.Host
		st, err = redis.NewFromURL(u.String(), redis.Options{Prefix: c.prefix})
	case c.cluster != "":
		cfg, cerr := clusterConfig(c.cluster)
		if cerr != nil {
			return nil, cerr
		}
		where = "cluster " + strings.Join(cfg.Addrs, ",")
		st, err = redis.NewFromConfig(cfg, redis.Options{Prefix: c.prefix})
	default:
		return nil, usageError("no server: set -url or -cluster (or $AGENTCACHE_URL / $AGENTCACHE_CLUSTER)")
	}
	if err != nil {
		return nil, err
	}
	// The constructors start degraded when Redis is down; an operator's
	// command wants to hear about it at once.
	pctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := st.Ping(pctx); err != nil {
		_ = st.Close()
		return nil, err
	}
	cc, _ := st.Client().(*goredis.ClusterClient)
	return &conn{store: st, client: st.Client(), cluster: cc, prefix: st.Prefix(), where: where}, nil
}

// withTimeouts parses a server URL and gives it the CLI's timeouts where it
// sets none. Errors never repeat the URL: it may hold a password.
func withTimeouts(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// Not even the parser's detail: it quotes a piece of the URL ("invalid
		// port \":se\" after host"), which in a malformed URL is as likely a
		// piece of the password.
		return nil, usageError("invalid -url: it does not parse as a URL (percent-encode characters such as # / ? @ in the password)")
	}
	switch u.Scheme {
	case "redis", "rediss":
	case "unix":
		return u, nil
	default:
		return nil, usageError("invalid -url: scheme %q: want redis://, rediss:// or unix://", u.Scheme)
	}
	if u.Host == "" {
		return nil, usageError("invalid -url: no host")
	}
	q := u.Query()
	for name, d := range map[string]time.Duration{"dial_timeout": dialTimeout, "read_timeout": ioTimeout, "write_timeout": ioTimeout} {
		if !q.Has(name) {
			q.Set(name, d.String())
		}
	}
	u.RawQuery = q.Encode()
	return u, nil
}

// clusterConfig reads -cluster: a comma list of seeds, or a URL.
func clusterConfig(s string) (redis.Config, error) {
	cfg := redis.Config{DialTimeout: dialTimeout, ReadTimeout: ioTimeout, WriteTimeout: ioTimeout}
	if !strings.Contains(s, "://") {
		for _, a := range strings.Split(s, ",") {
			if a = strings.TrimSpace(a); a != "" {
				cfg.Addrs = append(cfg.Addrs, a)
			}
		}
		if len(cfg.Addrs) == 0 {
			return cfg, usageError("invalid -cluster: no address")
		}
		return cfg, nil
	}
	o, err := goredis.ParseClusterURL(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return cfg, usageError("invalid -cluster URL: %s", strings.TrimPrefix(err.Error(), "redis: "))
	}
	cfg.Addrs, cfg.Username, cfg.Password, cfg.TLS = o.Addrs, o.Username, o.Password, o.TLSConfig
	if o.DialTimeout != 0 {
		cfg.DialTimeout = o.DialTimeout
	}
	if o.ReadTimeout != 0 {
		cfg.ReadTimeout = o.ReadTimeout
	}
	if o.WriteTimeout != 0 {
		cfg.WriteTimeout = o.WriteTimeout
	}
	cfg.PoolSize = o.PoolSize
	return cfg, nil
}

func (c *conn) close() { _ = c.store.Close() }

// nodes returns how many servers a scan visits.
func (c *conn) nodes(ctx context.Context) int {
	if c.cluster == nil {
		return 1
	}
	n := 0
	var mu sync.Mutex
	_ = c.cluster.ForEachMaster(ctx, func(context.Context, *goredis.Client) error {
		mu.Lock()
		n++
		mu.Unlock()
		return nil
	})
	return n
}

// scan calls page with each page of keys under the prefix that match
// pattern (relative to the prefix, already glob-escaped), with the client
// of the server that holds them. On a cluster it scans every master, in
// parallel, or only the master of tag's slot if tag is set. page may be
// called concurrently. Keys are passed relative to the prefix.
func (c *conn) scan(ctx context.Context, pattern, tag string, page func(ctx context.Context, node goredis.UniversalClient, keys []string) error) error {
	match := keyspace.Glob(c.prefix) + pattern
	one := func(ctx context.Context, node goredis.UniversalClient) error {
		var cursor uint64
		for {
			keys, next, err := node.Scan(ctx, cursor, match, scanCount).Result()
			if err != nil {
				return fmt.Errorf("scan: %w", err)
			}
			for i, k := range keys {
				keys[i] = strings.TrimPrefix(k, c.prefix)
			}
			if len(keys) > 0 {
				if err := page(ctx, node, keys); err != nil {
					return err
				}
			}
			if next == 0 {
				return nil
			}
			cursor = next
		}
	}
	switch {
	case c.cluster == nil:
		return one(ctx, c.client)
	case tag != "":
		node, err := c.cluster.MasterForKey(ctx, c.prefix+tag)
		if err != nil {
			return fmt.Errorf("finding the master of %s: %w", tag, err)
		}
		return one(ctx, node)
	}
	return c.cluster.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error {
		return one(ctx, node)
	})
}

// probe is what the CLI reads of one key.
type probe struct {
	head   []byte        // the envelope header, or the whole value
	pttl   time.Duration // -1: no expiry; -2: gone
	size   int64         // STRLEN, or MEMORY USAGE with mem
	exists bool
	err    error
}

// probeOpts says what to read of each key.
type probeOpts struct {
	whole  bool // GET the value, not only its header
	memory bool // MEMORY USAGE instead of STRLEN
}

// probeKeys reads keys (relative to the prefix) through client in
// pipelines of batchSize: the envelope header (or the whole value), PTTL and
// the size. A key that vanished has exists false.
func (c *conn) probeKeys(ctx context.Context, client goredis.UniversalClient, keys []string, o probeOpts) ([]probe, error) {
	out := make([]probe, len(keys))
	for lo := 0; lo < len(keys); lo += batchSize {
		hi := min(lo+batchSize, len(keys))
		vals := make([]*goredis.StringCmd, hi-lo)
		ttls := make([]*goredis.DurationCmd, hi-lo)
		sizes := make([]*goredis.IntCmd, hi-lo)
		_, err := client.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for i, k := range keys[lo:hi] {
				full := c.prefix + k
				if o.whole {
					vals[i] = p.Get(ctx, full)
				} else {
					vals[i] = p.GetRange(ctx, full, 0, keyspace.HeaderLen-1)
				}
				ttls[i] = p.PTTL(ctx, full)
				if o.memory {
					sizes[i] = p.MemoryUsage(ctx, full, 0)
				} else {
					sizes[i] = p.StrLen(ctx, full)
				}
			}
			return nil
		})
		if err != nil && !errors.Is(err, goredis.Nil) && allFailed(vals) {
			return nil, fmt.Errorf("reading keys: %w", err)
		}
		for i := range vals {
			pr := &out[lo+i]
			b, err := vals[i].Bytes()
			switch {
			case errors.Is(err, goredis.Nil):
				continue
			case err != nil:
				pr.err = err
				continue
			}
			pr.head = b
			pr.pttl, _ = ttls[i].Result()
			pr.size, _ = sizes[i].Result()
			// GETRANGE of a missing key is "", not nil.
			pr.exists = len(b) > 0 || pr.pttl != -2
		}
	}
	return out, nil
}

func allFailed(cmds []*goredis.StringCmd) bool {
	for _, c := range cmds {
		if err := c.Err(); err == nil || errors.Is(err, goredis.Nil) {
			return false
		}
	}
	return true
}

// epochValues reads epoch keys (relative to the prefix) without creating
// them: a missing key has no entry in the map. Values that do not parse
// are left out as well.
func (c *conn) epochValues(ctx context.Context, keys []string) (map[string]uint64, error) {
	out := make(map[string]uint64, len(keys))
	for lo := 0; lo < len(keys); lo += batchSize {
		hi := min(lo+batchSize, len(keys))
		cmds := make([]*goredis.StringCmd, hi-lo)
		_, err := c.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for i, k := range keys[lo:hi] {
				cmds[i] = p.Get(ctx, c.prefix+k)
			}
			return nil
		})
		if err != nil && !errors.Is(err, goredis.Nil) && allFailed(cmds) {
			return nil, fmt.Errorf("reading epochs: %w", err)
		}
		for i, cmd := range cmds {
			if v, err := cmd.Uint64(); err == nil {
				out[keys[lo+i]] = v
			}
		}
	}
	return out, nil
}

// readGens reads the generation of each of keys (relative to the prefix,
// entries that client's server holds) in pipelines of batchSize: GETRANGE
// of the record header, 18 bytes, never the value. A key that holds no live
// record (a tombstone, bytes that are not a record, or nothing any more)
// gets 0, which is no entry's current generation.
func (c *conn) readGens(ctx context.Context, client goredis.UniversalClient, keys []string) ([]uint64, error) {
	out := make([]uint64, len(keys))
	for lo := 0; lo < len(keys); lo += batchSize {
		hi := min(lo+batchSize, len(keys))
		cmds := make([]*goredis.StringCmd, hi-lo)
		_, err := client.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for i, k := range keys[lo:hi] {
				cmds[i] = p.GetRange(ctx, c.prefix+k, 0, tier.RecordHeaderLen-1)
			}
			return nil
		})
		if err != nil && !errors.Is(err, goredis.Nil) && allFailed(cmds) {
			return nil, fmt.Errorf("reading generations: %w", err)
		}
		for i, cmd := range cmds {
			if b, err := cmd.Bytes(); err == nil {
				out[lo+i] = recordGen(b)
			}
		}
	}
	return out, nil
}

// recordGen returns the generation of the value or not-found marker whose
// record (at least its header) is b, or 0 when b is a tombstone or not a
// record at all: such an entry is dead whatever the epochs.
func recordGen(b []byte) uint64 {
	r, ok := tier.ParseRecord(b)
	if !ok || r.Kind == tier.KindTombstone {
		return 0
	}
	return r.Gen
}

// liveGen returns the generation an entry with these epoch keys has now,
// and whether every epoch exists (if one is missing, the library would
// create a fresh random value: nothing written before is reachable).
func liveGen(epochKeys []string, vals map[string]uint64) (uint64, bool) {
	vs := make([]uint64, len(epochKeys))
	for i, k := range epochKeys {
		v, ok := vals[k]
		if !ok {
			return 0, false
		}
		vs[i] = v
	}
	return keyspace.Token(vs...), true
}

// isLive reports whether an entry whose record has generation gen (see
// recordGen) is reachable under the current epochs.
func isLive(gen uint64, epochKeys []string, vals map[string]uint64) bool {
	cur, ok := liveGen(epochKeys, vals)
	return ok && gen != 0 && gen == cur
}
