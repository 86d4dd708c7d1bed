package redis

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/internal/redistest"
	"github.com/agentcache/agentcache-go/internal/testkit/wait"
	"github.com/agentcache/agentcache-go/tier"
)

// With WaitReplicas, an epoch bump and a tombstone return only once a
// replica of every master involved has acknowledged them; while the
// replicas are paused they fail (so the cache keeps the invalidation pending
// and retries it), and they succeed again once the replicas are back.
func TestWaitReplicasOnCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3, 1)
	o := c.ClusterOptions()
	o.ContextTimeoutEnabled = true
	cc := goredis.NewClusterClient(o)
	t.Cleanup(func() { _ = cc.Close() })
	s, err := New(cc, Options{Prefix: "wait:", WaitReplicas: 1, WaitTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// Keys on every master.
	epochs := make([]tier.EpochOp, 12)
	tombs := make([]tier.TombstoneOp, len(epochs))
	for i := range epochs {
		epochs[i] = tier.EpochOp{Key: fmt.Sprintf("ep:{user:%d}", i), TTL: time.Hour}
		tombs[i] = tier.TombstoneOp{Key: fmt.Sprintf("{user:%d}k", i), TTL: time.Hour}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.BumpEpochs(ctx, epochs); err != nil {
		t.Fatalf("BumpEpochs with healthy replicas: %v", err)
	}
	if _, _, err := s.Invalidate(ctx, tombs, epochs); err != nil {
		t.Fatalf("Invalidate with healthy replicas: %v", err)
	}

	var replicas []*redistest.Server
	for _, n := range c.Nodes() {
		if n.Role == redistest.RoleReplica {
			replicas = append(replicas, n.Server)
		}
	}
	if len(replicas) != 3 {
		t.Fatalf("%d replicas; want 3", len(replicas))
	}
	for _, r := range replicas {
		r.Pause()
	}
	_, berr := s.BumpEpochs(ctx, epochs)
	_, _, terr := s.Invalidate(ctx, tombs, nil)
	for _, r := range replicas {
		r.Resume()
	}
	for what, err := range map[string]error{"BumpEpochs": berr, "Invalidate": terr} {
		if err == nil || !strings.Contains(err.Error(), "replicas acknowledged") {
			t.Errorf("%s with every replica paused: %v; want an error saying the replicas did not acknowledge", what, err)
		}
	}
	wait.Until(t, 5*time.Second, func() string {
		if _, err := s.BumpEpochs(ctx, epochs); err != nil {
			return fmt.Sprintf("BumpEpochs after the replicas resumed: %v", err)
		}
		return ""
	})
}

// A single server without replicas cannot satisfy WaitReplicas: the call
// says so instead of pretending the write is on a replica. Loads and
// record writes (not invalidations) do not wait.
func TestWaitReplicasWithoutReplicas(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	o := srv.Options()
	o.ContextTimeoutEnabled = true
	client := goredis.NewClient(o)
	t.Cleanup(func() { _ = client.Close() })
	s, err := New(client, Options{Prefix: "wait1:", WaitReplicas: 1, WaitTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.BumpEpochs(ctx, []tier.EpochOp{{Key: "e", TTL: time.Hour}}); err == nil || !strings.Contains(err.Error(), "0 of 1 replicas") {
		t.Fatalf("BumpEpochs with no replica: %v; want an error naming the missing acknowledgement", err)
	}
	if _, err := s.LoadEpochs(ctx, []tier.EpochOp{{Key: "e", TTL: time.Hour}}); err != nil {
		t.Fatalf("LoadEpochs does not wait: %v", err)
	}
	if _, err := New(client, Options{WaitReplicas: -1}); err == nil {
		t.Fatal("New with a negative WaitReplicas: no error")
	}
}
