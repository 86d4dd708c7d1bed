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

// Defaults for the zero fields of Options; each field's documentation
// states its value.
const (
	defaultL1MaxEntries   = 10_000
	defaultTTL            = 5 * time.Minute
	defaultMaxValueSize   = 1 << 20
	defaultWriteQueueSize = 4096
	defaultWriteBatchSize = 128
	defaultL2Timeout      = 250 * time.Millisecond
	defaultMaxEpochAge    = 30 * time.Second
	defaultScopeEpochTTL  = 24 * time.Hour
	defaultLogInterval    = 10 * time.Second
	defaultNegativeKeys   = 100_000
	defaultLockLease      = 10 * time.Second
	defaultLockPoll       = 10 * time.Millisecond
	defaultTTLJitter      = 0.05

	defaultFalsePositiveRate = 0.01
)

// Options configures a Cache. The zero value is a valid L1-only cache; every
// field documents its default. The fields most deployments set come first;
// Telemetry configures tracing and metrics, and Tuning holds the internals
// that rarely need changing.
type Options struct {
	// L2 is the remote tier shared by every instance, usually a
	// tier/redis Store. Nil means L1 only. The Cache does not close it.
	L2 tier.Remote

	// L1MaxEntries bounds the in-process tier. Default 10,000.
	L1MaxEntries int

	// DefaultTTL is the life of an entry when neither the call nor its
	// resource says otherwise. Default 5 minutes.
	DefaultTTL time.Duration

	// TTLJitter shortens each entry's TTL by a random share of up to this
	// fraction, so entries written together do not expire together.
	// Default 0.05; negative turns it off.
	TTLJitter float64

	// MaxValueSize bounds an encoded value in L2, in bytes. A larger value
	// stays in L1, is not written to L2, and is logged and counted
	// (Stats.Oversize); a larger value found in L2 is not decoded: it is a
	// miss, logged and counted the same way. Default 1 MiB.
	MaxValueSize int

	// Codec encodes values for L2 and snapshots. Default [JSON].
	Codec Codec

	// L2Timeout bounds each L2 call made on a caller's behalf (a read, an
	// epoch check). Default 250ms.
	//
	// NOTE: a go-redis client honours it only with ContextTimeoutEnabled,
	// which the tier/redis constructors set; for a client of your own, its
	// ReadTimeout is the bound.
	L2Timeout time.Duration

	// LoadTimeout, if positive, bounds each tool run. Loads do not run on
	// the caller's context (a caller that gives up does not cancel a load
	// others wait for), so this is what stops a hung tool. Default: none.
	LoadTimeout time.Duration

	// MaxEpochAge bounds how long this instance trusts what it knows of
	// the invalidation epochs without confirming it with L2: the staleness
	// bound when invalidation messages are lost. At least 4ms. Default 30
	// seconds.
	//
	// NOTE: it is paid for in round trips: every MaxEpochAge/2 each
	// instance sends one background pipeline that confirms the epochs it
	// used, and an L1 hit whose epochs went unconfirmed for longer waits
	// for one.
	MaxEpochAge time.Duration

	// Secret, if set, is the application's secret key (at least 16 bytes).
	// With it, every entry this cache writes to L2 carries an HMAC-SHA256
	// of its key and contents, and a read refuses an entry without a valid
	// one, so that whoever can write to Redis but does not know the secret
	// cannot plant or move a value that a user is served. It also keys the
	// scope-ID hashes of Options.Telemetry.RecordScopeIDs. Default: none
	// (entries are bound to their key by an unkeyed hash, which catches a
	// value copied to another key by mistake but not a forgery).
	//
	// WARNING: every instance of the fleet must have the same Secret (or
	// none). An instance with another one refuses what the others write,
	// as forgeries, and overwrites it: the fleet keeps running, but its
	// instances stop sharing entries. Roll a new secret out with a new
	// tier/redis prefix.
	Secret []byte

	// Negative sizes the L1 negative cache (bloom filters of "not found"
	// answers).
	Negative NegativeOptions

	// Snapshot, if Path is set, restores L1 from a file at New and saves it
	// at Close (and every Interval if positive), for warm restarts.
	Snapshot SnapshotOptions

	// Logger receives the cache's warnings (L2 failures, dropped writes,
	// corrupt data), each kind at most once per Options.Tuning.LogInterval.
	// Default slog.Default().
	//
	// NOTE: go-redis writes its own lines (a failed dial, per call during
	// an outage) through one logger for the whole process, which a Cache
	// cannot own: send them here, under the same limit, with
	// tier/redis.SetLogger(logger, interval) once at start.
	Logger *slog.Logger

	// OnFleetError, if set, is called (on the caller's goroutine) whenever an
	// invalidation, Delete or Clear applied locally but could not tell the
	// fleet — including the invalidations of WrapMutation, which do not
	// return the error. Use it to alert, or to retry the invalidation.
	OnFleetError func(ctx context.Context, err *FleetError)

	// Telemetry configures tracing and metrics.
	Telemetry TelemetryOptions

	// Tuning holds internals that rarely need changing.
	Tuning TuningOptions

	// Now is the clock of entries (their expiry and freshness, stale
	// windows, refresh-ahead), of the L2 circuit breaker's pauses and of
	// the log's rate limit. Default time.Now. Tests inject one to move time
	// by hand. What the cache measures (lookup latency, a tool's run time,
	// the time a hit saved, span times) and how long it trusts what it
	// knows of the epochs (MaxEpochAge) follow the process's own clock
	// whatever Now is.
	Now func() time.Time
}

// TelemetryOptions configures the OpenTelemetry spans and metrics of a
// Cache. The zero value traces lookups inside the caller's recording spans
// and records metrics through the global providers.
type TelemetryOptions struct {
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
	// quarter of a span, which matters on the hottest path.
	//
	// WARNING: the SDK keeps at most 128 events per span by default, and
	// drops the oldest past that. Every other lookup (stale hits, L2,
	// negative, the tool) is still a span. Off by default.
	L1HitEvents bool
	// RecordScopeIDs puts a hash of the scope ID (the user or session) on
	// lookup spans, as agentcache.scope.id: the first 16 bytes, in hex, of
	// an HMAC-SHA256 of the ID, so that an ID cannot be recovered from it by
	// hashing guesses. The HMAC's key is derived from Options.Secret when it
	// is set, and then every instance that shares the Secret records the
	// same hash for an ID (a new Secret changes them all). Without a Secret
	// the key is 32 random bytes made by New: the hashes still cannot be
	// reversed, but they agree only within one Cache — another instance, or
	// this one after a restart, records another hash for the same ID, so
	// traces of one user cannot be joined across the fleet. Off by default:
	// IDs stay out of telemetry.
	RecordScopeIDs bool
	// RecordArgs puts the hash of a call's canonical arguments on lookup
	// spans. Off by default.
	RecordArgs bool
	// Name labels this cache's metrics (agentcache.cache). Default
	// "default".
	Name string
}

// TuningOptions holds the internals of a Cache that rarely need changing.
// The zero value is the defaults.
type TuningOptions struct {
	// LogInterval is the minimum time between two log lines of the same
	// kind; the lines in between are counted and reported with the next
	// one. Default 10 seconds.
	LogInterval time.Duration

	// WriteQueueSize bounds the L2 write-behind queue. When it is full a
	// write is dropped and counted (Stats.WritesDropped); the caller never
	// waits for Redis. Default 4096.
	WriteQueueSize int
	// WriteBatchSize is the most writes sent to L2 in one pipeline. Default
	// 128.
	WriteBatchSize int

	// Breaker configures the circuit breaker in front of L2.
	Breaker BreakerOptions

	// ScopeEpochTTL is the life in L2 of per-user and per-session epochs.
	// An epoch that expires is replaced by a new random one, which only
	// costs misses, never stale data. Default 24 hours.
	ScopeEpochTTL time.Duration

	// LockLease is the life of a fleet load lease (see [NoFleetLock]): the
	// holder renews it every third of it, and if the holder dies another
	// instance takes over after at most this long. At least 3ms. Default
	// 10 seconds.
	LockLease time.Duration
	// LockPoll is how often an instance waiting for another's load first
	// checks L2, in case the fill announcement is lost; it doubles up to 16
	// times this. Default 10ms.
	LockPoll time.Duration

	// InstanceID names this instance in invalidation messages. Default: a
	// random UUID.
	InstanceID string
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
	// 100,000.
	ExpectedKeys int
	// FalsePositiveRate is the filter's target rate, in (0, 0.5]. It matters
	// only when L2 is down or absent; otherwise every "maybe" is confirmed.
	// Default 0.01.
	FalsePositiveRate float64
}

// SnapshotOptions configures the disk snapshot of L1. A snapshot holds
// encoded values of up to 64 MiB (disk.MaxValueLen), whatever MaxValueSize
// says: a save leaves a larger entry out, logs how many it left out and
// counts them in Stats.Oversize.
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
	if v.Tuning.WriteQueueSize < 0 {
		bad("Tuning.WriteQueueSize", "must not be negative")
	}
	if v.Tuning.WriteBatchSize < 0 {
		bad("Tuning.WriteBatchSize", "must not be negative")
	}
	if v.Tuning.Breaker.Failures < 0 {
		bad("Tuning.Breaker.Failures", "must not be negative")
	}
	nonNeg("DefaultTTL", v.DefaultTTL)
	nonNeg("Tuning.LogInterval", v.Tuning.LogInterval)
	nonNeg("L2Timeout", v.L2Timeout)
	nonNeg("LoadTimeout", v.LoadTimeout)
	nonNeg("MaxEpochAge", v.MaxEpochAge)
	nonNeg("Tuning.ScopeEpochTTL", v.Tuning.ScopeEpochTTL)
	nonNeg("Snapshot.Interval", v.Snapshot.Interval)
	nonNeg("Tuning.LockLease", v.Tuning.LockLease)
	nonNeg("Tuning.LockPoll", v.Tuning.LockPoll)
	if v.TTLJitter >= 1 || v.TTLJitter != v.TTLJitter {
		bad("TTLJitter", "must be below 1")
	}
	if v.Tuning.LockLease > 0 && v.Tuning.LockLease < 3*time.Millisecond {
		bad("Tuning.LockLease", "must be at least 3ms")
	}
	nonNeg("Tuning.Breaker.OpenFor", v.Tuning.Breaker.OpenFor)
	nonNeg("Tuning.Breaker.MaxOpenFor", v.Tuning.Breaker.MaxOpenFor)
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
	def(&v.L1MaxEntries, defaultL1MaxEntries)
	def(&v.Negative.ExpectedKeys, defaultNegativeKeys)
	if v.Negative.FalsePositiveRate == 0 {
		v.Negative.FalsePositiveRate = defaultFalsePositiveRate
	}
	def(&v.MaxValueSize, defaultMaxValueSize)
	def(&v.Tuning.WriteQueueSize, defaultWriteQueueSize)
	def(&v.Tuning.WriteBatchSize, defaultWriteBatchSize)
	defD(&v.DefaultTTL, defaultTTL)
	defD(&v.Tuning.LogInterval, defaultLogInterval)
	defD(&v.L2Timeout, defaultL2Timeout)
	defD(&v.MaxEpochAge, defaultMaxEpochAge)
	defD(&v.Tuning.ScopeEpochTTL, defaultScopeEpochTTL)
	defD(&v.Tuning.LockLease, defaultLockLease)
	defD(&v.Tuning.LockPoll, defaultLockPoll)
	if v.TTLJitter == 0 {
		v.TTLJitter = defaultTTLJitter
	}
	if v.Telemetry.Name == "" {
		v.Telemetry.Name = "default"
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
