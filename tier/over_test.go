package tier_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/tier"
	"github.com/agentcache/agentcache-go/tier/fake"
	"github.com/agentcache/agentcache-go/tier/tiertest"
)

// basic is a store with the five methods of tier.Remote and nothing else:
// embedding the interface promotes only its methods, so the capabilities
// of the store inside (a memory store has them all) are hidden.
type basic struct{ tier.Remote }

// over is a plain store with the records and epochs that package tier keeps
// through its five methods.
type over struct {
	tier.Remote
	tier.Fencer
	tier.Epochs
}

func newOver(r tier.Remote) over {
	b := basic{r}
	return over{Remote: b, Fencer: tier.Fence(b), Epochs: tier.EpochsOver(b)}
}

// broadcasting is a plain store that also broadcasts: Fence and EpochsOver
// publish notices through it.
type broadcasting struct {
	tier.Remote
	tier.Broadcaster
}

// overBroadcast is over with the Broadcaster of its store.
type overBroadcast struct {
	tier.Remote
	tier.Fencer
	tier.Epochs
	tier.Broadcaster
}

func newOverBroadcast(r *fake.Remote) overBroadcast {
	b := broadcasting{Remote: r, Broadcaster: r}
	return overBroadcast{Remote: basic{r}, Fencer: tier.Fence(b), Epochs: tier.EpochsOver(b), Broadcaster: r}
}

func newBackend(t *testing.T) *fake.Backend {
	b := fake.NewBackend(fake.BackendOptions{SweepInterval: 20 * time.Millisecond})
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// Fence and EpochsOver over a plain store follow the same ordering rules as
// a store's own Fencer and Epochs, one call at a time: the suite checks
// them with its races and leases left out.
func TestOverConformance(t *testing.T) {
	b := newBackend(t)
	tiertest.RunWith(t, func(t *testing.T, prefix string) tier.Remote {
		return newOver(b.Remote(prefix))
	}, tiertest.Options{NotAtomic: true})
}

// Over a store that broadcasts, Fence and EpochsOver publish the notices
// after their writes.
func TestOverConformanceBroadcast(t *testing.T) {
	b := newBackend(t)
	tiertest.RunWith(t, func(t *testing.T, prefix string) tier.Remote {
		return newOverBroadcast(b.Remote(prefix))
	}, tiertest.Options{NotAtomic: true})
}

func TestFenceAndEpochsOverPreferTheStores(t *testing.T) {
	r := newBackend(t).Remote("p:")
	if f, ok := tier.Fence(r).(*fake.Remote); !ok || f != r {
		t.Fatalf("Fence of a store that is a Fencer = %T, want the store itself", tier.Fence(r))
	}
	if e, ok := tier.EpochsOver(r).(*fake.Remote); !ok || e != r {
		t.Fatalf("EpochsOver of a store with Epochs = %T, want the store itself", tier.EpochsOver(r))
	}
	var plain tier.Remote = basic{r}
	if _, ok := plain.(tier.Fencer); ok {
		t.Fatal("the test's plain store is a Fencer")
	}
	if _, ok := plain.(tier.Epochs); ok {
		t.Fatal("the test's plain store has Epochs")
	}
	if _, ok := tier.Fence(plain).(tier.Remote); ok {
		t.Fatal("Fence of a plain store returned the store")
	}
	var bc tier.Remote = broadcasting{Remote: r, Broadcaster: r}
	if _, ok := bc.(tier.Fencer); ok {
		t.Fatal("the test's broadcasting store is a Fencer")
	}
}

// Records over a plain store are its ordinary values, stamped with this
// process's clock, and no lease is ever taken.
func TestFenceOverPlainStore(t *testing.T) {
	r := newBackend(t).Remote("p:")
	f := tier.Fence(basic{r})
	ctx := context.Background()

	before := time.Now().UnixMicro()
	_, res, err := f.ReadRecords(ctx, nil, []tier.ReadOp{{Key: "{k}", Lease: &tier.Lease{Key: "lk:{k}", Token: "t", TTL: time.Minute}}})
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now().UnixMicro()
	// The clock never gives a reading twice, so under a burst of readings
	// it may run a little ahead.
	if now := res[0].Now; now < before || now > after+int64(time.Second/time.Microsecond) {
		t.Fatalf("Now = %d, want this process's clock, within [%d, %d]", now, before, after)
	}
	if res[0].Leased || res[0].Found {
		t.Fatalf("ReadRecords = %+v, want a miss and no lease", res[0])
	}
	if _, ok, _ := r.Get(ctx, "lk:{k}"); ok {
		t.Fatal("ReadRecords over a plain store wrote a lease key")
	}

	record := tier.AppendRecord(nil, tier.KindValue, res[0].Now, 3, []byte("v"))
	out, err := f.WriteRecords(ctx, []tier.RecordWrite{{Key: "{k}", Record: record, TTL: time.Hour, Release: &tier.Lease{Key: "lk:{k}", Token: "t", TTL: time.Minute}}})
	if err != nil || out[0].Outcome != tier.Written {
		t.Fatalf("WriteRecords = (%+v, %v), want Written", out, err)
	}
	if v, ok, _ := r.Get(ctx, "{k}"); !ok || string(v) != string(record) {
		t.Fatalf("the store holds %q at the key, want the record", v)
	}
	stamps, _, err := f.Invalidate(ctx, []tier.TombstoneOp{{Key: "{k}", TTL: time.Hour}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if stamps[0] <= res[0].Now {
		t.Fatalf("tombstone stamped %d, not after the record's stamp %d", stamps[0], res[0].Now)
	}
	if v, _, _ := r.Get(ctx, "{k}"); string(v) != string(tier.AppendRecord(nil, tier.KindTombstone, stamps[0], 0, nil)) {
		t.Fatalf("the store holds %q after Tombstone", v)
	}
	// With this process's clock, a load that starts after the tombstone
	// is stamped after it, at once.
	_, res, err = f.ReadRecords(ctx, nil, []tier.ReadOp{{Key: "{k}"}})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Now <= stamps[0] {
		t.Fatalf("a read right after a tombstone stamped %d has Now %d", stamps[0], res[0].Now)
	}
	out, err = f.WriteRecords(ctx, []tier.RecordWrite{{Key: "{k}", Record: tier.AppendRecord(nil, tier.KindValue, res[0].Now, 0, nil)}})
	if err != nil || out[0].Outcome != tier.Written {
		t.Fatalf("write of a load that began after the tombstone = (%+v, %v), want Written", out, err)
	}
}

// Epochs over a plain store are decimal text; a deleted one comes back as a
// new value, however fast.
func TestEpochsOverPlainStore(t *testing.T) {
	r := newBackend(t).Remote("p:")
	e := tier.EpochsOver(basic{r})
	ctx := context.Background()
	got, err := e.LoadEpochs(ctx, []tier.EpochOp{{Key: "e"}})
	if err != nil {
		t.Fatal(err)
	}
	if v, _, _ := r.Get(ctx, "e"); string(v) != strconv.FormatUint(got[0], 10) {
		t.Fatalf("the store holds %q, want the decimal epoch %d", v, got[0])
	}
	last := got[0]
	for i := range 2000 {
		if err := r.Delete(ctx, "e"); err != nil {
			t.Fatal(err)
		}
		var err error
		if i%2 == 0 {
			got, err = e.LoadEpochs(ctx, []tier.EpochOp{{Key: "e"}})
		} else {
			got, err = e.BumpEpochs(ctx, []tier.EpochOp{{Key: "e"}})
		}
		if err != nil {
			t.Fatal(err)
		}
		if got[0] <= last {
			t.Fatalf("round %d: epoch created after a delete = %d, not after the earlier %d", i, got[0], last)
		}
		last = got[0]
	}
}

// failing fails Get and Set for keys that start with "bad".
type failing struct{ tier.Remote }

var errBad = errors.New("bad key")

func (f failing) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if strings.HasPrefix(key, "bad") {
		return nil, false, errBad
	}
	return f.Remote.Get(ctx, key)
}

func (f failing) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	if strings.HasPrefix(key, "bad") {
		return errBad
	}
	return f.Remote.Set(ctx, key, v, ttl)
}

// A key that fails fails alone, as a store's own Fencer reports one node
// down.
func TestFenceOverPlainStoreErrorsPerKey(t *testing.T) {
	r := newBackend(t).Remote("p:")
	f := tier.Fence(failing{basic{r}})
	ctx := context.Background()
	_, res, err := f.ReadRecords(ctx, nil, []tier.ReadOp{{Key: "good"}, {Key: "bad"}, {Key: "good2"}})
	if err != nil {
		t.Fatalf("ReadRecords with one failing key: whole-call error %v", err)
	}
	if res[0].Err != nil || res[2].Err != nil || !errors.Is(res[1].Err, errBad) {
		t.Fatalf("ReadRecords = %+v, want an error for the failing key only", res)
	}
	if res[0].Now == 0 || res[2].Now == 0 {
		t.Fatalf("ReadRecords = %+v: the good keys lack the clock", res)
	}
	rec := tier.AppendRecord(nil, tier.KindValue, res[0].Now, 0, nil)
	out, err := f.WriteRecords(ctx, []tier.RecordWrite{{Key: "bad", Record: rec}, {Key: "good", Record: rec}})
	if err != nil {
		t.Fatalf("WriteRecords with one failing key: whole-call error %v", err)
	}
	if out[0].Outcome != tier.Failed || !errors.Is(out[0].Err, errBad) || out[1].Outcome != tier.Written {
		t.Fatalf("WriteRecords = %+v, want the failing key Failed and the other Written", out)
	}
	if _, _, err := f.Invalidate(ctx, []tier.TombstoneOp{{Key: "good", TTL: time.Minute}, {Key: "bad", TTL: time.Minute}}, nil); !errors.Is(err, errBad) {
		t.Fatalf("Invalidate with a failing key: %v, want its error", err)
	}
	if _, _, err := f.ReadRecords(ctx, []tier.EpochOp{{Key: "bad"}}, []tier.ReadOp{{Key: "good"}}); !errors.Is(err, errBad) {
		t.Fatalf("ReadRecords with a failing epoch: %v, want its error", err)
	}
	if _, err := tier.EpochsOver(failing{basic{r}}).LoadEpochs(ctx, []tier.EpochOp{{Key: "bad"}}); !errors.Is(err, errBad) {
		t.Fatalf("LoadEpochs of a failing key: %v, want its error", err)
	}
}
