package fake

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/internal/testkit/wait"
	"github.com/agentcache/agentcache-go/tier"
	"github.com/agentcache/agentcache-go/tier/tiertest"
)

func TestRemoteConformance(t *testing.T) {
	b := NewBackend(BackendOptions{SweepInterval: 20 * time.Millisecond})
	t.Cleanup(func() { _ = b.Close() })
	tiertest.Run(t, func(t *testing.T, prefix string) tier.Remote {
		return b.Remote(prefix)
	})
}

// remoteClock is a fake clock for the remote tests.
type remoteClock struct {
	mu  sync.Mutex
	now time.Time
}

func newRemoteClock() *remoteClock {
	return &remoteClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *remoteClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *remoteClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestRemoteFakeClock(t *testing.T) {
	clock := newRemoteClock()
	b := NewBackend(BackendOptions{Clock: clock.Now, SweepInterval: -1})
	defer b.Close()
	r := b.Remote("app:")
	ctx := context.Background()

	if err := r.Set(ctx, "k", []byte("v"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if ok, _ := r.TryLock(ctx, "lease", "a", 5*time.Second); !ok {
		t.Fatal("TryLock on a free lease failed")
	}
	ep, err := r.LoadEpochs(ctx, []tier.EpochOp{{Key: "e", TTL: 20 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	// A created epoch is the backend's clock in microseconds.
	if start := uint64(clock.Now().UnixMicro()); ep[0] != start {
		t.Fatalf("created epoch = %d, want the fake clock %d", ep[0], start)
	}

	clock.Advance(9 * time.Second)
	if _, ok, _ := r.Get(ctx, "k"); !ok {
		t.Fatal("entry expired before its TTL")
	}
	if ok, _ := r.TryLock(ctx, "lease", "b", time.Second); !ok {
		t.Fatal("lease did not expire with the fake clock")
	}
	clock.Advance(2 * time.Second)
	if _, ok, _ := r.Get(ctx, "k"); ok {
		t.Fatal("entry outlived its TTL")
	}
	if got, _ := r.LoadEpochs(ctx, []tier.EpochOp{{Key: "e"}}); got[0] != ep[0] {
		t.Fatalf("epoch = %d before its TTL, want %d", got[0], ep[0])
	}
	clock.Advance(10 * time.Second)
	if got, _ := r.LoadEpochs(ctx, []tier.EpochOp{{Key: "e"}}); got[0] != uint64(clock.Now().UnixMicro()) {
		t.Fatalf("epoch = %d after its TTL, want a new one from the clock, %d", got[0], clock.Now().UnixMicro())
	}
	if n := b.Len(); n != 1 {
		t.Fatalf("Len = %d, want 1 (the new epoch)", n)
	}
}

func TestRemoteSweeperIsBoundedAndStops(t *testing.T) {
	clock := newRemoteClock()
	b := NewBackend(BackendOptions{Clock: clock.Now, SweepInterval: 5 * time.Millisecond, SweepLimit: 3})
	r := b.Remote("app:")
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c", "d", "e", "f", "g"} {
		if err := r.Set(ctx, k, []byte("v"), time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Set(ctx, "keep", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	stored := func() int {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.data)
	}
	clock.Advance(2 * time.Second)
	// Nothing touches the expired keys: only the sweeper can remove them,
	// three at most per sweep.
	wait.Until(t, 10*time.Second, func() string {
		if n := stored(); n != 1 {
			return fmt.Sprintf("sweeper left %d entries, want 1", n)
		}
		return ""
	})
	done := make(chan struct{})
	go func() {
		_ = b.Close() // waits for the sweeper goroutine to return
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return: the sweeper did not stop")
	}
	if _, _, err := r.Get(ctx, "keep"); !errors.Is(err, tier.ErrClosed) {
		t.Fatalf("Get after the backend closed: %v, want tier.ErrClosed", err)
	}
}

func TestRemoteSlowSubscriberGetsReset(t *testing.T) {
	b := NewBackend(BackendOptions{SubscriptionBuffer: 4})
	defer b.Close()
	r := b.Remote("app:")
	ctx := context.Background()
	sub, err := r.Subscribe(ctx, "ch")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	// Nobody reads while ten messages are published: Publish must not block.
	for i := range 10 {
		if err := r.Publish(ctx, "ch", []byte{byte('0' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	// The buffer held [Reset 0 1 2]; 3 overflowed it: dropped, Reset; then
	// 4 5 6 filled it; 7 overflowed: dropped, Reset; then 8 9.
	want := []tier.Message{{Reset: true}, {Payload: []byte("8")}, {Payload: []byte("9")}}
	for i, w := range want {
		select {
		case m := <-sub.C():
			if m.Reset != w.Reset || string(m.Payload) != string(w.Payload) {
				t.Fatalf("delivery %d = %+v, want %+v", i, m, w)
			}
		default:
			t.Fatalf("delivery %d missing, want %+v", i, w)
		}
	}
	select {
	case m := <-sub.C():
		t.Fatalf("unexpected extra delivery %+v", m)
	default:
	}
}

func TestRemoteSetErrorSimulatesOutage(t *testing.T) {
	b := NewBackend(BackendOptions{})
	defer b.Close()
	r := b.Remote("app:")
	ctx := context.Background()
	sub, err := r.Subscribe(ctx, "ch")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	<-sub.C() // the first Reset

	down := errors.New("connection refused")
	b.SetError(down)
	if _, _, err := r.Get(ctx, "k"); !errors.Is(err, down) {
		t.Fatalf("Get during the outage: %v, want the injected error", err)
	}
	if err := r.Publish(ctx, "ch", []byte("lost")); !errors.Is(err, down) {
		t.Fatalf("Publish during the outage: %v, want the injected error", err)
	}
	if err := r.Set(ctx, "k", []byte("v"), 0); !errors.Is(err, down) {
		t.Fatalf("Set during the outage: %v, want the injected error", err)
	}
	b.SetError(nil)
	if m := <-sub.C(); !m.Reset {
		t.Fatalf("first delivery after the outage = %+v, want a Reset", m)
	}
	if err := r.Set(ctx, "k", []byte("v"), 0); err != nil {
		t.Fatalf("Set after the outage: %v", err)
	}

	b.ResetSubscriptions()
	if m := <-sub.C(); !m.Reset {
		t.Fatalf("delivery after ResetSubscriptions = %+v, want a Reset", m)
	}
}

func TestRemoteNonEpochValue(t *testing.T) {
	b := NewBackend(BackendOptions{})
	defer b.Close()
	r := b.Remote("app:")
	ctx := context.Background()
	// Text that is not a decimal epoch (0 is none) reads as missing and
	// is replaced, not an error.
	for _, v := range []string{"not a number", "0", "-1", "+5", "1e6", " 7"} {
		if err := r.Set(ctx, "e", []byte(v), 0); err != nil {
			t.Fatal(err)
		}
		got, err := r.LoadEpochs(ctx, []tier.EpochOp{{Key: "e"}})
		if err != nil {
			t.Fatalf("LoadEpochs of a key holding %q: %v", v, err)
		}
		if got[0] < 1_000_000 {
			t.Fatalf("LoadEpochs of a key holding %q = %d, want a new epoch from the clock", v, got[0])
		}
		if stored, _, _ := r.Get(ctx, "e"); string(stored) != strconv.FormatUint(got[0], 10) {
			t.Fatalf("after LoadEpochs the key holds %q, want the decimal epoch %d", stored, got[0])
		}
	}
}

// A fake clock that stands still must not bring an old epoch back, nor
// fence the load that starts after a tombstone: the backend's clock in
// microseconds never gives the same reading twice.
func TestRemoteFrozenClock(t *testing.T) {
	clock := newRemoteClock()
	b := NewBackend(BackendOptions{Clock: clock.Now, SweepInterval: -1})
	defer b.Close()
	r := b.Remote("app:")
	ctx := context.Background()
	first, err := r.LoadEpochs(ctx, []tier.EpochOp{{Key: "e"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(ctx, "e"); err != nil {
		t.Fatal(err)
	}
	again, err := r.LoadEpochs(ctx, []tier.EpochOp{{Key: "e"}})
	if err != nil {
		t.Fatal(err)
	}
	if again[0] <= first[0] {
		t.Fatalf("epoch created after a delete = %d, the clock stood still, want more than the old %d", again[0], first[0])
	}

	read := func() tier.ReadResult {
		t.Helper()
		_, res, err := r.ReadRecords(ctx, nil, []tier.ReadOp{{Key: "k"}})
		if err != nil {
			t.Fatal(err)
		}
		return res[0]
	}
	write := func(stamp int64) tier.Outcome {
		t.Helper()
		res, err := r.WriteRecords(ctx, []tier.RecordWrite{{Key: "k", Record: tier.AppendRecord(nil, tier.KindValue, stamp, 0, nil)}})
		if err != nil {
			t.Fatal(err)
		}
		return res[0].Outcome
	}
	loadBegins := read().Now
	stamps, _, err := r.Invalidate(ctx, []tier.TombstoneOp{{Key: "k", TTL: time.Minute}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if write(loadBegins) != tier.Fenced {
		t.Fatal("a load that began before the tombstone was not fenced")
	}
	after := read().Now
	if after <= stamps[0] {
		t.Fatalf("a read after the tombstone stamped %d has Now %d", stamps[0], after)
	}
	if o := write(after); o != tier.Written {
		t.Fatalf("a load that began after the tombstone: %v, want Written", o)
	}
}

// Horizon and the expiry of tombstones and leases follow the backend's
// clock.
func TestRemoteRecordsFakeClock(t *testing.T) {
	clock := newRemoteClock()
	b := NewBackend(BackendOptions{Clock: clock.Now, SweepInterval: -1})
	defer b.Close()
	r := b.Remote("app:")
	ctx := context.Background()
	_, res, err := r.ReadRecords(ctx, nil, []tier.ReadOp{{Key: "k", Lease: &tier.Lease{Key: "lk:k", Token: "a", TTL: 5 * time.Second}}})
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Leased || res[0].Now < clock.Now().UnixMicro() {
		t.Fatalf("first read = %+v, want the lease and the fake clock (%d µs)", res[0], clock.Now().UnixMicro())
	}
	stamp := res[0].Now
	clock.Advance(6 * time.Second)
	w := tier.RecordWrite{Key: "k", Record: tier.AppendRecord(nil, tier.KindValue, stamp, 0, []byte("v")), Horizon: 5 * time.Second}
	out, err := r.WriteRecords(ctx, []tier.RecordWrite{w})
	if err != nil || out[0].Outcome != tier.TooOld {
		t.Fatalf("write 6s after its read with a 5s Horizon = (%+v, %v), want TooOld", out, err)
	}
	// The lease expired with the clock.
	if ok, _ := r.TryLock(ctx, "lk:k", "b", time.Second); !ok {
		t.Fatal("the lease ReadRecords took did not expire with the fake clock")
	}
	ts, _, err := r.Invalidate(ctx, []tier.TombstoneOp{{Key: "k", TTL: 10 * time.Second}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ts[0] < clock.Now().UnixMicro() {
		t.Fatalf("tombstone stamped %d, before the fake clock %d", ts[0], clock.Now().UnixMicro())
	}
	clock.Advance(9 * time.Second)
	if _, ok, _ := r.Get(ctx, "k"); !ok {
		t.Fatal("tombstone expired before its TTL")
	}
	clock.Advance(2 * time.Second)
	if _, ok, _ := r.Get(ctx, "k"); ok {
		t.Fatal("tombstone outlived its TTL")
	}
}

func TestRemoteLeaseNeedsTTL(t *testing.T) {
	b := NewBackend(BackendOptions{})
	defer b.Close()
	r := b.Remote("app:")
	if _, err := r.TryLock(context.Background(), "l", "t", 0); err == nil {
		t.Fatal("TryLock with ttl 0: no error")
	}
}
