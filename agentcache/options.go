package agentcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentcache/agentcache-go/tier"
)

// Defaults for the zero fields of Options.
const (
	DefaultL1MaxEntries   = 10_000
	DefaultTTL            = 5 * time.Minute
	DefaultMaxValueSize   = 1 << 20
	DefaultWriteQueueSize = 4096
	DefaultWriteBatchSize = 128
	DefaultL2Timeout      = 250 * time.Millisecond
	DefaultMaxEpochAge    = 30 * time.Second
	DefaultScopeEpochTTL  = 24 * time.Hour
	DefaultLogInterval    = 10 * time.Second
	DefaultNegativeKeys   = 100_000
	DefaultLockLease      = 10 * time.Second
	DefaultLockPoll       = 10 * time.Millisecond
	DefaultTTLJitter      = 0.05

	DefaultFalsePositiveRate = 0.01
)

// Options configures a Cache. The zero value is a valid L1-only cache; every
// field documents its default.
type Options struct {
	// L1MaxEntries bounds the in-process tier. Default DefaultL1MaxEntries.
	L1MaxEntries int

	// L2 is the remote tier shared by every instance, usually a
	// tier/redis Store. Nil means L1 only. The Cache does not close it.
	L2 tier.Remote

	// DefaultTTL is the life of an entry when neither the call nor its
	// resource says otherwise. Default DefaultTTL.
	DefaultTTL time.Duration

	// MaxValueSize bounds an encoded value in L2, in bytes. A larger value
	// stays in L1, is not written to L2, and is logged and counted
	// (Stats.Oversize); a larger value found in L2 is not decoded: it is a
	// miss, logged and counted the same way. Default DefaultMaxValueSize.
	MaxValueSize int

	// Codec encodes values for L2 and snapshots. Default JSON.
	Codec Codec

	// Logger receives the cache's warnings (L2 failures, dropped writes,
	// corrupt data), each kind at most once per LogInterval. Default
	// slog.Default().
	Logger *slog.Logger
	// LogInterval is the minimum time between two log lines of the same
	// kind; the lines in between are counted and reported with the next
	// one. Default DefaultLogInterval.
	LogInterval time.Duration

	// WriteQueueSize bounds the L2 write-behind queue. When it is full a
	// write is dropped and counted (Stats.WritesDropped); the caller never
	// waits for Redis. Default DefaultWriteQueueSize.
	WriteQueueSize int
	// WriteBatchSize is the most writes sent to L2 in one pipeline. Default
	// DefaultWriteBatchSize.
	WriteBatchSize int

	// L2Timeout bounds each L2 call made on a caller's behalf (a read, an
	// epoch check). Default DefaultL2Timeout. Note: a go-redis client honours
	// it only with ContextTimeoutEnabled, which the tier/redis constructors
	// set; for a client of your own, its ReadTimeout is the bound.
	L2Timeout time.Duration

	// LoadTimeout, if positive, bounds each loader run. Loads do not run on
	// the caller's context (a caller that gives up does not cancel a load
	// others wait for), so this is what stops a hung tool. Default: none.
	LoadTimeout time.Duration

	// Breaker configures the circuit breaker in front of L2.
	Breaker BreakerOptions

	// MaxEpochAge bounds how long this instance trusts what it knows of
	// the invalidation epochs without confirming it with L2. It is the
	// staleness bound when invalidation messages are lost. Default
	// DefaultMaxEpochAge.
	MaxEpochAge time.Duration
	// ScopeEpochTTL is the life in L2 of per-user and per-session epochs.
	// An epoch that expires is replaced by a new random one, which only
	// costs misses, never stale data. Default DefaultScopeEpochTTL.
	ScopeEpochTTL time.Duration

	// Negative sizes the L1 negative cache (bloom filters of "not found"
	// answers).
	Negative NegativeOptions

	// TTLJitter shortens each entry's TTL by a random share of up to this
	// fraction, so entries written together do not expire together.
	// Default DefaultTTLJitter; negative turns it off.
	TTLJitter float64

	// DisableFleetLock turns off the fleet-wide load lock. By default, when
	// L2 can hold leases (tier.Locker), one instance runs the tool for a key
	// that many instances miss at once and the others read its result.
	DisableFleetLock bool
	// LockLease is the life of a load lease; the holder renews it every
	// third of it, and if the holder dies another instance takes over after
	// at most this long. Default DefaultLockLease.
	LockLease time.Duration
	// LockPoll is how often a waiting instance first checks L2, in case the
	// fill announcement is lost; it doubles up to 16 times this. Default
	// DefaultLockPoll.
	LockPoll time.Duration

	// Snapshot, if Path is set, restores L1 from a file at New and saves it
	// at Close (and every Interval if positive), for warm restarts.
	Snapshot SnapshotOptions

	// TracerProvider and MeterProvider supply the tracer and meter. Nil
	// means the global providers (otel.GetTracerProvider and
	// otel.GetMeterProvider); with no SDK installed they record nothing and
	// cost nothing on an L1 hit.
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	// RootSpans makes every lookup a span even when the caller's context has
	// no recording span. By default a lookup is traced only as part of a
	// trace the caller is recording.
	RootSpans bool
	// L1HitEvents records a fresh L1 hit inside a recording span as an
	// event on that span (named and attributed like a lookup span) instead
	// of a child span. With the OpenTelemetry SDK an event costs about a
	// quarter of a span, which matters on the hottest path; the price is
	// the SDK's limit of events per span (128 by default), past which the
	// oldest are dropped. Every other lookup (stale hits, L2, negative,
	// the tool) is still a span. Off by default.
	L1HitEvents bool
	// RecordScopeIDs puts a hash of the scope ID (the user or session) on
	// lookup spans, as agentcache.scope.id: the first 16 bytes, in hex, of
	// an HMAC-SHA256 of the ID, so that an ID cannot be recovered from it by
	// hashing guesses. The HMAC's key is derived from Secret when it is set,
	// and then every instance that shares the Secret records the same hash
	// for an ID (a new Secret changes them all). Without a Secret the key is
	// 32 random bytes made by New: the hashes still cannot be reversed, but
	// they agree only within one Cache — another instance, or this one after
	// a restart, records another hash for the same ID, so traces of one user
	// cannot be joined across the fleet. Off by default: IDs stay out of
	// telemetry.
	RecordScopeIDs bool
	// RecordArgs puts the hash of a call's canonical arguments on lookup
	// spans. Off by default.
	RecordArgs bool
	// Secret, if set, is the application's secret key (at least 16 bytes;
	// every instance of the fleet must share it). With it, every entry this
	// cache writes to L2 carries an HMAC-SHA256 of its key and contents, and
	// a read refuses an entry without a valid one, so that whoever can write
	// to Redis but does not know the secret cannot plant or move a value
	// that a user is served. It also keys the scope-ID hashes of
	// RecordScopeIDs. Default: none (entries are bound to their key by an
	// unkeyed hash, which catches a value copied to another key by mistake
	// but not a forgery).
	Secret []byte
	// Name labels this cache's metrics (agentcache.cache). Default "default".
	Name string

	// OnFleetError, if set, is called (on the caller's goroutine) whenever an
	// invalidation, Delete or Clear applied locally but could not tell the
	// fleet — including the invalidations of WrapMutation, which do not
	// return the error. Use it to alert, or to retry the invalidation.
	OnFleetError func(ctx context.Context, err *FleetError)

	// InstanceID names this instance in invalidation messages. Default: a
	// random UUID.
	InstanceID string

	// Now is the clock. Default time.Now. Tests inject one.
	Now func() time.Time
}

// BreakerOptions configures the circuit breaker in front of L2.
type BreakerOptions struct {
	// Failures is the number of consecutive L2 failures or timeouts that
	// opens the breaker. Default 5.
	Failures int
	// OpenFor is the pause before the first probe. Default 500ms; it doubles
	// after each failed probe up to MaxOpenFor (default 30s).
	OpenFor    time.Duration
	MaxOpenFor time.Duration
}

// NegativeOptions sizes the bloom filters that remember "not found" answers
// in L1 (created by the first such answer): one pair per global resource,
// and one pair per scope (user or session) for a per-user or per-session
// resource, so that one scope's guesses never make another scope's lookups
// come back "not found".
type NegativeOptions struct {
	// ExpectedKeys is how many distinct "not found" keys one resource is
	// expected to see within half its negative TTL; past it the filter
	// rotates early. A global resource's pair takes about 2.9 bytes per
	// expected key at the default rate (290 KB at the default 100,000).
	//
	// A per-user or per-session resource keeps the pairs of its 256 most
	// recently used scopes, evicting the least recently used (whose scope
	// forgets its "not found" answers, which costs tool calls, never a
	// wrong answer). Each scope's pair is sized for ExpectedKeys/256 keys,
	// at least 64, and rotates early past them; at the default rate it
	// takes about 2.9 bytes per key it is sized for and about 300 bytes
	// more, so about 1.4 KB per scope at the default ExpectedKeys (390
	// keys), and at most about 2.9 bytes × ExpectedKeys + 80 KB per
	// resource in all (360 KB at the default; 145 KB whenever ExpectedKeys
	// is below 16,384, where the 64-key floor applies). Default
	// DefaultNegativeKeys.
	ExpectedKeys int
	// FalsePositiveRate is the filter's target rate, in (0, 0.5]. It matters
	// only when L2 is down or absent; otherwise every "maybe" is confirmed.
	// Default DefaultFalsePositiveRate.
	FalsePositiveRate float64
}

// SnapshotOptions configures the disk snapshot of L1.
type SnapshotOptions struct {
	// Path of the snapshot file. Empty: no snapshot.
	Path string
	// Interval between periodic saves. Zero: save only at Close.
	Interval time.Duration
}

func (o *Options) withDefaults() (Options, error) {
	v := *o
	var errs []error
	bad := func(field, msg string) { errs = append(errs, fmt.Errorf("agentcache: Options.%s %s", field, msg)) }
	nonNeg := func(field string, d time.Duration) {
		if d < 0 {
			bad(field, "must not be negative")
		}
	}
	if v.L1MaxEntries < 0 {
		bad("L1MaxEntries", "must not be negative")
	}
	if v.MaxValueSize < 0 {
		bad("MaxValueSize", "must not be negative")
	}
	if v.WriteQueueSize < 0 {
		bad("WriteQueueSize", "must not be negative")
	}
	if v.WriteBatchSize < 0 {
		bad("WriteBatchSize", "must not be negative")
	}
	if v.Breaker.Failures < 0 {
		bad("Breaker.Failures", "must not be negative")
	}
	nonNeg("DefaultTTL", v.DefaultTTL)
	nonNeg("LogInterval", v.LogInterval)
	nonNeg("L2Timeout", v.L2Timeout)
	nonNeg("LoadTimeout", v.LoadTimeout)
	nonNeg("MaxEpochAge", v.MaxEpochAge)
	nonNeg("ScopeEpochTTL", v.ScopeEpochTTL)
	nonNeg("Snapshot.Interval", v.Snapshot.Interval)
	nonNeg("LockLease", v.LockLease)
	nonNeg("LockPoll", v.LockPoll)
	if v.TTLJitter >= 1 || v.TTLJitter != v.TTLJitter {
		bad("TTLJitter", "must be below 1")
	}
	if v.LockLease > 0 && v.LockLease < 3*time.Millisecond {
		bad("LockLease", "must be at least 3ms")
	}
	nonNeg("Breaker.OpenFor", v.Breaker.OpenFor)
	nonNeg("Breaker.MaxOpenFor", v.Breaker.MaxOpenFor)
	if v.Negative.ExpectedKeys < 0 {
		bad("Negative.ExpectedKeys", "must not be negative")
	}
	if f := v.Negative.FalsePositiveRate; f < 0 || f > 0.5 || f != f {
		bad("Negative.FalsePositiveRate", "must be in (0, 0.5]")
	}
	if len(v.Secret) > 0 && len(v.Secret) < 16 {
		bad("Secret", "must be at least 16 bytes")
	}
	if v.MaxEpochAge > 0 && v.MaxEpochAge < 4*time.Millisecond {
		bad("MaxEpochAge", "must be at least 4ms")
	}
	if len(errs) > 0 {
		return v, errors.Join(errs...)
	}
	def := func(p *int, d int) {
		if *p == 0 {
			*p = d
		}
	}
	defD := func(p *time.Duration, d time.Duration) {
		if *p == 0 {
			*p = d
		}
	}
	def(&v.L1MaxEntries, DefaultL1MaxEntries)
	def(&v.Negative.ExpectedKeys, DefaultNegativeKeys)
	if v.Negative.FalsePositiveRate == 0 {
		v.Negative.FalsePositiveRate = DefaultFalsePositiveRate
	}
	def(&v.MaxValueSize, DefaultMaxValueSize)
	def(&v.WriteQueueSize, DefaultWriteQueueSize)
	def(&v.WriteBatchSize, DefaultWriteBatchSize)
	defD(&v.DefaultTTL, DefaultTTL)
	defD(&v.LogInterval, DefaultLogInterval)
	defD(&v.L2Timeout, DefaultL2Timeout)
	defD(&v.MaxEpochAge, DefaultMaxEpochAge)
	defD(&v.ScopeEpochTTL, DefaultScopeEpochTTL)
	defD(&v.LockLease, DefaultLockLease)
	defD(&v.LockPoll, DefaultLockPoll)
	if v.TTLJitter == 0 {
		v.TTLJitter = DefaultTTLJitter
	}
	if v.Name == "" {
		v.Name = "default"
	}
	if v.Codec == nil {
		v.Codec = JSON{}
	}
	if v.Logger == nil {
		v.Logger = slog.Default()
	}
	if v.Now == nil {
		v.Now = time.Now
	}
	return v, nil
}
