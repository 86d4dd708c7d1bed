package agentcache

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/internal/redistest"
	"github.com/agentcache/agentcache-go/resource"
	acredis "github.com/agentcache/agentcache-go/tier/redis"
)

// tripLog describes each of trips: its command, or the size and first
// command of its pipeline.
func tripLog(trips []redistest.Trip) []string {
	var log []string
	for _, tr := range trips {
		if tr.Pipeline {
			log = append(log, fmt.Sprintf("pipeline of %d %s", len(tr.Cmds), tr.Cmds[0].Name()))
		} else {
			log = append(log, tr.Cmds[0].Name())
		}
	}
	return log
}

// crossSlotErrors counts the commands of trips that failed with CROSSSLOT.
func crossSlotErrors(trips []redistest.Trip) int {
	n := 0
	for _, tr := range trips {
		for _, c := range tr.Cmds {
			if c.Err() != nil && strings.Contains(c.Err().Error(), "CROSSSLOT") {
				n++
			}
		}
	}
	return n
}

// TestRedisClusterBatchOneRoundTripPerNode reads a 100-ID batch of a global
// resource — one hash slot per ID — from a 3-master cluster.
func TestRedisClusterBatchOneRoundTripPerNode(t *testing.T) {
	cl := redistest.StartCluster(t, 3, 0)
	rt := &redistest.RoundTrips{}
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
	waitFor(t, 5*time.Second, "the condition", func() bool { return writer.Stats().WritesDone >= 100 })

	// A second instance reads all 100 from L2.
	reader := newL1(t, Options{L2: store})
	br, _ := WrapBatch(reader, resource.Resource{Name: "get_products", TTL: time.Minute}, cat.get)
	// Warm the epochs (once the subscription is up, so they stay
	// confirmed) and the connections, then count one batch.
	waitFor(t, 5*time.Second, "the condition", func() bool { return reader.bus.resets.Load() >= 1 })
	br.GetMany(ctx, []int{-1})
	waitFor(t, 5*time.Second, "the condition", func() bool { return reader.Stats().WritesDone >= 1 }) // the probe's "not found" marker
	reader.l1.Clear()
	before := rt.Len()
	got, err := br.GetMany(ctx, ids)
	batch := rt.Since(before)
	trips := len(batch)
	if err != nil || len(got) != 100 || got[42] != "product-42" {
		t.Fatalf("GetMany from L2: %d values, %v", len(got), err)
	}
	if cat.callCount() != 2 { // the fill and the probe for -1
		t.Fatalf("tool calls = %d; the batch did not come from L2; writer %+v reader %+v", cat.callCount(), writer.Stats(), reader.Stats())
	}
	if s := reader.Stats(); s.L2Hits < 100 {
		t.Fatalf("L2 hits = %d", s.L2Hits)
	}
	if n := crossSlotErrors(rt.Trips()); n != 0 {
		t.Fatalf("%d CROSSSLOT errors", n)
	}
	if trips > 3 {
		t.Fatalf("100 keys over 3 masters took %d round trips, want at most one per master: %v", trips, tripLog(batch))
	}
	t.Logf("100-key batch from a 3-master cluster: %d round trips: %v", trips, tripLog(batch))
}
