package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/internal/glob"
	"github.com/agentcache/agentcache-go/tier"
)

// Every capability the cache looks for.
var (
	_ tier.Remote      = (*Store)(nil)
	_ tier.BatchGetter = (*Store)(nil)
	_ tier.BatchWriter = (*Store)(nil)
	_ tier.Adder       = (*Store)(nil)
	_ tier.Epochs      = (*Store)(nil)
	_ tier.Broadcaster = (*Store)(nil)
	_ tier.Locker      = (*Store)(nil)
)

// DefaultPrefix is the key prefix when Options.Prefix is empty.
const DefaultPrefix = "agentcache:"

// MaxPrefixLen is the longest prefix accepted, in bytes.
const MaxPrefixLen = 128

// Options configures a [Store]. The zero value is valid.
type Options struct {
	// Prefix is prepended to every key and channel; Clear removes only the
	// keys that start with it. Default: DefaultPrefix ("agentcache:"); a
	// store always has a prefix, so Clear can never empty a whole database.
	// It must end with ':', so that a prefix can never be the start of a
	// longer one that is not nested in it: "tenant1" would match the keys
	// of "tenant10", while "tenant1:" never matches "tenant10:". Prefixes
	// nest at a ':' only: "app:" owns the keys of "app:v2:" too.
	// At most MaxPrefixLen bytes, with no control characters and no '{' or
	// '}': a brace in the prefix would become the Redis Cluster hash tag of
	// every key and put the whole cache in one slot.
	Prefix string

	// CloseClient makes Close close the go-redis client too. Default false:
	// a client passed to New belongs to the caller. Stores made by
	// NewFromConfig and NewFromURL always close the client they created.
	CloseClient bool

	// SubscriptionBuffer is how many messages a subscription buffers for a
	// slow receiver. When it is full, the backlog is dropped and a Reset is
	// delivered in its place. Default: 256.
	SubscriptionBuffer int

	// WaitReplicas, if > 0, makes every epoch bump and tombstone (the writes
	// an invalidation makes) wait until that many replicas of each master
	// involved have acknowledged it (Redis WAIT), up to WaitTimeout. Fewer
	// acknowledgements fail the call: the cache then keeps the invalidation
	// pending, applied on this instance, and retries it. It narrows what a
	// failover can lose — a master that dies before its replicas got the
	// write and whose promoted replica never had it — to writes that no
	// replica acknowledged, for which the caller got an error. Default 0:
	// no wait. Not supported on a Ring client.
	WaitReplicas int
	// WaitTimeout bounds each WAIT. Default DefaultWaitTimeout.
	WaitTimeout time.Duration
}

// DefaultWaitTimeout is the default Options.WaitTimeout.
const DefaultWaitTimeout = 100 * time.Millisecond

// Store is the Redis remote store. Create it with [New], [NewFromConfig] or
// [NewFromURL]. It is safe for concurrent use.
type Store struct {
	client      goredis.UniversalClient
	prefix      string
	closeClient bool
	subBuf      int
	// singleNode reports a client that talks to one server (a *goredis.Client,
	// including a Sentinel failover client): multi-key commands are safe
	// there, and Clear scans that one server.
	singleNode bool
	// waitReplicas and waitTimeout are Options.WaitReplicas and WaitTimeout.
	waitReplicas int
	waitTimeout  time.Duration

	closed  atomic.Bool
	repairs atomic.Uint64 // epoch keys replaced (see Repairs)

	// scripts holds the scripts each server has run, or been sent, for
	// this store: those are sent by hash (see runScriptsOn).
	scriptsMu sync.RWMutex
	scripts   map[scriptNode]struct{} // guarded by scriptsMu

	mu   sync.Mutex
	subs map[*subscription]struct{} // open subscriptions; guarded by mu
}

// New returns a store on client. The client may be a single-node, cluster or
// failover (Sentinel) client; it stays the caller's unless opts.CloseClient
// is set. New does not contact Redis.
func New(client goredis.UniversalClient, opts Options) (*Store, error) {
	if client == nil {
		return nil, errors.New("redis: nil client")
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	_, single := client.(*goredis.Client)
	if _, ring := client.(*goredis.Ring); ring && opts.WaitReplicas > 0 {
		return nil, errors.New("redis: WaitReplicas is not supported on a Ring client")
	}
	return &Store{
		waitReplicas: opts.WaitReplicas,
		waitTimeout:  opts.WaitTimeout,
		client:       client,
		prefix:       opts.Prefix,
		closeClient:  opts.CloseClient,
		subBuf:       opts.SubscriptionBuffer,
		singleNode:   single,
		subs:         make(map[*subscription]struct{}),
		scripts:      make(map[scriptNode]struct{}),
	}, nil
}

// validate fills in defaults and checks opts.
func (o *Options) validate() error {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if len(o.Prefix) > MaxPrefixLen {
		return fmt.Errorf("redis: prefix is %d bytes, longer than %d", len(o.Prefix), MaxPrefixLen)
	}
	for _, c := range []byte(o.Prefix) {
		switch {
		case c == '{' || c == '}':
			return fmt.Errorf("redis: prefix must not contain %q: it would become the cluster hash tag of every key", string(c))
		case c < 0x20 || c == 0x7f:
			return fmt.Errorf("redis: prefix must not contain control character %q", string(c))
		}
	}
	if !strings.HasSuffix(o.Prefix, ":") {
		return errors.New(`redis: prefix must end with ':': otherwise it is the start of longer prefixes, and Clear of "tenant1" would delete the keys of "tenant10"`)
	}
	if o.SubscriptionBuffer < 0 {
		return errors.New("redis: negative subscription buffer")
	}
	if o.SubscriptionBuffer == 0 {
		o.SubscriptionBuffer = 256
	}
	if o.WaitReplicas < 0 || o.WaitTimeout < 0 {
		return errors.New("redis: negative WaitReplicas or WaitTimeout")
	}
	if o.WaitTimeout == 0 {
		o.WaitTimeout = DefaultWaitTimeout
	}
	return nil
}

// Prefix returns the prefix of every key and channel of the store.
func (s *Store) Prefix() string { return s.prefix }

// Client returns the go-redis client the store uses.
func (s *Store) Client() goredis.UniversalClient { return s.client }

// begin checks that an operation may start.
func (s *Store) begin(ctx context.Context, op string) error {
	if s.closed.Load() {
		return fmt.Errorf("redis: %s: %w", op, tier.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redis: %s: %w", op, err)
	}
	return nil
}

// fail wraps an error of operation op: a closed client becomes
// tier.ErrClosed, and an error that happened because ctx ended also wraps
// ctx.Err() (go-redis reports a deadline hit during I/O as a network
// timeout).
func (s *Store) fail(ctx context.Context, op string, err error) error {
	// On a cluster, a command that failed without a reply (a dead, hung or
	// unreachable node; a timeout) gets no MOVED to steer go-redis to the
	// replica promoted in its place, and go-redis refreshes its slot map
	// only once a minute by itself: ask for a refresh now (it is lazy and
	// coalesced). A caller that gave up says nothing about the node.
	if cc, ok := s.client.(*goredis.ClusterClient); ok && !errors.Is(ctx.Err(), context.Canceled) && !isReply(err) {
		cc.ReloadState(ctx)
	}
	if errors.Is(err, goredis.ErrClosed) && !errors.Is(err, tier.ErrClosed) {
		return fmt.Errorf("redis: %s: %w: %w", op, tier.ErrClosed, err)
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("redis: %s: %w: %w", op, cerr, err)
	}
	return fmt.Errorf("redis: %s: %w", op, err)
}

// isReply reports an error the server sent (the node is alive and
// answering), as opposed to a failure to reach it.
func isReply(err error) bool {
	var re goredis.Error
	return errors.As(err, &re)
}

var (
	errNegativeTTL = errors.New("redis: negative ttl")
	errLeaseTTL    = errors.New("redis: lease ttl must be positive")
)

// expiry returns the TTL to send: Redis counts in milliseconds, so a
// positive TTL is rounded up to the next millisecond, never down to zero
// (which Redis would reject) or below what the caller asked.
func expiry(ttl time.Duration) time.Duration {
	if r := ttl % time.Millisecond; ttl > 0 && r != 0 {
		ttl += time.Millisecond - r
	}
	return ttl
}

// Get implements [tier.Remote].
func (s *Store) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := s.begin(ctx, "get"); err != nil {
		return nil, false, err
	}
	v, err := s.client.Get(ctx, s.prefix+key).Bytes()
	if err != nil {
		if errors.Is(err, goredis.Nil) {
			return nil, false, nil
		}
		return nil, false, s.fail(ctx, "get", err)
	}
	return v, true, nil
}

// Set implements [tier.Remote].
func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl < 0 {
		return errNegativeTTL
	}
	if err := s.begin(ctx, "set"); err != nil {
		return err
	}
	if err := s.client.Set(ctx, s.prefix+key, value, expiry(ttl)).Err(); err != nil {
		return s.fail(ctx, "set", err)
	}
	return nil
}

// Delete implements [tier.Remote] with UNLINK (memory is reclaimed in the
// background): one command on a single server, a pipeline of single-key
// commands on a cluster.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	if err := s.begin(ctx, "delete"); err != nil {
		return err
	}
	if len(keys) == 0 {
		return nil
	}
	full := s.fullKeys(keys)
	var err error
	if s.singleNode || len(keys) == 1 {
		err = s.client.Unlink(ctx, full...).Err()
	} else {
		var cmds []goredis.Cmder
		cmds, err = s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for _, k := range full {
				p.Unlink(ctx, k)
			}
			return nil
		})
		err = firstErr(cmds, err)
	}
	if err != nil {
		return s.fail(ctx, "delete", err)
	}
	return nil
}

// fullKeys returns the prefixed keys, built in one allocation: each is a
// substring of one string holding them all.
func (s *Store) fullKeys(keys []string) []string {
	n := 0
	for _, k := range keys {
		n += len(s.prefix) + len(k)
	}
	var b strings.Builder
	b.Grow(n)
	for _, k := range keys {
		b.WriteString(s.prefix)
		b.WriteString(k)
	}
	all := b.String()
	full := make([]string, len(keys))
	at := 0
	for i, k := range keys {
		end := at + len(s.prefix) + len(k)
		full[i] = all[at:end]
		at = end
	}
	return full
}

// firstErr returns the first error of cmds other than redis.Nil, or err if
// no command has one (a pipeline that failed before sending anything).
func firstErr(cmds []goredis.Cmder, err error) error {
	for _, c := range cmds {
		if e := c.Err(); e != nil && !errors.Is(e, goredis.Nil) {
			return e
		}
	}
	if errors.Is(err, goredis.Nil) {
		return nil
	}
	return err
}

// scanCount is the COUNT hint of each SCAN page in Clear: large, so that a
// million keys cost a hundred round trips per server, and small enough that
// a page (a SCAN and an UNLINK of what it found) holds the server for a few
// milliseconds only.
const scanCount = 10000

// ClearError is the error of a [Store.Clear] that did not finish: its
// context ended, a server failed, or the store was closed. Every error that
// Clear returns is a *ClearError. Keys under the prefix may remain on the
// servers in Unfinished, and only there: the others were cleared.
type ClearError struct {
	// Deleted is how many keys Clear deleted before it stopped, as the
	// servers counted them. The keys of a batch whose reply was cut off
	// by the end of the context may be gone too, uncounted.
	Deleted int64
	// Unfinished names the servers (host:port, sorted) where Clear did not
	// finish. When it could not tell which servers hold the keys (it did
	// not start, or no cluster node answered with the slot map), these are
	// the addresses the client was configured with.
	Unfinished []string
	// Err is why Clear stopped: the first error, which wraps ctx.Err()
	// when the context ended and tier.ErrClosed when the store was closed.
	Err error
}

func (e *ClearError) Error() string {
	return fmt.Sprintf("%v (%d keys deleted; keys remain on %s)", e.Err, e.Deleted, strings.Join(e.Unfinished, ", "))
}

// Unwrap returns Err.
func (e *ClearError) Unwrap() error { return e.Err }

// Clear implements [tier.Remote]: on every server that holds keys (every
// master of a cluster, every shard of a Ring, in parallel), SCAN with the
// escaped prefix as MATCH pattern and UNLINK what each page found. It has no
// deadline of its own: give it a context that allows for the size of the
// keyspace (a few hundred thousand keys take a fraction of a second on one
// server). When the context ends or a server fails, it stops and returns a
// [*ClearError] that says how many keys it deleted and on which servers keys
// remain.
func (s *Store) Clear(ctx context.Context) error {
	if err := s.begin(ctx, "clear"); err != nil {
		return &ClearError{Unfinished: s.configuredAddrs(), Err: err}
	}
	pattern := glob.Escape(s.prefix) + "*"
	var (
		deleted    atomic.Int64
		mu         sync.Mutex
		unfinished []string
		first      error
	)
	skipped, err := s.eachServer(ctx, func(ctx context.Context, srv storeServer) {
		if err := clearServer(ctx, srv, pattern, &deleted); err != nil {
			mu.Lock()
			defer mu.Unlock()
			unfinished = append(unfinished, srv.addr)
			if first == nil {
				first = err
			}
		}
	})
	if err != nil {
		unfinished = append(unfinished, skipped...)
		if first == nil {
			first = err
		}
	}
	if first == nil {
		return nil
	}
	slices.Sort(unfinished)
	return &ClearError{Deleted: deleted.Load(), Unfinished: unfinished, Err: s.fail(ctx, "clear", first)}
}

// maxPipeline is the most single-key UNLINKs that Clear sends in one
// pipeline to a cluster node. A page of scanCount keys in one pipeline
// would be more than a client's WriteTimeout (200ms by default) allows for
// on a busy machine.
const maxPipeline = 1000

// clearServer deletes the keys matching pattern on srv and adds to deleted
// the number the server reports. Each round trip is one pipeline: the UNLINK
// of the page found last and the SCAN of the next page. On a single server
// one UNLINK names the whole page; on a cluster node it takes one UNLINK per
// key, since a page spans many slots and one command may not, and those go
// maxPipeline at a time, the next SCAN with the last of them.
func clearServer(ctx context.Context, srv storeServer, pattern string, deleted *atomic.Int64) error {
	var (
		cursor  uint64
		page    []string // keys found and not deleted yet
		scan    *goredis.ScanCmd
		unlinks []*goredis.IntCmd
	)
	more := true // the SCAN has not returned cursor 0 yet
	for more || len(page) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch := page
		if !srv.multiKey && len(batch) > maxPipeline {
			batch = page[:maxPipeline]
		}
		scanNext := more && len(batch) == len(page)
		unlinks = unlinks[:0]
		_, err := srv.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
			switch {
			case len(batch) == 0:
			case srv.multiKey:
				unlinks = append(unlinks, p.Unlink(ctx, batch...))
			default:
				for _, k := range batch {
					unlinks = append(unlinks, p.Unlink(ctx, k))
				}
			}
			if scanNext {
				scan = p.Scan(ctx, cursor, pattern, scanCount)
			}
			return nil
		})
		for _, u := range unlinks {
			deleted.Add(u.Val()) // 0 for a command that failed
		}
		if err != nil {
			return err
		}
		page = page[len(batch):]
		if scanNext {
			page, cursor = scan.Val()
			more = cursor != 0
		}
	}
	return nil
}

// storeServer is one server that holds keys of the store.
type storeServer struct {
	addr    string // for messages: never holds credentials
	rawAddr string // as the client dials it
	client  goredis.UniversalClient
	// multiKey allows a command to name any keys of the server: false on a
	// cluster node, where the keys of one command must share a slot.
	multiKey bool
}

func serverOf(c *goredis.Client, multiKey bool) storeServer {
	o := c.Options()
	return storeServer{addr: shownAddr(o), rawAddr: o.Addr, client: c, multiKey: multiKey}
}

// errShardDown is why eachServer skips a shard of a Ring.
var errShardDown = errors.New("shard marked down by the ring's health check")

// eachServer calls fn for every server that holds keys of the store, in
// parallel, and returns when every call has: the masters of a cluster, the
// shards of a Ring, the one server of any other client. When it cannot call
// fn for some of them, it returns their addresses and why: a cluster whose
// slot map could not be loaded (then the seed addresses), shards that a Ring
// has marked down.
func (s *Store) eachServer(ctx context.Context, fn func(context.Context, storeServer)) ([]string, error) {
	switch c := s.client.(type) {
	case *goredis.ClusterClient:
		err := c.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error {
			fn(ctx, serverOf(node, false))
			return nil
		})
		if err != nil {
			return s.configuredAddrs(), err
		}
		return nil, nil
	case *goredis.Ring:
		var mu sync.Mutex
		seen := make(map[string]bool)
		_ = c.ForEachShard(ctx, func(ctx context.Context, shard *goredis.Client) error {
			srv := serverOf(shard, true) // each shard is a server of its own
			mu.Lock()
			seen[srv.rawAddr] = true
			mu.Unlock()
			fn(ctx, srv)
			return nil
		})
		var down []string
		for _, addr := range c.Options().Addrs {
			if !seen[addr] {
				down = append(down, addr)
			}
		}
		if len(down) > 0 {
			slices.Sort(down)
			return down, errShardDown
		}
		return nil, nil
	case *goredis.Client:
		fn(ctx, serverOf(c, true))
		return nil, nil
	default:
		fn(ctx, storeServer{addr: "the server", rawAddr: "the server", client: s.client, multiKey: s.singleNode})
		return nil, nil
	}
}

// configuredAddrs returns the addresses the client was configured with,
// sorted: the seeds of a cluster, the shards of a Ring.
func (s *Store) configuredAddrs() []string {
	var addrs []string
	switch c := s.client.(type) {
	case *goredis.ClusterClient:
		addrs = slices.Clone(c.Options().Addrs)
	case *goredis.Ring:
		for _, a := range c.Options().Addrs {
			addrs = append(addrs, a)
		}
	case *goredis.Client:
		addrs = []string{shownAddr(c.Options())}
	default:
		addrs = []string{"the server"}
	}
	slices.Sort(addrs)
	return addrs
}

// Close implements [tier.Remote]. It ends the store's subscriptions (their
// goroutines have returned when Close returns) and closes the client if the
// store owns it. Calling Close again returns nil.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	s.mu.Lock()
	subs := make([]*subscription, 0, len(s.subs))
	for sub := range s.subs {
		subs = append(subs, sub)
	}
	s.mu.Unlock()
	for _, sub := range subs {
		_ = sub.Close()
	}
	if s.closeClient {
		if err := s.client.Close(); err != nil && !errors.Is(err, goredis.ErrClosed) {
			return fmt.Errorf("redis: close: %w", err)
		}
	}
	return nil
}
