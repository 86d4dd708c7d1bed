package tiertest

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/tier"
)

func (s *suite) testEpochs(t *testing.T) {
	load := func(t *testing.T, e tier.Epochs, keys []string, fresh []uint64, ttl time.Duration) []uint64 {
		t.Helper()
		got, err := e.LoadEpochs(testCtx(t), keys, fresh, ttl)
		if err != nil {
			t.Fatalf("LoadEpochs(%q): %v", keys, err)
		}
		if len(got) != len(keys) {
			t.Fatalf("LoadEpochs returned %d values for %d keys", len(got), len(keys))
		}
		return got
	}
	store := func(t *testing.T, e tier.Epochs, keys []string, values []uint64, ttl time.Duration) {
		t.Helper()
		if err := e.StoreEpochs(testCtx(t), keys, values, ttl); err != nil {
			t.Fatalf("StoreEpochs(%q): %v", keys, err)
		}
	}

	t.Run("CreatesMissing", func(t *testing.T) {
		t.Parallel()
		e := s.open(t, "ep").(tier.Epochs)
		keys := []string{"global", "{user:1}res", "{user:2}res"}
		if got := load(t, e, keys, []uint64{11, 22, 33}, 0); !slices.Equal(got, []uint64{11, 22, 33}) {
			t.Fatalf("first LoadEpochs = %v, want the fresh values [11 22 33]", got)
		}
		// Later callers get the stored values, not their own fresh ones.
		if got := load(t, e, keys, []uint64{44, 55, 66}, 0); !slices.Equal(got, []uint64{11, 22, 33}) {
			t.Fatalf("second LoadEpochs = %v, want the stored values [11 22 33]", got)
		}
		// A mix of present and missing keys.
		got := load(t, e, []string{"{user:2}res", "new"}, []uint64{77, 88}, 0)
		if !slices.Equal(got, []uint64{33, 88}) {
			t.Fatalf("LoadEpochs of a present and a missing key = %v, want [33 88]", got)
		}
	})

	t.Run("DuplicateKeysAgree", func(t *testing.T) {
		t.Parallel()
		e := s.open(t, "epdup").(tier.Epochs)
		got := load(t, e, []string{"d", "d"}, []uint64{1, 2}, 0)
		if got[0] != got[1] {
			t.Fatalf("LoadEpochs([d d]) = %v: one key, two epochs", got)
		}
	})

	t.Run("Extremes", func(t *testing.T) {
		t.Parallel()
		e := s.open(t, "epext").(tier.Epochs)
		keys := []string{"zero", "one", "max"}
		want := []uint64{0, 1, math.MaxUint64}
		if got := load(t, e, keys, want, 0); !slices.Equal(got, want) {
			t.Fatalf("LoadEpochs = %v, want %v", got, want)
		}
		if got := load(t, e, keys, []uint64{5, 5, 5}, 0); !slices.Equal(got, want) {
			t.Fatalf("LoadEpochs after creating = %v, want %v", got, want)
		}
		store(t, e, keys, []uint64{math.MaxUint64, 0, 1}, 0)
		if got := load(t, e, keys, []uint64{5, 5, 5}, 0); !slices.Equal(got, []uint64{math.MaxUint64, 0, 1}) {
			t.Fatalf("LoadEpochs after StoreEpochs = %v", got)
		}
	})

	t.Run("ConcurrentFirstLoadsAgree", func(t *testing.T) {
		t.Parallel()
		e := s.open(t, "eprace").(tier.Epochs)
		ctx := testCtx(t)
		keys := []string{"a", "{b}", "{c}x"}
		const n = 20
		results := make([][]uint64, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				fresh := []uint64{uint64(g*10 + 1), uint64(g*10 + 2), uint64(g*10 + 3)}
				<-start
				got, err := e.LoadEpochs(ctx, keys, fresh, time.Hour)
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
			if v%10 != uint64(i+1) || v/10 >= n {
				t.Fatalf("key %q holds %d, which no caller offered", keys[i], v)
			}
		}
	})

	t.Run("StoreOverwrites", func(t *testing.T) {
		t.Parallel()
		e := s.open(t, "epstore").(tier.Epochs)
		load(t, e, []string{"k"}, []uint64{1}, 0)
		store(t, e, []string{"k", "fresh"}, []uint64{999, 7}, 0)
		if got := load(t, e, []string{"k", "fresh"}, []uint64{2, 3}, 0); !slices.Equal(got, []uint64{999, 7}) {
			t.Fatalf("LoadEpochs after StoreEpochs = %v, want [999 7]", got)
		}
	})

	t.Run("DeletedComesBackFresh", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "epdel")
		e := st.(tier.Epochs)
		ctx := testCtx(t)
		if got := load(t, e, []string{"k"}, []uint64{100}, 0); got[0] != 100 {
			t.Fatalf("LoadEpochs = %v, want [100]", got)
		}
		// Epoch keys are keys like any other: an eviction looks like Delete.
		if err := st.Delete(ctx, "k"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if got := load(t, e, []string{"k"}, []uint64{200}, 0); got[0] != 200 {
			t.Fatalf("LoadEpochs after the key was deleted = %v, want the new fresh value [200], never the old one", got)
		}
		if err := st.Clear(ctx); err != nil {
			t.Fatalf("Clear: %v", err)
		}
		if got := load(t, e, []string{"k"}, []uint64{300}, 0); got[0] != 300 {
			t.Fatalf("LoadEpochs after Clear = %v, want [300]", got)
		}
	})

	t.Run("TTL", func(t *testing.T) {
		t.Parallel()
		e := s.open(t, "epttl").(tier.Epochs)
		load(t, e, []string{"created"}, []uint64{1}, 100*time.Millisecond)
		store(t, e, []string{"stored"}, []uint64{1}, 100*time.Millisecond)
		store(t, e, []string{"forever"}, []uint64{1}, 0)
		for _, k := range []string{"created", "stored"} {
			eventually(t, "epoch "+k+" with a 100ms TTL expires", func() bool {
				return load(t, e, []string{k}, []uint64{2}, 0)[0] == 2
			})
		}
		if got := load(t, e, []string{"forever"}, []uint64{2}, 0); got[0] != 1 {
			t.Fatalf("epoch stored with ttl 0 = %d, want 1", got[0])
		}
	})

	t.Run("ManySlots", func(t *testing.T) {
		t.Parallel()
		e := s.open(t, "epmany").(tier.Epochs)
		keys := make([]string, 300)
		fresh := make([]uint64, len(keys))
		for i := range keys {
			keys[i] = fmt.Sprintf("{s%d}epoch", i)
			fresh[i] = uint64(i) + 1000
		}
		if got := load(t, e, keys, fresh, time.Hour); !slices.Equal(got, fresh) {
			t.Fatal("LoadEpochs over many slots did not return the fresh values")
		}
		for i := range fresh {
			fresh[i] += 1000
		}
		store(t, e, keys, fresh, time.Hour)
		if got := load(t, e, keys, make([]uint64, len(keys)), time.Hour); !slices.Equal(got, fresh) {
			t.Fatal("LoadEpochs over many slots did not return the stored values")
		}
	})

	t.Run("BadArguments", func(t *testing.T) {
		t.Parallel()
		e := s.open(t, "epbad").(tier.Epochs)
		ctx := testCtx(t)
		if _, err := e.LoadEpochs(ctx, []string{"a", "b"}, []uint64{1}, 0); err == nil {
			t.Error("LoadEpochs with more keys than fresh values: no error")
		}
		if err := e.StoreEpochs(ctx, []string{"a"}, []uint64{1, 2}, 0); err == nil {
			t.Error("StoreEpochs with fewer keys than values: no error")
		}
		got, err := e.LoadEpochs(ctx, nil, nil, 0)
		if err != nil || len(got) != 0 {
			t.Errorf("LoadEpochs of no keys = (%v, %v), want no values and no error", got, err)
		}
		if err := e.StoreEpochs(ctx, nil, nil, 0); err != nil {
			t.Errorf("StoreEpochs of no keys: %v", err)
		}
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
		eventually(t, "b takes the lease after a's expired", func() bool {
			return try(t, l, "TryLock", "k", "b", time.Hour)
		})
		expect(t, try(t, l, "Extend", "k", "a", time.Hour), false, "Extend by a after expiry")
		expect(t, try(t, l, "Unlock", "k", "a", 0), false, "Unlock by a after expiry")
		expect(t, try(t, l, "Unlock", "k", "b", 0), true, "Unlock by b")
	})

	t.Run("ExtendPushesExpiry", func(t *testing.T) {
		t.Parallel()
		l := s.open(t, "lockext").(tier.Locker)
		expect(t, try(t, l, "TryLock", "k", "a", 150*time.Millisecond), true, "TryLock by a")
		expect(t, try(t, l, "Extend", "k", "a", time.Hour), true, "Extend by a")
		time.Sleep(400 * time.Millisecond)
		expect(t, try(t, l, "TryLock", "k", "b", time.Hour), false, "TryLock by b after a extended its lease")
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
