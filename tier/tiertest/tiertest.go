// Package tiertest is the conformance suite for remote (L2) stores: every
// [tier.Remote] implementation — the Redis store, the in-memory fake
// (tier/fake), and any store a user writes for another backend — runs [Run]
// from its tests:
//
//	func TestConformance(t *testing.T) {
//		backend := openBackend(t)
//		tiertest.Run(t, func(t *testing.T, prefix string) tier.Remote {
//			return mystore.New(backend, prefix)
//		})
//	}
//
// # What the suite checks
//
// The basic [tier.Remote] contract: a miss is (nil, false, nil); values of any
// bytes and sizes (empty, binary, 1 MiB) round-trip; overwrites; TTL expiry,
// TTL 0 meaning no expiry, a negative TTL being an error; Delete of several
// and of missing keys; Clear removing its own prefix and nothing else, even
// when prefixes contain glob metacharacters; keys made of any bytes; use from
// many goroutines (run it with -race); every operation after Close failing
// with an error that wraps [tier.ErrClosed]; a cancelled context failing the
// call with an error that wraps the context's error and leaving the store
// usable, with no reply ever delivered to the wrong caller.
//
// Then, for each optional capability the store implements (found by type
// assertion, as the cache does), its contract: [tier.BatchGetter],
// [tier.BatchWriter], [tier.Adder], [tier.Epochs], [tier.Fencer],
// [tier.Broadcaster] and [tier.Locker]. A capability the store does not
// implement is logged, not failed. The notices ([tier.Notice]) of epoch
// bumps, invalidations and record writes are checked where the store is a
// [tier.Broadcaster] too: each published once its write is made, with the
// number the write made, on the store's namespaced channel, and none for a
// write that failed.
//
// The suite reads the store's clock only through the Now of
// [tier.Fencer.ReadRecords]: record stamps it writes are readings of that
// clock, and where the store is a Fencer, epochs it creates are checked
// against it too.
//
// # What the suite expects beyond tier.go
//
// These follow from the contracts but are spelled out because the suite
// tests them:
//
//   - Set does not keep the caller's slice, and the slice Get returns belongs
//     to the caller (the cache reuses encode buffers).
//   - Errors caused by the caller's context wrap ctx.Err(), so the cache can
//     tell a cancelled request from a failing backend.
//   - A positive TTL shorter than the backend's resolution still expires the
//     key (it is rounded up, never turned into "no expiry" or an error).
//   - Close of the store ends its subscriptions (their channels are closed);
//     a second Close does not panic and returns nil or an ErrClosed error.
//
// # Timing
//
// The suite uses short TTLs (tens to hundreds of milliseconds) and polls for
// their effect with a generous deadline; it never asserts that something
// happened within an upper time bound, so it is stable on slow machines and
// under the race detector. Subtests run in parallel.
package tiertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/tier"
)

// Factory opens a store whose keys and channels live under prefix.
//
// Every store the factory opens while one [Run] is in progress must use the
// same backend, so that two stores opened with different prefixes can see
// (and must not disturb) each other's data, and two stores opened with the
// same prefix behave like two instances of one application. The suite picks
// prefixes that are unique per Run (a random run ID is part of them), so the
// backend may be shared with other tests.
//
// Prefixes are printable ASCII without '{' or '}', end with ':', and may
// contain glob metacharacters (* ? [ ] \) to prove that Clear escapes them.
//
// The factory is called from parallel subtests, so it must be safe for
// concurrent use. It should fail t (t.Fatal) if it cannot open the store.
// The suite closes every store it opens when the subtest ends.
type Factory func(t *testing.T, prefix string) tier.Remote

// Options adjusts what [RunWith] expects of the stores.
type Options struct {
	// NotAtomic declares that the store's Fencer and Epochs are not atomic:
	// each of their steps is several operations, as with [tier.Fence] and
	// [tier.EpochsOver] over a plain Remote. The suite then checks their
	// ordering rules one call at a time and skips what needs atomicity
	// (concurrent first loads agreeing, racing writes and invalidations,
	// exactly one lease holder) and leases, which such stores do not take.
	NotAtomic bool
}

// Run runs the conformance suite against the stores f opens. It is
// RunWith(t, f, Options{}).
func Run(t *testing.T, f Factory) {
	t.Helper()
	RunWith(t, f, Options{})
}

// RunWith runs the conformance suite against the stores f opens, with the
// expectations opts adjusts.
func RunWith(t *testing.T, f Factory, opts Options) {
	t.Helper()
	s := &suite{factory: f, opts: opts, base: "tiertest:" + randomHex(4) + ":"}

	// Probe the capabilities once, on a store of its own.
	probe := s.open(t, "probe")
	_, batchGet := probe.(tier.BatchGetter)
	_, batchWrite := probe.(tier.BatchWriter)
	_, adder := probe.(tier.Adder)
	_, epochs := probe.(tier.Epochs)
	_, fencer := probe.(tier.Fencer)
	_, broadcaster := probe.(tier.Broadcaster)
	_, locker := probe.(tier.Locker)

	t.Run("Remote", s.testRemote)
	capability := func(name string, has bool, fn func(*testing.T)) {
		if !has {
			t.Logf("store does not implement tier.%s; its contract is not tested", name)
			return
		}
		t.Run(name, fn)
	}
	capability("BatchGetter", batchGet, s.testBatchGetter)
	capability("BatchWriter", batchWrite, s.testBatchWriter)
	capability("Adder", adder, s.testAdder)
	capability("Epochs", epochs, s.testEpochs)
	capability("Fencer", fencer, s.testFencer)
	capability("Broadcaster", broadcaster, s.testBroadcaster)
	capability("Locker", locker, s.testLocker)
}

// suite carries what every subtest needs.
type suite struct {
	factory Factory
	opts    Options
	base    string       // "tiertest:<run id>:", unique per Run
	seq     atomic.Int64 // makes every opened namespace unique
}

// open opens a store in a fresh namespace named after name. The store is
// closed when t ends.
func (s *suite) open(t *testing.T, name string) tier.Remote {
	t.Helper()
	return s.openPrefix(t, s.newPrefix(name))
}

// newPrefix returns a prefix nobody else in this Run uses.
func (s *suite) newPrefix(name string) string {
	return s.base + name + strconv.FormatInt(s.seq.Add(1), 10) + ":"
}

// openPrefix opens a store on the exact prefix. The store is closed when t
// ends.
func (s *suite) openPrefix(t *testing.T, prefix string) tier.Remote {
	t.Helper()
	st := s.factory(t, prefix)
	if st == nil {
		t.Fatalf("factory returned a nil store for prefix %q", prefix)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// testCtx returns a context that bounds one subtest, so that a store that
// hangs fails the test instead of the whole run timing out.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// mustGet reads key and fails t on an error.
func mustGet(t *testing.T, ctx context.Context, st tier.Remote, key string) ([]byte, bool) {
	t.Helper()
	v, ok, err := st.Get(ctx, key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if !ok && v != nil {
		t.Fatalf("Get(%q) = (%q, false): a miss must return a nil value", key, v)
	}
	return v, ok
}

// mustSet writes key and fails t on an error.
func mustSet(t *testing.T, ctx context.Context, st tier.Remote, key string, value []byte, ttl time.Duration) {
	t.Helper()
	if err := st.Set(ctx, key, value, ttl); err != nil {
		t.Fatalf("Set(%q, ttl %v): %v", key, ttl, err)
	}
}

// wantValue fails t unless key holds want.
func wantValue(t *testing.T, ctx context.Context, st tier.Remote, key string, want []byte) {
	t.Helper()
	got, ok := mustGet(t, ctx, st, key)
	if !ok {
		t.Fatalf("Get(%q): miss, want %s", key, show(want))
	}
	if string(got) != string(want) {
		t.Fatalf("Get(%q) = %s, want %s", key, show(got), show(want))
	}
}

// wantMissing fails t unless key is absent.
func wantMissing(t *testing.T, ctx context.Context, st tier.Remote, key string) {
	t.Helper()
	if got, ok := mustGet(t, ctx, st, key); ok {
		t.Fatalf("Get(%q) = %s, want a miss", key, show(got))
	}
}

// show prints a value compactly: large values by length only.
func show(b []byte) string {
	if len(b) > 64 {
		return strconv.Itoa(len(b)) + " bytes"
	}
	return strconv.Quote(string(b))
}

// storeClock returns the store's clock (µs) at each key, as ReadRecords
// reports it, or zeros when the store is not a [tier.Fencer].
func storeClock(t *testing.T, st tier.Remote, keys ...string) []int64 {
	t.Helper()
	out := make([]int64, len(keys))
	f, ok := st.(tier.Fencer)
	if !ok {
		return out
	}
	ops := make([]tier.ReadOp, len(keys))
	for i, k := range keys {
		ops[i].Key = k
	}
	for i, r := range readRecords(t, f, ops...) {
		out[i] = r.Now
	}
	return out
}
