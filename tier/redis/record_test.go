package redis

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/internal/redistest"
	"github.com/agentcache/agentcache-go/tier"
)

// serverMicros is the server's clock, in the unit of stamps and epochs.
func serverMicros(t *testing.T, c goredis.UniversalClient) int64 {
	t.Helper()
	tm, err := c.Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return tm.UnixMicro()
}

// wrongTypes makes key hold a value of each type other than a string, one
// key per type, and returns the keys (relative to prefix).
func wrongTypes(t *testing.T, c goredis.UniversalClient, prefix, key string) []string {
	t.Helper()
	ctx := context.Background()
	var keys []string
	for typ, create := range map[string]func(k string) error{
		"list": func(k string) error { return c.RPush(ctx, k, "a", "b").Err() },
		"hash": func(k string) error { return c.HSet(ctx, k, "f", "v").Err() },
		"set":  func(k string) error { return c.SAdd(ctx, k, "m").Err() },
		"zset": func(k string) error { return c.ZAdd(ctx, k, goredis.Z{Score: 1, Member: "m"}).Err() },
	} {
		k := key + "-" + typ
		if err := create(prefix + k); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	return keys
}

func wantType(t *testing.T, c goredis.UniversalClient, key, want string) {
	t.Helper()
	if got := c.Type(context.Background(), key).Val(); got != want {
		t.Fatalf("TYPE %s = %s, want %s", key, got, want)
	}
}

// A key of another type (here made with the raw client) is not an epoch: it
// reads as missing and is replaced, never an error.
func TestEpochsReplaceWrongType(t *testing.T) {
	t.Parallel()
	c := singleClient(t, redistest.Start(t))
	s, err := New(c, Options{Prefix: "wt:"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, op := range []string{"load", "bump"} {
		keys := wrongTypes(t, c, "wt:", op)
		before := serverMicros(t, c)
		var got []uint64
		if op == "load" {
			got, err = s.LoadEpochs(ctx, hourOps(keys))
		} else {
			got, err = s.BumpEpochs(ctx, hourOps(keys))
		}
		if err != nil {
			t.Fatalf("%s epochs of keys of other types: %v", op, err)
		}
		for i, k := range keys {
			if got[i] < uint64(before) {
				t.Fatalf("%s epochs of %q = %d, want the server's clock (%d) or more", op, k, got[i], before)
			}
			wantType(t, c, "wt:"+k, "string")
			if v := c.Get(ctx, "wt:"+k).Val(); v != strconv.FormatUint(got[i], 10) {
				t.Fatalf("epoch key %q holds %q, want the decimal epoch %d", k, v, got[i])
			}
			if ttl := c.PTTL(ctx, "wt:"+k).Val(); ttl <= 0 {
				t.Fatalf("epoch key %q created with a TTL of an hour has PTTL %v", k, ttl)
			}
		}
	}
}

// Epochs are decimal text of at most 2^53-1, which the scripts hold exactly;
// any other text is replaced.
func TestEpochsFormat(t *testing.T) {
	t.Parallel()
	c := singleClient(t, redistest.Start(t))
	s, err := New(c, Options{Prefix: "ef:"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	above := []tier.EpochOp{{Key: "k", Known: maxEpoch + 1}}
	if _, err := s.LoadEpochs(ctx, above); err == nil {
		t.Fatal("LoadEpochs with a known value above 2^53: no error")
	}
	if _, err := s.BumpEpochs(ctx, above); err == nil {
		t.Fatal("BumpEpochs with a known value above 2^53: no error")
	}
	if _, _, err := s.ReadRecords(ctx, above, nil); err == nil {
		t.Fatal("ReadRecords with a known value above 2^53: no error")
	}
	if _, _, err := s.Invalidate(ctx, nil, above); err == nil {
		t.Fatal("Invalidate with a known value above 2^53: no error")
	}
	now := uint64(serverMicros(t, c))
	// want 0: not an epoch, replaced.
	for text, want := range map[string]uint64{
		"1":                  1, // below the clock, but an epoch: kept
		"9007199254740991":   maxEpoch,
		"9007199254740992":   0, // above 2^53-1
		"0123":               0,
		"0":                  0,
		"12.5":               0,
		" 12":                0,
		"99999999999999999":  0,
		"1234567890123456\n": 0,
	} {
		if err := c.Set(ctx, "ef:k", text, 0).Err(); err != nil {
			t.Fatal(err)
		}
		repairs := s.Repairs()
		got, err := s.LoadEpochs(ctx, []tier.EpochOp{{Key: "k"}})
		if err != nil {
			t.Fatalf("LoadEpochs of a key holding %q: %v", text, err)
		}
		if counted := s.Repairs() - repairs; counted != map[bool]uint64{true: 1, false: 0}[want == 0] {
			t.Fatalf("LoadEpochs of a key holding %q: %d repairs counted, want %d", text, counted, map[bool]uint64{true: 1, false: 0}[want == 0])
		}
		if want == 0 && got[0] < now {
			t.Fatalf("LoadEpochs of a key holding %q = %d, want it replaced by the server's clock (%d) or more", text, got[0], now)
		}
		if want != 0 && got[0] != want {
			t.Fatalf("LoadEpochs of a key holding %q = %d, want the epoch %d", text, got[0], want)
		}
	}
	// A known value is stored as decimal text too.
	got, err := s.LoadEpochs(ctx, []tier.EpochOp{{Key: "raised", Known: maxEpoch - 5}})
	if err != nil || got[0] < maxEpoch-5 {
		t.Fatalf("LoadEpochs with known 2^53-6 = (%v, %v)", got, err)
	}
	if v := c.Get(ctx, "ef:raised").Val(); v != strconv.FormatUint(got[0], 10) {
		t.Fatalf("epoch key holds %q, want %d", v, got[0])
	}
}

// Keys and lease keys of other types are removed (Repaired) by ReadRecords
// and overwritten by WriteRecords and Invalidate, never an error.
func TestRecordsReplaceWrongType(t *testing.T) {
	t.Parallel()
	c := singleClient(t, redistest.Start(t))
	s, err := New(c, Options{Prefix: "rt:"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// An entry key of another type: the read removes it and reports it.
	for _, k := range wrongTypes(t, c, "rt:", "{read}") {
		_, res, err := s.ReadRecords(ctx, nil, []tier.ReadOp{{Key: k}})
		if err != nil || res[0].Err != nil {
			t.Fatalf("ReadRecords of %q: %v %v", k, err, res)
		}
		if r := res[0]; r.Found || !r.Repaired || r.Leased {
			t.Fatalf("ReadRecords of %q = %+v, want a miss, Repaired", k, r)
		}
		if n := c.Exists(ctx, "rt:"+k).Val(); n != 0 {
			t.Fatalf("ReadRecords left the key %q of another type", k)
		}
	}
	// With a lease: the lease is taken in the same step.
	for _, k := range wrongTypes(t, c, "rt:", "{readlease}") {
		_, res, err := s.ReadRecords(ctx, nil, []tier.ReadOp{{Key: k, Lease: &tier.Lease{Key: "lk:" + k, Token: "a", TTL: time.Hour}}})
		if err != nil || res[0].Err != nil {
			t.Fatalf("ReadRecords of %q: %v %v", k, err, res)
		}
		if r := res[0]; r.Found || !r.Repaired || !r.Leased {
			t.Fatalf("ReadRecords of %q with a lease = %+v, want a miss, Repaired and the lease", k, r)
		}
	}
	// A lease key of another type: replaced by the new lease.
	for _, lk := range wrongTypes(t, c, "rt:", "lk:{lease}e") {
		_, res, err := s.ReadRecords(ctx, nil, []tier.ReadOp{{Key: "{lease}e", Lease: &tier.Lease{Key: lk, Token: "a", TTL: time.Hour}}})
		if err != nil || res[0].Err != nil {
			t.Fatalf("ReadRecords with the lease key %q: %v %v", lk, err, res)
		}
		if r := res[0]; !r.Repaired || !r.Leased {
			t.Fatalf("ReadRecords with a lease key of another type = %+v, want Repaired and the lease", r)
		}
		wantType(t, c, "rt:"+lk, "string")
		if v, ttl := c.Get(ctx, "rt:"+lk).Val(), c.PTTL(ctx, "rt:"+lk).Val(); v != "a" || ttl <= 0 {
			t.Fatalf("lease key %q = %q with PTTL %v, want the token with an expiry", lk, v, ttl)
		}
	}
	// So does TryLock, whether the key of another type has an expiry or not.
	for i, lk := range wrongTypes(t, c, "rt:", "lk:{trylock}e") {
		if i%2 == 0 {
			c.PExpire(ctx, "rt:"+lk, time.Hour)
		}
		if ok, err := s.TryLock(ctx, lk, "a", time.Hour); err != nil || !ok {
			t.Fatalf("TryLock of the lease key %q of another type = (%v, %v), want (true, nil)", lk, ok, err)
		}
		wantType(t, c, "rt:"+lk, "string")
		if v, ttl := c.Get(ctx, "rt:"+lk).Val(), c.PTTL(ctx, "rt:"+lk).Val(); v != "a" || ttl <= 0 {
			t.Fatalf("lease key %q = %q with PTTL %v, want the token with an expiry", lk, v, ttl)
		}
	}
	// Writes and tombstones overwrite keys of other types; a release whose
	// lease key is of another type is no error either.
	now := serverMicros(t, c)
	keys := wrongTypes(t, c, "rt:", "{write}")
	writes := make([]tier.RecordWrite, len(keys))
	for i, k := range keys {
		writes[i] = tier.RecordWrite{Key: k, Record: tier.AppendRecord(nil, tier.KindMarker, now, 0, nil), TTL: time.Hour}
	}
	lks := wrongTypes(t, c, "rt:", "lk:{write}")
	for i := range writes {
		writes[i].Release = &tier.Lease{Key: lks[i], Token: "a", TTL: time.Hour}
	}
	res, err := s.WriteRecords(ctx, writes)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Outcome != tier.Written || r.Err != nil {
			t.Fatalf("WriteRecords over %q of another type = %+v, want Written", keys[i], r)
		}
		want := writes[i].Record
		if want[1] == byte(tier.KindMarker) { // over nothing, a marker carries stamp 0 (tier.Landed)
			want = tier.Restamp(want, 0)
		}
		if v := c.Get(ctx, "rt:"+keys[i]).Val(); v != string(want) {
			t.Fatalf("%q holds %q after the write", keys[i], v)
		}
	}
	keys = wrongTypes(t, c, "rt:", "{tomb}")
	before := serverMicros(t, c)
	tombs := make([]tier.TombstoneOp, len(keys))
	for i, k := range keys {
		tombs[i] = tier.TombstoneOp{Key: k, TTL: time.Hour}
	}
	stamps, _, err := s.Invalidate(ctx, tombs, nil)
	if err != nil {
		t.Fatalf("Tombstone of keys of other types: %v", err)
	}
	for i, k := range keys {
		want := string(tier.AppendRecord(nil, tier.KindTombstone, stamps[i], 0, nil))
		if v := c.Get(ctx, "rt:"+k).Val(); v != want || stamps[i] < before {
			t.Fatalf("Tombstone of %q of another type: stamp %d (clock %d), key holds %q", k, stamps[i], before, v)
		}
	}
}

// Now and the stamps of tombstones are the server's clock (TIME), and the
// expiries are Redis expiries.
func TestRecordsUseServerClock(t *testing.T) {
	t.Parallel()
	c := singleClient(t, redistest.Start(t))
	s, err := New(c, Options{Prefix: "clk:"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	before := serverMicros(t, c)
	_, res, err := s.ReadRecords(ctx, nil, []tier.ReadOp{{Key: "k"}})
	if err != nil {
		t.Fatal(err)
	}
	tomb := []tier.TombstoneOp{{Key: "k", TTL: 1500 * time.Microsecond}}
	stamps, _, err := s.Invalidate(ctx, tomb, nil)
	if err != nil {
		t.Fatal(err)
	}
	after := serverMicros(t, c)
	if now := res[0].Now; now < before || now > after || stamps[0] < now || stamps[0] > after {
		t.Fatalf("Now %d and tombstone stamp %d, want them within the server's clock [%d, %d], in order", now, stamps[0], before, after)
	}
	// 1.5ms rounds up to 2ms, never down to none. On a loaded machine the
	// key may expire before PTTL reads it (0 or -2): write it again and read
	// again, so the bound is checked on a live key, not on the scheduler.
	for try := 0; ; try++ {
		ttl, err := c.PTTL(ctx, "clk:k").Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl <= 0 && ttl != -1 && try < 50 { // expired (-2) or expiring (0); -1 (no expiry) fails below
			if _, _, err := s.Invalidate(ctx, tomb, nil); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if ttl <= 0 || ttl > 2*time.Millisecond {
			t.Fatalf("tombstone with a TTL of 1.5ms has PTTL %v", ttl)
		}
		break
	}
}

// The scripts are sent by hash; a server that lost them (a restart, a new
// shard) gets them with the calls that need them, and no call runs twice:
// a lease taken twice by one read would read as held by someone else.
func TestScriptsReloadedWithoutRunningTwice(t *testing.T) {
	t.Parallel()
	single := singleClient(t, redistest.Start(t))
	cc := clusterClient(t, redistest.StartCluster(t, 3, 0))
	a, b := redistest.Start(t), redistest.Start(t)
	ring := goredis.NewRing(&goredis.RingOptions{
		Addrs:                 map[string]string{"a": a.Addr(), "b": b.Addr()},
		ContextTimeoutEnabled: true,
	})
	t.Cleanup(func() { _ = ring.Close() })

	// flushOne empties the script cache of one server of each client.
	flushOne := map[string]func(ctx context.Context) error{
		"single": func(ctx context.Context) error { return single.ScriptFlush(ctx).Err() },
		"cluster": func(ctx context.Context) error {
			var done atomic.Bool
			return cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
				if done.Swap(true) {
					return nil
				}
				return c.ScriptFlush(ctx).Err()
			})
		},
		"ring": func(ctx context.Context) error {
			var done atomic.Bool
			return ring.ForEachShard(ctx, func(ctx context.Context, c *goredis.Client) error {
				if done.Swap(true) {
					return nil
				}
				return c.ScriptFlush(ctx).Err()
			})
		},
	}
	clients := map[string]goredis.UniversalClient{"single": single, "cluster": cc, "ring": ring}
	for name, client := range clients {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s, err := New(client, Options{Prefix: "sc:"})
			if err != nil {
				t.Fatal(err)
			}
			keys := make([]string, 40)
			for i := range keys {
				keys[i] = fmt.Sprintf("{s%d}e", i)
			}
			for round := range 3 {
				// Round 0: no server knows the scripts; then one server
				// forgets them.
				if round > 0 {
					if err := flushOne[name](ctx); err != nil {
						t.Fatal(err)
					}
				}
				ops := make([]tier.ReadOp, len(keys))
				for i, k := range keys {
					ops[i] = tier.ReadOp{Key: k, Lease: &tier.Lease{Key: "lk:" + k, Token: fmt.Sprint(round), TTL: time.Hour}}
				}
				_, res, err := s.ReadRecords(ctx, nil, ops)
				if err != nil {
					t.Fatalf("round %d: ReadRecords: %v", round, err)
				}
				for i, r := range res {
					if r.Err != nil || !r.Leased {
						t.Fatalf("round %d: ReadRecords of %q = %+v, want the free lease taken", round, keys[i], r)
					}
				}
				writes := make([]tier.RecordWrite, len(keys))
				for i, k := range keys {
					writes[i] = tier.RecordWrite{Key: k, Record: tier.AppendRecord(nil, tier.KindValue, res[i].Now, 0, nil), Release: ops[i].Lease}
				}
				if err := flushOne[name](ctx); err != nil {
					t.Fatal(err)
				}
				out, err := s.WriteRecords(ctx, writes)
				if err != nil {
					t.Fatalf("round %d: WriteRecords: %v", round, err)
				}
				for i, r := range out {
					if r.Err != nil || r.Outcome != tier.Written {
						t.Fatalf("round %d: WriteRecords of %q = %+v, want Written", round, keys[i], r)
					}
				}
				if err := flushOne[name](ctx); err != nil {
					t.Fatal(err)
				}
				tombs := make([]tier.TombstoneOp, len(keys))
				for i, k := range keys {
					tombs[i] = tier.TombstoneOp{Key: k, TTL: time.Hour}
				}
				if _, _, err := s.Invalidate(ctx, tombs, nil); err != nil {
					t.Fatalf("round %d: Invalidate: %v", round, err)
				}
				epochs := make([]tier.EpochOp, len(keys))
				for i, k := range keys {
					epochs[i] = tier.EpochOp{Key: k + "epoch"}
				}
				if err := flushOne[name](ctx); err != nil {
					t.Fatal(err)
				}
				loaded, err := s.LoadEpochs(ctx, epochs)
				if err != nil {
					t.Fatalf("round %d: LoadEpochs: %v", round, err)
				}
				if err := flushOne[name](ctx); err != nil {
					t.Fatal(err)
				}
				for i := range epochs {
					epochs[i].Known = loaded[i]
				}
				if _, err := s.BumpEpochs(ctx, epochs); err != nil {
					t.Fatalf("round %d: BumpEpochs: %v", round, err)
				}
			}
		})
	}
}

// hourOps returns an epoch op for each key, with a TTL of an hour.
func hourOps(keys []string) []tier.EpochOp {
	ops := make([]tier.EpochOp, len(keys))
	for i, k := range keys {
		ops[i] = tier.EpochOp{Key: k, TTL: time.Hour}
	}
	return ops
}

// A batch of reads without leases on a single node is one MGET: it returns
// each key's bytes in order, misses as misses, keys of other types as
// misses too (the write of the reloaded value replaces them: see
// TestRecordsReplaceWrongType), and the store's clock on every result.
func TestBatchReadsKeepOrderAndReplaceWrongType(t *testing.T) {
	t.Parallel()
	c := singleClient(t, redistest.Start(t))
	s, err := New(c, Options{Prefix: "rb:"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	bad := wrongTypes(t, c, "rb:", "{bad}")
	var ops []tier.ReadOp
	want := map[int]string{}
	for i := range 20 {
		k := fmt.Sprintf("{k%d}", i)
		switch {
		case i%5 == 4 && len(bad) > 0:
			k, bad = bad[0], bad[1:]
		case i%3 == 0:
			want[i] = fmt.Sprintf("value %d", i)
			if err := c.Set(ctx, "rb:"+k, want[i], 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		ops = append(ops, tier.ReadOp{Key: k})
	}
	before := serverMicros(t, c)
	_, res, err := s.ReadRecords(ctx, nil, ops)
	if err != nil || len(res) != len(ops) {
		t.Fatalf("ReadRecords: %v, %d results for %d reads", err, len(res), len(ops))
	}
	for i, r := range res {
		wrongType := i%5 == 4
		switch {
		case r.Err != nil || r.Now < before:
			t.Fatalf("read %d (%q): %+v; want no error and the store's clock", i, ops[i].Key, r)
		case wrongType && r.Found:
			t.Fatalf("read %d of a key of another type: %+v; want a miss", i, r)
		case !wrongType && (r.Repaired || r.Found != (want[i] != "") || string(r.Value) != want[i]):
			t.Fatalf("read %d (%q) = %+v; want %q", i, ops[i].Key, r, want[i])
		}
	}
}
