package redis

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/internal/redistest"
	"github.com/agentcache/agentcache-go/internal/testkit/wait"
	"github.com/agentcache/agentcache-go/tier"
)

// recv returns the next delivery of sub or fails t after 20s.
func recv(t *testing.T, sub tier.Subscription) tier.Message {
	t.Helper()
	select {
	case m, ok := <-sub.C():
		if !ok {
			t.Fatal("subscription closed")
		}
		return m
	case <-time.After(20 * time.Second):
		t.Fatal("no delivery within 20s")
	}
	return tier.Message{}
}

func mustSubscribe(t *testing.T, s *Store, channel string) tier.Subscription {
	t.Helper()
	sub, err := s.Subscribe(context.Background(), channel)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	if m := recv(t, sub); !m.Reset {
		t.Fatalf("first delivery %+v, want a Reset", m)
	}
	return sub
}

// publishUntilReceived publishes until sub receives a message (the
// subscription may still be re-establishing), skipping Resets.
func publishUntilReceived(t *testing.T, s *Store, sub tier.Subscription, channel, payload string) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		_ = s.Publish(ctx, channel, []byte(payload))
		select {
		case m, ok := <-sub.C():
			if !ok {
				t.Fatal("subscription closed")
			}
			if !m.Reset && string(m.Payload) == payload {
				return
			}
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("%q never arrived", payload)
}

func TestSubscriptionResetAfterReconnect(t *testing.T) {
	srv := redistest.Start(t)
	s, err := New(singleClient(t, srv), Options{Prefix: "ps:"})
	if err != nil {
		t.Fatal(err)
	}
	sub := mustSubscribe(t, s, "inval")
	ctx := context.Background()

	// The server drops the pub/sub connection (as the cache's tests do to
	// simulate a network blip): go-redis re-subscribes, we get a Reset.
	raw := srv.Client(t)
	if err := raw.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, sub); !m.Reset {
		t.Fatalf("after CLIENT KILL: %+v, want a Reset", m)
	}
	publishUntilReceived(t, s, sub, "inval", "after kill")

	// The server restarts: same story, once it is back.
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, sub); !m.Reset {
		t.Fatalf("after a restart: %+v, want a Reset", m)
	}
	publishUntilReceived(t, s, sub, "inval", "after restart")
}

func TestSubscriptionFollowsClusterFailover(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3, 1)
	s, err := New(clusterClient(t, c), Options{Prefix: "psc:"})
	if err != nil {
		t.Fatal(err)
	}
	// Find a channel served by master 0, so that killing it hits the
	// subscription's connection.
	cc := s.Client().(*goredis.ClusterClient)
	owners := slotOwners(t, cc)
	ctx := context.Background()
	var channel string
	for i := 0; channel == ""; i++ {
		ch := "inval" + strconv.Itoa(i)
		slot, err := cc.ClusterKeySlot(ctx, "psc:"+ch).Result()
		if err != nil {
			t.Fatal(err)
		}
		if sameAddr(owners[slot], c.Addrs()[0]) {
			channel = ch
		}
	}
	sub := mustSubscribe(t, s, channel)
	if _, err := c.KillMaster(0); err != nil {
		t.Fatal(err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := c.WaitForFailover(waitCtx); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, sub); !m.Reset {
		t.Fatalf("after failover: %+v, want a Reset", m)
	}
	publishUntilReceived(t, s, sub, channel, "after failover")
}

func TestSubscriptionGoroutinesStop(t *testing.T) {
	srv := redistest.Start(t)
	client := singleClient(t, srv)
	if err := client.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	s, err := New(client, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		mustSubscribe(t, s, fmt.Sprint("ch", i))
	}
	one := mustSubscribe(t, s, "one")
	if err := one.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 10*time.Second, func() string {
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			return fmt.Sprintf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
		}
		return ""
	})
	if err := client.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("the caller's client was closed with the store: %v", err)
	}
}

func TestSlowSubscriberGetsReset(t *testing.T) {
	srv := redistest.Start(t)
	s, err := New(singleClient(t, srv), Options{Prefix: "slow:", SubscriptionBuffer: 4})
	if err != nil {
		t.Fatal(err)
	}
	sub := mustSubscribe(t, s, "ch")
	ctx := context.Background()
	const n = 100
	for i := range n {
		if err := s.Publish(ctx, "ch", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	// Let the pump take in everything published, while nobody reads.
	time.Sleep(300 * time.Millisecond)
	resets, last := 0, -1
	for len(sub.C()) > 0 {
		m := <-sub.C()
		if m.Reset {
			resets++
			continue
		}
		i, _ := strconv.Atoi(string(m.Payload))
		if i <= last {
			t.Fatalf("message %d after %d: out of order", i, last)
		}
		last = i
	}
	if resets == 0 {
		t.Fatalf("%d messages into a buffer of 4 with nobody reading: no Reset", n)
	}
	publishUntilReceived(t, s, sub, "ch", "caught up")
}

func TestSubscribeServerDown(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s, err := New(singleClient(t, srv), Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	if sub, err := s.Subscribe(ctx, "ch"); err == nil {
		_ = sub.Close()
		t.Fatal("Subscribe with the server down: no error")
	} else {
		t.Logf("Subscribe with the server down: %v after %v", err, time.Since(start).Round(time.Millisecond))
	}
	if err := s.Publish(ctx, "ch", []byte("m")); err == nil {
		t.Fatal("Publish with the server down: no error")
	}
}
