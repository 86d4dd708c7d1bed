// Package tier defines the storage tiers behind an agentcache Cache: an
// in-process local store (L1) and a remote store shared by every instance of
// the application (L2).
//
// A remote store only has to implement [Remote]. Everything else a store can
// do better than the generic path — batch reads, pipelined writes, writes that
// never overwrite, invalidation epochs, pub/sub, leases — is an optional
// capability the cache discovers with a type assertion ([BatchGetter],
// [BatchWriter], [Adder], [Epochs], [Broadcaster], [Locker]). A store that
// lacks a capability still works; the cache falls back to the basic methods or
// does without the feature, and says so in its package documentation.
//
// Every remote store, whether shipped here or written by a user for Memcached,
// DynamoDB or anything else, must pass the conformance suite in
// [github.com/agentcache/agentcache-go/tier/tiertest].
//
// Keys handed to a remote store are relative to the store's namespace: the
// store prepends its own prefix, and Clear removes only the keys under that
// prefix. Keys may contain any byte; a store must not interpret them except
// where documented (Redis Cluster hash tags, see the redis package).
// Prefixes should not nest: a store with prefix "app:" also sees, and
// clears, the keys of a store with prefix "app:v2:".
//
// Rules every remote store follows (tiertest checks them):
//   - When a call fails because its ctx ended, the error wraps ctx.Err(), so
//     the cache can tell a caller that gave up from a failing store.
//   - Slices are the caller's: Set and SetMulti do not keep the value after
//     they return, and what Get and GetMulti return is not reused.
//   - TTLs are honoured to the millisecond at least; a positive TTL shorter
//     than the store's resolution is rounded up, never to "no expiry".
//   - Close is idempotent and ends the store's subscriptions; every call
//     after it fails with an error wrapping ErrClosed.
package tier

import (
	"context"
	"errors"
	"strconv"
	"time"
)

// ErrClosed is returned by a store used after Close.
var ErrClosed = errors.New("tier: store is closed")

// Remote is a store shared by every instance (L2). It holds encoded bytes.
//
// Implementations must be safe for concurrent use, must honour ctx
// cancellation where the underlying client allows it, and must never return
// one caller's value to another caller (a cancelled request must not leave a
// reply on a connection that someone else will read).
type Remote interface {
	// Get returns the value at key. A missing key is (nil, false, nil): a miss
	// is not an error.
	Get(ctx context.Context, key string) (value []byte, found bool, err error)
	// Set stores value at key. ttl > 0 sets an expiry; ttl == 0 means none.
	// A negative ttl is an error.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Delete removes the keys. Missing keys are not an error.
	Delete(ctx context.Context, keys ...string) error
	// Clear removes every key under this store's namespace and nothing else.
	Clear(ctx context.Context) error
	// Close releases what the store owns. A client the user supplied is left
	// open unless the store's options say otherwise.
	Close() error
}

// Lookup is the result for one key of a batch read.
type Lookup struct {
	Value []byte
	Found bool
	// Err reports a failure that affected this key only (for example one
	// cluster node being down); the other keys of the batch are still valid.
	Err error
}

// BatchGetter is implemented by stores that read many keys in few round trips.
type BatchGetter interface {
	// GetMulti returns one Lookup per key, in the order of keys, using as few
	// round trips as the store allows (for Redis Cluster, one per slot or
	// node; never a CROSSSLOT error). err reports a failure of the whole call,
	// and then the lookups are nil; otherwise failures of single keys are in
	// their Lookup.Err.
	GetMulti(ctx context.Context, keys []string) ([]Lookup, error)
}

// Write is one write of a batch.
type Write struct {
	Key   string
	Value []byte
	// TTL as in Remote.Set.
	TTL time.Duration
	// IfAbsent writes only when the key does not exist (SET NX).
	IfAbsent bool
}

// BatchWriter is implemented by stores that pipeline many writes.
type BatchWriter interface {
	// SetMulti applies the writes in as few round trips as the store allows.
	// It returns one error per write (nil on success, and also nil for an
	// IfAbsent write that found the key present); err reports a failure of
	// the whole call, and then errs is nil.
	SetMulti(ctx context.Context, writes []Write) (errs []error, err error)
}

// Adder is implemented by stores that can write a key only if it is absent.
// The cache uses it so that a "not found" marker never replaces a real value
// written concurrently by another instance. Without it, the cache does not
// write negative markers to the store.
type Adder interface {
	// SetIfAbsent stores value at key only if key does not exist, and reports
	// whether it did.
	SetIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error)
}

// Epochs is implemented by stores that can hold invalidation epochs:
// generation numbers that are part of every cache key, so that bumping one
// makes every entry under it unreachable in O(1).
//
// Epoch values only ever grow. A value the store creates (for a key that is
// missing, was evicted, or holds something that is not an epoch) is its
// clock in microseconds, or more: it is ordered after every value the key
// held before, so a lost epoch becomes a new namespace, never an old one. A
// caller passes the values it knows (0: none): a store that holds less — a
// write lost in a failover, a restored backup — is raised to the known value
// instead of lowering the caller's. Keys are relative, like every other key.
// One round trip per node; every key is set atomically on its node.
//
// A store without Epochs still shares epochs: the cache keeps them as
// ordinary keys through [EpochsOver], without the atomicity.
type Epochs interface {
	// LoadEpochs returns the epoch at each op's key, never less than its
	// Known (a key holding less is raised to it). A key it creates expires
	// after the op's TTL (0: never). Bytes that are not an epoch are
	// replaced as if the key were missing. Notices are not published.
	LoadEpochs(ctx context.Context, ops []EpochOp) ([]uint64, error)
	// BumpEpochs sets each op's key to a new value greater than both the
	// value it holds and Known, with the expiry TTL (0: none), publishes the
	// op's Notice with the new value, and returns the new values.
	BumpEpochs(ctx context.Context, ops []EpochOp) ([]uint64, error)
}

// EpochOp is one epoch of an [Epochs] or [Fencer] call.
type EpochOp struct {
	Key   string
	Known uint64        // the value the caller knows (0: none)
	TTL   time.Duration // the expiry of the key when the op writes it (0: none)
	// Notice, if set, is published by a bump with the new value.
	Notice *Notice
}

// Notice is a message a store publishes on a [Broadcaster] channel in the
// same atomic step as the write it announces, so that announcing costs no
// round trip of its own and no instance hears of a write that was not made.
// The payload is Before, then the number the write made in decimal (an
// epoch's new value, a tombstone's stamp; nothing for a record write), then
// After. A store that is not a Broadcaster ignores notices.
//
// Notices of one node reach a subscriber in the order their writes were
// made; notices of different nodes (the masters of a Redis Cluster, the
// shards of a Ring) in no particular order. A subscriber must not rely on
// the order of notices about keys of different slots.
type Notice struct {
	Channel       string // relative, like every channel
	Before, After []byte
}

// Payload returns the notice's payload for the number v (v < 0: none).
func (n *Notice) Payload(v int64) []byte {
	out := append([]byte(nil), n.Before...)
	if v >= 0 {
		out = strconv.AppendInt(out, v, 10)
	}
	return append(out, n.After...)
}

// Repairer is implemented by stores that count the keys they found holding
// data of another type or shape where they expected an epoch, and replaced
// (see [Epochs]). The count only grows; it is the store's, whoever asked.
type Repairer interface {
	Repairs() uint64
}

// Message is one delivery of a [Subscription].
type Message struct {
	// Payload is the published message. Empty when Reset is true.
	Payload []byte
	// Reset reports that the subscription was (re)established. Messages
	// published while it was down are lost, so a receiver that relies on them
	// must treat what it learned from earlier messages as possibly stale.
	Reset bool
}

// Broadcaster is implemented by stores that deliver messages to every
// instance (Redis pub/sub). Channels are relative names, namespaced by the
// store like keys. Messages from one publisher arrive in the order they were
// published. Publish never blocks on a slow subscriber: a subscriber that
// falls behind its buffer loses its backlog and receives a Reset.
type Broadcaster interface {
	// Publish sends msg to every current subscriber of channel.
	Publish(ctx context.Context, channel string, msg []byte) error
	// Subscribe starts receiving messages published on channel. The first
	// delivery is a Reset once the subscription is active; later Resets
	// follow reconnects and lost backlogs. Subscribe returns once the
	// subscription is active, or an error if the store cannot be reached.
	Subscribe(ctx context.Context, channel string) (Subscription, error)
}

// Subscription is an active subscription.
type Subscription interface {
	// C delivers messages until the subscription is closed, then is closed.
	C() <-chan Message
	// Close ends the subscription and closes C.
	Close() error
}

// Locker is implemented by stores that can hold short leases, used by the
// cache to run one load for the whole fleet. A lease is identified by key and
// owned by the holder of token; only that token can extend or release it.
type Locker interface {
	// TryLock takes the lease at key for ttl (> 0) if nobody holds it.
	TryLock(ctx context.Context, key, token string, ttl time.Duration) (bool, error)
	// Extend pushes the lease's expiry to ttl from now if token still holds it.
	Extend(ctx context.Context, key, token string, ttl time.Duration) (bool, error)
	// Unlock releases the lease if token still holds it, and reports whether
	// it did.
	Unlock(ctx context.Context, key, token string) (bool, error)
}

// LeaseTagger is implemented by lockers whose leases carry a generation
// ([Lease.Gen]): a holder that took its lease before it knew the entry's
// generation records it once known, so that a load of another generation
// takes the lease over instead of waiting for this one.
type LeaseTagger interface {
	// TagLease records gen (> 0) as the generation of the lease at key and
	// pushes its expiry to ttl from now, if token still holds it.
	TagLease(ctx context.Context, key, token string, gen uint64, ttl time.Duration) (bool, error)
}
