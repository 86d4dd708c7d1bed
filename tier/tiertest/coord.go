package tiertest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/internal/testkit/wait"
	"github.com/agentcache/agentcache-go/tier"
)

func (s *suite) testEpochs(t *testing.T) {
	load := func(t *testing.T, e tier.Epochs, keys []string, known []uint64, ttl time.Duration) []uint64 {
		t.Helper()
		got, err := e.LoadEpochs(testCtx(t), epochOps(keys, known, ttl))
		if err != nil {
			t.Fatalf("LoadEpochs(%q, known %v): %v", keys, known, err)
		}
		if len(got) != len(keys) {
			t.Fatalf("LoadEpochs returned %d values for %d keys", len(got), len(keys))
		}
		for i, v := range got {
			if v < known[i] {
				t.Fatalf("LoadEpochs(%q) = %d, below the known value %d", keys[i], v, known[i])
			}
		}
		return got
	}
	bump := func(t *testing.T, e tier.Epochs, keys []string, known []uint64, ttl time.Duration) []uint64 {
		t.Helper()
		got, err := e.BumpEpochs(testCtx(t), epochOps(keys, known, ttl))
		if err != nil {
			t.Fatalf("BumpEpochs(%q, known %v): %v", keys, known, err)
		}
		if len(got) != len(keys) {
			t.Fatalf("BumpEpochs returned %d values for %d keys", len(got), len(keys))
		}
		for i, v := range got {
			if v <= known[i] {
				t.Fatalf("BumpEpochs(%q) = %d, not above the known value %d", keys[i], v, known[i])
			}
		}
		return got
	}
	zeros := func(n int) []uint64 { return make([]uint64, n) }
	// created fails t unless v is a value the store may create: positive,
	// and at or after its clock reading floor (0 when the store has no
	// clock the suite can read).
	created := func(t *testing.T, what string, v uint64, floor int64) {
		t.Helper()
		if v == 0 || v < uint64(floor) {
			t.Fatalf("%s = %d, want a new value: the store's clock (%d µs, read before) or more", what, v, floor)
		}
	}

	t.Run("CreatesMissing", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "ep")
		e := st.(tier.Epochs)
		keys := []string{"global", "{user:1}res", "{user:2}res"}
		floor := storeClock(t, st, keys...)
		first := load(t, e, keys, zeros(3), 0)
		for i, v := range first {
			created(t, fmt.Sprintf("first LoadEpochs of %q", keys[i]), v, floor[i])
		}
		// Later callers get the stored values; known values below them
		// change nothing.
		if got := load(t, e, keys, zeros(3), 0); !slices.Equal(got, first) {
			t.Fatalf("second LoadEpochs = %v, want the stored values %v", got, first)
		}
		if got := load(t, e, keys, []uint64{1, 1, 1}, 0); !slices.Equal(got, first) {
			t.Fatalf("LoadEpochs with known values below the stored ones = %v, want the stored values %v", got, first)
		}
		// A mix of present and missing keys.
		floor = storeClock(t, st, "new")
		got := load(t, e, []string{"{user:2}res", "new"}, zeros(2), 0)
		if got[0] != first[2] {
			t.Fatalf("LoadEpochs of a present key = %d, want the stored %d", got[0], first[2])
		}
		created(t, "LoadEpochs of a missing key next to a present one", got[1], floor[0])
	})

	t.Run("KnownRaisesLower", func(t *testing.T) {
		t.Parallel()
		e := s.open(t, "epknown").(tier.Epochs)
		v := load(t, e, []string{"k"}, zeros(1), 0)[0]
		// A store that holds less than a caller knows lost a write (a
		// failover, a restored backup): it is raised, and never lowers the
		// caller's value.
		raised := v + 1_000_000
		if got := load(t, e, []string{"k"}, []uint64{raised}, 0); got[0] != raised {
			t.Fatalf("LoadEpochs with known %d above the stored %d = %d, want the known value", raised, v, got[0])
		}
		if got := load(t, e, []string{"k"}, zeros(1), 0); got[0] != raised {
			t.Fatalf("LoadEpochs after a raise to %d = %d: the raise was not stored", raised, got[0])
		}
		// A missing key with a known value: never below it.
		far := v + 1_000_000_000_000
		lost := load(t, e, []string{"lost"}, []uint64{far}, 0)[0]
		if got := load(t, e, []string{"lost"}, zeros(1), 0); got[0] != lost {
			t.Fatalf("LoadEpochs of a key created from a known value = %d, want the stored %d", got[0], lost)
		}
	})

	t.Run("BumpGrows", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "epbump")
		e := st.(tier.Epochs)
		v := load(t, e, []string{"k"}, zeros(1), 0)[0]
		b1 := bump(t, e, []string{"k"}, zeros(1), 0)[0]
		if b1 <= v {
			t.Fatalf("BumpEpochs of a key holding %d = %d, want a greater value", v, b1)
		}
		if got := load(t, e, []string{"k"}, zeros(1), 0); got[0] != b1 {
			t.Fatalf("LoadEpochs after BumpEpochs = %d, want the bumped %d", got[0], b1)
		}
		// A stale known value (below what the key holds) still bumps past
		// the stored one.
		b2 := bump(t, e, []string{"k"}, []uint64{v}, 0)[0]
		if b2 <= b1 {
			t.Fatalf("BumpEpochs with a stale known value = %d, want more than the stored %d", b2, b1)
		}
		// A known value above the stored one: past that.
		ahead := b2 + 1_000_000_000
		b3 := bump(t, e, []string{"k"}, []uint64{ahead}, 0)[0]
		if got := load(t, e, []string{"k"}, zeros(1), 0); got[0] != b3 {
			t.Fatalf("LoadEpochs after BumpEpochs = %d, want the bumped %d", got[0], b3)
		}
		// A missing key is bumped to a new value after the store's clock.
		floor := storeClock(t, st, "missing")
		created(t, "BumpEpochs of a missing key", bump(t, e, []string{"missing"}, zeros(1), 0)[0], floor[0])
		bump(t, e, []string{"missing2"}, []uint64{ahead}, 0)
	})

	t.Run("DuplicateKeysAgree", func(t *testing.T) {
		t.Parallel()
		e := s.open(t, "epdup").(tier.Epochs)
		got := load(t, e, []string{"d", "d"}, zeros(2), 0)
		if got[0] != got[1] {
			t.Fatalf("LoadEpochs([d d]) = %v: one key, two epochs", got)
		}
		b := bump(t, e, []string{"d", "d"}, zeros(2), 0)
		if b[0] == b[1] || min(b[0], b[1]) <= got[0] {
			t.Fatalf("BumpEpochs([d d]) of a key holding %d = %v, want two bumps, each to a new value", got[0], b)
		}
		if now := load(t, e, []string{"d"}, zeros(1), 0); now[0] != max(b[0], b[1]) {
			t.Fatalf("LoadEpochs after BumpEpochs([d d]) = %d, want the later bump %d", now[0], max(b[0], b[1]))
		}
	})

	t.Run("ConcurrentFirstLoadsAgree", func(t *testing.T) {
		if s.opts.NotAtomic {
			t.Skip("the store's epochs are not atomic")
		}
		t.Parallel()
		st := s.open(t, "eprace")
		e := st.(tier.Epochs)
		ctx := testCtx(t)
		keys := []string{"a", "{b}", "{c}x"}
		floor := storeClock(t, st, keys...)
		const n = 20
		results := make([][]uint64, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				known := []uint64{uint64(g), uint64(g + 1), 0}
				<-start
				got, err := e.LoadEpochs(ctx, epochOps(keys, known, time.Hour))
				if err != nil {
					t.Errorf("LoadEpochs: %v", err)
					return
				}
				results[g] = got
			}()
		}
		close(start)
		wg.Wait()
		if t.Failed() {
			return
		}
		for g := range n {
			if !slices.Equal(results[g], results[0]) {
				t.Fatalf("goroutine %d loaded %v, goroutine 0 loaded %v: concurrent first loads disagree", g, results[g], results[0])
			}
		}
		for i, v := range results[0] {
			created(t, fmt.Sprintf("key %q", keys[i]), v, floor[i])
		}
	})

	t.Run("ConcurrentBumpsDistinct", func(t *testing.T) {
		if s.opts.NotAtomic {
			t.Skip("the store's epochs are not atomic")
		}
		t.Parallel()
		e := s.open(t, "epbumprace").(tier.Epochs)
		ctx := testCtx(t)
		start := load(t, e, []string{"k"}, zeros(1), 0)[0]
		const n = 20
		results := make([]uint64, n)
		var wg sync.WaitGroup
		gate := make(chan struct{})
		for g := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				got, err := e.BumpEpochs(ctx, []tier.EpochOp{{Key: "k", Known: start}})
				if err != nil {
					t.Errorf("BumpEpochs: %v", err)
					return
				}
				results[g] = got[0]
			}()
		}
		close(gate)
		wg.Wait()
		if t.Failed() {
			return
		}
		sorted := slices.Clone(results)
		slices.Sort(sorted)
		if sorted[0] <= start || len(slices.Compact(slices.Clone(sorted))) != n {
			t.Fatalf("%d concurrent bumps of a key holding %d returned %v, want %d distinct greater values", n, start, results, n)
		}
		if got := load(t, e, []string{"k"}, zeros(1), 0); got[0] != sorted[n-1] {
			t.Fatalf("LoadEpochs after concurrent bumps = %d, want the last bump %d", got[0], sorted[n-1])
		}
	})

	t.Run("DeletedComesBackNewer", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "epdel")
		e := st.(tier.Epochs)
		ctx := testCtx(t)
		load(t, e, []string{"k"}, zeros(1), 0)
		last := bump(t, e, []string{"k"}, zeros(1), 0)[0]
		// Epoch keys are keys like any other: an eviction looks like Delete.
		// A key that comes back must hold a new namespace, never an old one.
		if err := st.Delete(ctx, "k"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if got := load(t, e, []string{"k"}, zeros(1), 0)[0]; got <= last {
			t.Fatalf("LoadEpochs after the key was deleted = %d, want a value after every earlier one (%d)", got, last)
		}
		last = bump(t, e, []string{"k"}, zeros(1), 0)[0]
		if err := st.Clear(ctx); err != nil {
			t.Fatalf("Clear: %v", err)
		}
		if got := load(t, e, []string{"k"}, zeros(1), 0)[0]; got <= last {
			t.Fatalf("LoadEpochs after Clear = %d, want a value after every earlier one (%d)", got, last)
		} else {
			last = got
		}
		if err := st.Delete(ctx, "k"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if got := bump(t, e, []string{"k"}, zeros(1), 0)[0]; got <= last {
			t.Fatalf("BumpEpochs after the key was deleted = %d, want a value after every earlier one (%d)", got, last)
		}
	})

	t.Run("TTL", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "epttl")
		e := st.(tier.Epochs)
		ctx := testCtx(t)
		const short = 100 * time.Millisecond
		expiring := map[string]uint64{
			"created": load(t, e, []string{"created"}, zeros(1), short)[0],
			"bumped":  bump(t, e, []string{"bumped"}, zeros(1), short)[0],
		}
		forever := load(t, e, []string{"forever"}, zeros(1), 0)[0]
		// A bump with ttl 0 removes the expiry the key was created with.
		load(t, e, []string{"was-short"}, zeros(1), short)
		kept := bump(t, e, []string{"was-short"}, zeros(1), 0)[0]
		for k, old := range expiring {
			wait.For(t, 10*time.Second, "epoch "+k+" with a 100ms TTL expires", func() bool {
				_, ok := mustGet(t, ctx, st, k)
				return !ok
			})
			if got := load(t, e, []string{k}, zeros(1), 0)[0]; got <= old {
				t.Fatalf("LoadEpochs of the expired epoch %s = %d, want a value after the old %d", k, got, old)
			}
		}
		time.Sleep(2 * short)
		if got := load(t, e, []string{"forever"}, zeros(1), 0)[0]; got != forever {
			t.Fatalf("epoch created with ttl 0 = %d, want %d", got, forever)
		}
		if got := load(t, e, []string{"was-short"}, zeros(1), 0)[0]; got != kept {
			t.Fatalf("epoch bumped with ttl 0 = %d, want %d (the bump removes the expiry)", got, kept)
		}
	})

	t.Run("NotAnEpochIsReplaced", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "epbad")
		e := st.(tier.Epochs)
		ctx := testCtx(t)
		// Bytes no store keeps as an epoch; the suite can only write them
		// with Set (a store's tests add keys of other types).
		garbage := map[string][]byte{
			"text":   []byte("not an epoch"),
			"empty":  {},
			"binary": []byte("\x00\xff\x10garbage\r\n"),
			"sign":   []byte("-42"),
			"suffix": []byte("12x"),
			"record": tier.AppendRecord(nil, tier.KindValue, 5, 0, []byte("v")),
		}
		keys := slices.Sorted(maps.Keys(garbage))
		for _, k := range keys {
			mustSet(t, ctx, st, k, garbage[k], 0)
		}
		floor := storeClock(t, st, keys...)
		got := load(t, e, keys, zeros(len(keys)), 0)
		for i, k := range keys {
			created(t, "LoadEpochs of a key holding "+show(garbage[k]), got[i], floor[i])
			if v, _ := mustGet(t, ctx, st, k); string(v) == string(garbage[k]) {
				t.Fatalf("LoadEpochs of a key holding %s left it in place", show(v))
			}
		}
		if again := load(t, e, keys, zeros(len(keys)), 0); !slices.Equal(again, got) {
			t.Fatalf("LoadEpochs after replacing garbage = %v, want the created values %v", again, got)
		}
		// Bumps and known values replace garbage too.
		mustSet(t, ctx, st, "b", []byte("garbage"), 0)
		mustSet(t, ctx, st, "k", []byte("garbage"), 0)
		floor = storeClock(t, st, "b")
		b := bump(t, e, []string{"b"}, zeros(1), 0)[0]
		created(t, "BumpEpochs of a key holding garbage", b, floor[0])
		far := b + 1_000_000_000
		k := load(t, e, []string{"k"}, []uint64{far}, 0)[0]
		if again := load(t, e, []string{"b", "k"}, zeros(2), 0); again[0] != b || again[1] != k {
			t.Fatalf("LoadEpochs after replacing garbage = %v, want [%d %d]", again, b, k)
		}
	})

	t.Run("ManySlots", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "epmany")
		e := st.(tier.Epochs)
		keys := make([]string, 300)
		for i := range keys {
			keys[i] = fmt.Sprintf("{s%d}epoch", i)
		}
		floor := storeClock(t, st, keys...)
		first := load(t, e, keys, zeros(len(keys)), time.Hour)
		for i, v := range first {
			created(t, fmt.Sprintf("LoadEpochs of %q", keys[i]), v, floor[i])
		}
		if got := load(t, e, keys, zeros(len(keys)), time.Hour); !slices.Equal(got, first) {
			t.Fatal("LoadEpochs over many slots did not return the created values")
		}
		bumped := bump(t, e, keys, first, time.Hour)
		for i := range keys {
			if bumped[i] <= first[i] {
				t.Fatalf("BumpEpochs of %q holding %d = %d", keys[i], first[i], bumped[i])
			}
		}
		if got := load(t, e, keys, zeros(len(keys)), time.Hour); !slices.Equal(got, bumped) {
			t.Fatal("LoadEpochs over many slots did not return the bumped values")
		}
	})

	t.Run("PerOpTTL", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "epopttl")
		e := st.(tier.Epochs)
		ctx := testCtx(t)
		const short = 100 * time.Millisecond
		// One call mixes expiry classes: each op's key gets its own TTL.
		loaded, err := e.LoadEpochs(ctx, []tier.EpochOp{
			{Key: "load-short", TTL: short},
			{Key: "load-long", TTL: time.Hour},
			{Key: "load-forever"},
		})
		if err != nil {
			t.Fatalf("LoadEpochs with mixed TTLs: %v", err)
		}
		bumped, err := e.BumpEpochs(ctx, []tier.EpochOp{
			{Key: "bump-forever"},
			{Key: "bump-short", TTL: short},
			{Key: "bump-long", TTL: time.Hour},
		})
		if err != nil {
			t.Fatalf("BumpEpochs with mixed TTLs: %v", err)
		}
		for _, k := range []string{"load-short", "bump-short"} {
			wait.For(t, 10*time.Second, "epoch "+k+" with a 100ms TTL expires", func() bool {
				_, ok := mustGet(t, ctx, st, k)
				return !ok
			})
		}
		time.Sleep(2 * short)
		for k, want := range map[string]uint64{"load-long": loaded[1], "load-forever": loaded[2], "bump-forever": bumped[0], "bump-long": bumped[2]} {
			if got := load(t, e, []string{k}, zeros(1), 0)[0]; got != want {
				t.Fatalf("epoch %s with a long or no TTL = %d after the short ones expired, want %d", k, got, want)
			}
		}
	})

	t.Run("BumpNotices", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "epnotice")
		e := st.(tier.Epochs)
		b, ok := st.(tier.Broadcaster)
		if !ok {
			t.Skip("the store is not a tier.Broadcaster: it ignores notices")
		}
		ctx := testCtx(t)
		sub := s.subscribe(t, b, "ep")
		other := s.subscribe(t, b, "ep2")
		// A load publishes nothing, even with a Notice; a bump publishes
		// each op's notice with the value it made. The ops name one key, so
		// on a cluster every notice comes from one node, in order.
		if _, err := e.LoadEpochs(ctx, []tier.EpochOp{{Key: "{n}k", Notice: &tier.Notice{Channel: "ep", Before: []byte("load:")}}}); err != nil {
			t.Fatalf("LoadEpochs: %v", err)
		}
		got, err := e.BumpEpochs(ctx, []tier.EpochOp{
			{Key: "{n}k", Notice: &tier.Notice{Channel: "ep", Before: []byte("bump:"), After: []byte(":end")}},
			{Key: "{n}k"},
			{Key: "{n}k", Notice: &tier.Notice{Channel: "ep2"}},
			{Key: "{n}k", Notice: &tier.Notice{Channel: "ep", After: []byte("\x00after")}},
		})
		if err != nil {
			t.Fatalf("BumpEpochs with notices: %v", err)
		}
		want := []string{fmt.Sprintf("bump:%d:end", got[0]), fmt.Sprintf("%d\x00after", got[3])}
		for i, w := range want {
			if p := nextPayload(t, sub); p != w {
				t.Fatalf("notice %d on the channel = %q, want %q (a load publishes nothing)", i, p, w)
			}
		}
		if p := nextPayload(t, other); p != fmt.Sprint(got[2]) {
			t.Fatalf("notice on the other channel = %q, want %q", p, fmt.Sprint(got[2]))
		}
	})

	t.Run("BadArguments", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "epargs")
		e := st.(tier.Epochs)
		ctx := testCtx(t)
		for _, ops := range [][]tier.EpochOp{nil, {}} {
			got, err := e.LoadEpochs(ctx, ops)
			if err != nil || len(got) != 0 {
				t.Errorf("LoadEpochs of no keys = (%v, %v), want no values and no error", got, err)
			}
			got, err = e.BumpEpochs(ctx, ops)
			if err != nil || len(got) != 0 {
				t.Errorf("BumpEpochs of no keys = (%v, %v), want no values and no error", got, err)
			}
		}
		// A negative TTL in any op fails the whole call, which writes
		// nothing.
		bad := []tier.EpochOp{{Key: "neg-ok", TTL: time.Hour}, {Key: "neg", TTL: -time.Second}}
		if _, err := e.LoadEpochs(ctx, bad); err == nil {
			t.Error("LoadEpochs with a negative TTL: no error")
		}
		if _, err := e.BumpEpochs(ctx, bad); err == nil {
			t.Error("BumpEpochs with a negative TTL: no error")
		}
		wantMissing(t, ctx, st, "neg-ok")
		wantMissing(t, ctx, st, "neg")
	})
}

// next returns the next message of sub, failing t if none comes in time or
// the channel is closed.
func next(t *testing.T, sub tier.Subscription) tier.Message {
	t.Helper()
	select {
	case m, ok := <-sub.C():
		if !ok {
			t.Fatal("subscription channel closed unexpectedly")
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message within 10s")
	}
	panic("unreachable")
}

// nextPayload returns the next message, which must not be a Reset.
func nextPayload(t *testing.T, sub tier.Subscription) string {
	t.Helper()
	m := next(t, sub)
	if m.Reset {
		t.Fatal("unexpected Reset: the subscription was re-established during the test")
	}
	return string(m.Payload)
}

// waitClosed fails t unless sub's channel is closed soon, discarding any
// messages still buffered.
func waitClosed(t *testing.T, sub tier.Subscription) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-sub.C():
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("subscription channel not closed within 10s")
		}
	}
}

func (s *suite) subscribe(t *testing.T, b tier.Broadcaster, channel string) tier.Subscription {
	t.Helper()
	sub, err := b.Subscribe(testCtx(t), channel)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", channel, err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	if m := next(t, sub); !m.Reset || len(m.Payload) != 0 {
		t.Fatalf("first delivery = %+v, want a Reset with no payload", m)
	}
	return sub
}

func (s *suite) testBroadcaster(t *testing.T) {
	t.Run("InOrderToEverySubscriber", func(t *testing.T) {
		t.Parallel()
		prefix := s.newPrefix("bc")
		// Two stores on one prefix act as two instances of one application.
		a := s.openPrefix(t, prefix).(tier.Broadcaster)
		b := s.openPrefix(t, prefix).(tier.Broadcaster)
		subs := []tier.Subscription{
			s.subscribe(t, a, "inval"),
			s.subscribe(t, a, "inval"),
			s.subscribe(t, b, "inval"),
		}
		ctx := testCtx(t)
		const n = 200
		for i := range n {
			if err := b.Publish(ctx, "inval", fmt.Appendf(nil, "m%d", i)); err != nil {
				t.Fatalf("Publish: %v", err)
			}
		}
		for j, sub := range subs {
			for i := range n {
				if got, want := nextPayload(t, sub), fmt.Sprintf("m%d", i); got != want {
					t.Fatalf("subscriber %d: message %d = %q, want %q", j, i, got, want)
				}
			}
		}
	})

	t.Run("Payloads", func(t *testing.T) {
		t.Parallel()
		b := s.open(t, "bcpay").(tier.Broadcaster)
		sub := s.subscribe(t, b, "ch")
		ctx := testCtx(t)
		payloads := []string{"", "\x00\xff\r\n", "ünï", string(randomBytes(64 << 10))}
		for _, p := range payloads {
			if err := b.Publish(ctx, "ch", []byte(p)); err != nil {
				t.Fatalf("Publish: %v", err)
			}
		}
		for i, p := range payloads {
			if got := nextPayload(t, sub); got != p {
				t.Fatalf("payload %d = %s, want %s", i, show([]byte(got)), show([]byte(p)))
			}
		}
	})

	t.Run("ChannelAndPrefixIsolation", func(t *testing.T) {
		t.Parallel()
		mine := s.open(t, "bciso").(tier.Broadcaster)
		other := s.open(t, "bciso").(tier.Broadcaster)
		sub := s.subscribe(t, mine, "ch")
		ctx := testCtx(t)
		for _, p := range []struct {
			b       tier.Broadcaster
			channel string
		}{{mine, "ch2"}, {mine, "c"}, {mine, "*"}, {other, "ch"}} {
			if err := p.b.Publish(ctx, p.channel, []byte("leak")); err != nil {
				t.Fatalf("Publish: %v", err)
			}
		}
		if err := mine.Publish(ctx, "ch", []byte("end")); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		if got := nextPayload(t, sub); got != "end" {
			t.Fatalf("received %q: a message for another channel or prefix arrived", got)
		}
		select {
		case m := <-sub.C():
			if !m.Reset {
				t.Fatalf("received %q after the last message", m.Payload)
			}
		case <-time.After(100 * time.Millisecond):
		}
	})

	t.Run("PublishWithoutSubscribers", func(t *testing.T) {
		t.Parallel()
		b := s.open(t, "bcnone").(tier.Broadcaster)
		if err := b.Publish(testCtx(t), "nobody", []byte("m")); err != nil {
			t.Fatalf("Publish with no subscriber: %v", err)
		}
	})

	t.Run("CloseClosesC", func(t *testing.T) {
		t.Parallel()
		b := s.open(t, "bcclose").(tier.Broadcaster)
		sub := s.subscribe(t, b, "ch")
		keep := s.subscribe(t, b, "ch")
		if err := sub.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		waitClosed(t, sub)
		_ = sub.Close() // a second Close must not panic
		// The other subscription of the same channel is unaffected.
		if err := b.Publish(testCtx(t), "ch", []byte("still here")); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		if got := nextPayload(t, keep); got != "still here" {
			t.Fatalf("got %q", got)
		}
	})

	t.Run("StoreCloseEndsSubscriptions", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "bcstore")
		sub := s.subscribe(t, st.(tier.Broadcaster), "ch")
		if err := st.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		waitClosed(t, sub)
	})

	t.Run("SubscribeCancelled", func(t *testing.T) {
		t.Parallel()
		b := s.open(t, "bccancel").(tier.Broadcaster)
		ctx, cancel := context.WithCancel(testCtx(t))
		cancel()
		if sub, err := b.Subscribe(ctx, "ch"); err == nil {
			_ = sub.Close()
			t.Fatal("Subscribe with a cancelled context: no error")
		}
	})
}

func (s *suite) testLocker(t *testing.T) {
	try := func(t *testing.T, l tier.Locker, op, key, token string, ttl time.Duration) bool {
		t.Helper()
		ctx := testCtx(t)
		var ok bool
		var err error
		switch op {
		case "TryLock":
			ok, err = l.TryLock(ctx, key, token, ttl)
		case "Extend":
			ok, err = l.Extend(ctx, key, token, ttl)
		case "Unlock":
			ok, err = l.Unlock(ctx, key, token)
		}
		if err != nil {
			t.Fatalf("%s(%q, %q): %v", op, key, token, err)
		}
		return ok
	}
	expect := func(t *testing.T, got, want bool, what string) {
		t.Helper()
		if got != want {
			t.Fatalf("%s = %v, want %v", what, got, want)
		}
	}

	t.Run("ExclusiveAndTokenOnly", func(t *testing.T) {
		t.Parallel()
		l := s.open(t, "lock").(tier.Locker)
		expect(t, try(t, l, "TryLock", "k", "a", time.Hour), true, "TryLock by a on a free lease")
		expect(t, try(t, l, "TryLock", "k", "b", time.Hour), false, "TryLock by b on a's lease")
		expect(t, try(t, l, "TryLock", "k", "a", time.Hour), false, "TryLock by a on its own lease")
		expect(t, try(t, l, "Extend", "k", "b", time.Hour), false, "Extend by b")
		expect(t, try(t, l, "Unlock", "k", "b", 0), false, "Unlock by b")
		expect(t, try(t, l, "Extend", "k", "a", time.Hour), true, "Extend by a")
		expect(t, try(t, l, "Unlock", "k", "a", 0), true, "Unlock by a")
		expect(t, try(t, l, "Unlock", "k", "a", 0), false, "second Unlock by a")
		expect(t, try(t, l, "Extend", "k", "a", time.Hour), false, "Extend by a after Unlock")
		expect(t, try(t, l, "TryLock", "k", "b", time.Hour), true, "TryLock by b after a's Unlock")
		expect(t, try(t, l, "Extend", "free", "a", time.Hour), false, "Extend of a lease nobody holds")
		expect(t, try(t, l, "Unlock", "free", "a", 0), false, "Unlock of a lease nobody holds")
	})

	t.Run("ExpiryFreesTheLease", func(t *testing.T) {
		t.Parallel()
		l := s.open(t, "lockttl").(tier.Locker)
		expect(t, try(t, l, "TryLock", "k", "a", 100*time.Millisecond), true, "TryLock by a")
		wait.For(t, 10*time.Second, "b takes the lease after a's expired", func() bool {
			return try(t, l, "TryLock", "k", "b", time.Hour)
		})
		expect(t, try(t, l, "Extend", "k", "a", time.Hour), false, "Extend by a after expiry")
		expect(t, try(t, l, "Unlock", "k", "a", 0), false, "Unlock by a after expiry")
		expect(t, try(t, l, "Unlock", "k", "b", 0), true, "Unlock by b")
	})

	t.Run("ExtendPushesExpiry", func(t *testing.T) {
		t.Parallel()
		l := s.open(t, "lockext").(tier.Locker)
		// A lease long enough that a loaded machine still extends it in
		// time (150ms expired before the Extend in a CI run).
		expect(t, try(t, l, "TryLock", "k", "a", time.Second), true, "TryLock by a")
		expect(t, try(t, l, "Extend", "k", "a", time.Hour), true, "Extend by a")
		time.Sleep(1300 * time.Millisecond)
		expect(t, try(t, l, "TryLock", "k", "b", time.Hour), false, "TryLock by b after a extended its lease")
	})

	// A lease key without an expiry (planted by a bug, an operator or
	// anyone with access to the backend) would block its key until every
	// caller gave up: whoever asks for the lease takes it over, with an
	// expiry, and a lease with an expiry still holds.
	t.Run("NoExpiryLeaseTakenOver", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "locknottl")
		l := st.(tier.Locker)
		ctx := testCtx(t)
		mustSet(t, ctx, st, "k", []byte("stale"), 0)
		expect(t, try(t, l, "TryLock", "k", "a", time.Hour), true, "TryLock by a on a lease key that never expires")
		expect(t, try(t, l, "TryLock", "k", "b", time.Hour), false, "TryLock by b on the lease a took over")
		expect(t, try(t, l, "Unlock", "k", "a", 0), true, "Unlock by a of the lease it took over")
		// The lease taken over expires.
		mustSet(t, ctx, st, "e", []byte("stale"), 0)
		expect(t, try(t, l, "TryLock", "e", "a", 100*time.Millisecond), true, "TryLock by a (100ms) on a lease key that never expires")
		wait.For(t, 10*time.Second, "b takes the lease a took over once it expired", func() bool {
			return try(t, l, "TryLock", "e", "b", time.Hour)
		})
		// A lease with an expiry is a lease, whatever it holds.
		mustSet(t, ctx, st, "h", []byte("someone"), time.Hour)
		expect(t, try(t, l, "TryLock", "h", "a", time.Hour), false, "TryLock by a on a lease key with an expiry")

		f, ok := st.(tier.Fencer)
		if !ok || s.opts.NotAtomic {
			return
		}
		// The read path's lease and TryLock see each other's takeover as a
		// lease: each gave the key its expiry.
		mustSet(t, ctx, st, leaseOn("{r}k", "", 0).Key, []byte("stale"), 0)
		expect(t, try(t, l, "TryLock", leaseOn("{r}k", "", 0).Key, "a", time.Hour), true, "TryLock by a on the read path's lease key that never expires")
		if r := readLeased(t, f, "{r}k", "b", time.Hour); r.Leased || r.Repaired {
			t.Fatalf("ReadRecords by b after TryLock took the lease over = %+v, want no lease and no repair", r)
		}
		mustSet(t, ctx, st, leaseOn("{r}m", "", 0).Key, []byte("stale"), 0)
		if r := readLeased(t, f, "{r}m", "a", time.Hour); !r.Leased {
			t.Fatalf("ReadRecords by a with a lease key that never expires = %+v, want the lease taken", r)
		}
		expect(t, try(t, l, "TryLock", leaseOn("{r}m", "", 0).Key, "b", time.Hour), false, "TryLock by b on the lease ReadRecords took over")
	})

	t.Run("ExactlyOneHolder", func(t *testing.T) {
		t.Parallel()
		l := s.open(t, "lockrace").(tier.Locker)
		ctx := testCtx(t)
		const n, rounds = 50, 10
		for round := range rounds {
			key := fmt.Sprintf("k%d", round)
			var wins atomic.Int32
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					ok, err := l.TryLock(ctx, key, fmt.Sprintf("token-%d", i), time.Hour)
					if err != nil {
						t.Errorf("TryLock: %v", err)
					}
					if ok {
						wins.Add(1)
					}
				}()
			}
			close(start)
			wg.Wait()
			if got := wins.Load(); got != 1 {
				t.Fatalf("round %d: %d of %d concurrent TryLock calls won, want exactly 1", round, got, n)
			}
		}
	})
}

// epochOps returns an epoch op for each key, with its known value and ttl.
func epochOps(keys []string, known []uint64, ttl time.Duration) []tier.EpochOp {
	ops := make([]tier.EpochOp, len(keys))
	for i, k := range keys {
		ops[i] = tier.EpochOp{Key: k, Known: known[i], TTL: ttl}
	}
	return ops
}
