package agentcache

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/internal/redistest"
	"github.com/agentcache/agentcache-go/resource"
	acredis "github.com/agentcache/agentcache-go/tier/redis"
)

// roundTrips counts what reaches the nodes: pipelines and single commands.
type roundTrips struct {
	pipelines, commands atomic.Int64
	crossslot           atomic.Int64
	mu                  sync.Mutex
	log                 []string
}

func (r *roundTrips) note(s string) {
	r.mu.Lock()
	r.log = append(r.log, s)
	r.mu.Unlock()
}

func (r *roundTrips) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (r *roundTrips) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		r.commands.Add(1)
		r.note(cmd.Name())
		err := next(ctx, cmd)
		if err != nil && strings.Contains(err.Error(), "CROSSSLOT") {
			r.crossslot.Add(1)
		}
		return err
	}
}
func (r *roundTrips) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		r.pipelines.Add(1)
		r.note(fmt.Sprintf("pipeline of %d %s", len(cmds), cmds[0].Name()))
		err := next(ctx, cmds)
		for _, c := range cmds {
			if c.Err() != nil && strings.Contains(c.Err().Error(), "CROSSSLOT") {
				r.crossslot.Add(1)
			}
		}
		return err
	}
}

// TestRedisClusterBatchOneRoundTripPerNode reads a 100-ID batch of a global
// resource — one hash slot per ID — from a 3-master cluster.
func TestRedisClusterBatchOneRoundTripPerNode(t *testing.T) {
	cl := redistest.StartCluster(t, 3, 0)
	rt := &roundTrips{}
	opts := cl.ClusterOptions()
	opts.OnConnect = nil
	client := goredis.NewClusterClient(opts)
	t.Cleanup(func() { client.Close() })
	client.OnNewNode(func(n *goredis.Client) { n.AddHook(rt) })
	store, err := acredis.New(client, acredis.Options{Prefix: "batch:"})
	if err != nil {
		t.Fatal(err)
	}
	writer := newL1(t, Options{L2: store})
	cat := &catalog{}
	bw, _ := WrapBatch(writer, resource.Resource{Name: "get_products", TTL: time.Minute}, cat.get)
	ids := make([]int, 100)
	for i := range ids {
		ids[i] = i
	}
	ctx := context.Background()
	if got, err := bw.GetMany(ctx, ids); err != nil || len(got) != 100 {
		t.Fatalf("filling GetMany: %d values, %v", len(got), err)
	}
	waitFor(t, func() bool { return writer.Stats().WritesDone >= 100 })

	// A second instance reads all 100 from L2.
	reader := newL1(t, Options{L2: store})
	br, _ := WrapBatch(reader, resource.Resource{Name: "get_products", TTL: time.Minute}, cat.get)
	// Warm the epochs (once the subscription is up, so they stay
	// confirmed) and the connections, then count one batch.
	waitFor(t, func() bool { return reader.bus.resets.Load() >= 1 })
	br.GetMany(ctx, []int{-1})
	waitFor(t, func() bool { return reader.Stats().WritesDone >= 1 }) // the probe's "not found" marker
	reader.l1.Clear()
	rt.mu.Lock()
	rt.log = nil
	rt.mu.Unlock()
	before := rt.pipelines.Load() + rt.commands.Load()
	got, err := br.GetMany(ctx, ids)
	trips := rt.pipelines.Load() + rt.commands.Load() - before
	if err != nil || len(got) != 100 || got[42] != "product-42" {
		t.Fatalf("GetMany from L2: %d values, %v", len(got), err)
	}
	if cat.callCount() != 2 { // the fill and the probe for -1
		t.Fatalf("tool calls = %d; the batch did not come from L2; writer %+v reader %+v", cat.callCount(), writer.Stats(), reader.Stats())
	}
	if s := reader.Stats(); s.L2Hits < 100 {
		t.Fatalf("L2 hits = %d", s.L2Hits)
	}
	if rt.crossslot.Load() != 0 {
		t.Fatalf("%d CROSSSLOT errors", rt.crossslot.Load())
	}
	if trips > 3 {
		t.Fatalf("100 keys over 3 masters took %d round trips, want at most one per master: %v", trips, rt.log)
	}
	t.Logf("100-key batch from a 3-master cluster: %d round trips: %v", trips, rt.log)
}
