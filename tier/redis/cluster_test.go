package redis

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/internal/redistest"
	"github.com/agentcache/agentcache-go/tier"
)

// nodeTrips returns the pipelines and the single commands that r saw sent
// to each node since its last Reset.
func nodeTrips(r *redistest.RoundTrips) (pipelines, commands map[string]int) {
	pipelines, commands = map[string]int{}, map[string]int{}
	for _, trip := range r.Trips() {
		if trip.Pipeline {
			pipelines[trip.Addr]++
		} else {
			commands[trip.Addr]++
		}
	}
	return pipelines, commands
}

func TestClusterBatchesOneRoundTripPerMaster(t *testing.T) {
	t.Parallel()
	const masters = 3
	c := redistest.StartCluster(t, masters, 0)
	o := c.ClusterOptions()
	o.ContextTimeoutEnabled = true
	cc := goredis.NewClusterClient(o)
	t.Cleanup(func() { _ = cc.Close() })
	rt := &redistest.RoundTrips{}
	rt.Install(cc)

	s, err := New(cc, Options{Prefix: "rt:"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Set(ctx, "warm-up", []byte("v"), 0); err != nil { // loads the slot map
		t.Fatal(err)
	}

	// 100 keys with 100 different hash tags land on every master.
	keys := make([]string, 100)
	writes := make([]tier.Write, len(keys))
	epochs := make([]tier.EpochOp, len(keys))
	for i := range keys {
		keys[i] = fmt.Sprintf("{user:%d}cart", i)
		writes[i] = tier.Write{Key: keys[i], Value: []byte(keys[i]), TTL: time.Minute, IfAbsent: i%2 == 0}
	}
	for i := range keys {
		epochs[i] = tier.EpochOp{Key: fmt.Sprintf("{user:%d}epoch", i), Known: uint64(i), TTL: time.Minute}
	}
	tombs := make([]tier.TombstoneOp, len(keys))
	for i, k := range keys {
		tombs[i] = tier.TombstoneOp{Key: k, TTL: time.Minute}
	}
	reads := make([]tier.ReadOp, len(keys))
	records := make([]tier.RecordWrite, len(keys))
	for i, k := range keys {
		// An entry and its lease share the entry's hash tag, so the
		// script that reads one and takes the other runs on one slot.
		lease := &tier.Lease{Key: "lk:" + k, Token: "t", TTL: time.Minute}
		reads[i] = tier.ReadOp{Key: k, Lease: lease}
		records[i] = tier.RecordWrite{Key: k, Record: tier.AppendRecord(nil, tier.KindValue, 1, 0, []byte(k)), TTL: time.Minute, Release: lease}
	}
	// Steady state: the pipeline connections to every node exist (opening
	// one costs its own handshake round trips, which are not the batch's),
	// and every node knows the scripts (loading one is not the batch's
	// either).
	if _, err := s.GetMulti(ctx, keys); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadEpochs(ctx, epochs); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BumpEpochs(ctx, epochs); err != nil {
		t.Fatal(err)
	}
	warmTombs := make([]tier.TombstoneOp, len(keys))
	warmReads := make([]tier.ReadOp, len(keys))
	warmWrites := make([]tier.RecordWrite, len(keys))
	for i := range keys {
		warm := fmt.Sprintf("{user:%d}warm", i)
		warmTombs[i] = tier.TombstoneOp{Key: warm, TTL: time.Minute}
		warmReads[i] = tier.ReadOp{Key: warm}
		warmWrites[i] = tier.RecordWrite{Key: warm, Record: tier.AppendRecord(nil, tier.KindValue, 1, 0, nil), TTL: time.Minute}
	}
	if _, _, err := s.ReadRecords(ctx, nil, warmReads); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteRecords(ctx, warmWrites); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Invalidate(ctx, warmTombs, nil); err != nil {
		t.Fatal(err)
	}
	check := func(op string, call func() error) {
		t.Helper()
		rt.Reset()
		if err := call(); err != nil {
			t.Fatalf("%s of 100 keys over %d masters: %v", op, masters, err)
		}
		pipelines, commands := nodeTrips(rt)
		total := 0
		for addr, n := range pipelines {
			total += n
			if n != 1 {
				t.Errorf("%s: %d pipelines to %s, want 1", op, n, addr)
			}
		}
		if total > masters || total < 2 {
			t.Errorf("%s: %d pipelines, want one per master touched (at most %d)", op, total, masters)
		}
		if len(commands) > 0 {
			t.Errorf("%s: sent single commands %v besides its pipelines", op, commands)
		}
		t.Logf("%s: %d round trips %v", op, total, pipelines)
	}
	check("SetMulti", func() error {
		errs, err := s.SetMulti(ctx, writes)
		for i, e := range errs {
			if e != nil {
				return fmt.Errorf("write %d: %w", i, e)
			}
		}
		return err
	})
	check("GetMulti", func() error {
		got, err := s.GetMulti(ctx, keys)
		if err != nil {
			return err
		}
		for i, l := range got {
			if l.Err != nil || !l.Found || string(l.Value) != keys[i] {
				return fmt.Errorf("lookup %d = %+v", i, l)
			}
		}
		return nil
	})
	check("LoadEpochs", func() error {
		_, err := s.LoadEpochs(ctx, epochs)
		return err
	})
	check("BumpEpochs", func() error {
		_, err := s.BumpEpochs(ctx, epochs)
		return err
	})
	check("Delete", func() error { return s.Delete(ctx, keys...) })
	check("ReadRecords", func() error {
		vals, got, err := s.ReadRecords(ctx, epochs, reads)
		if err != nil {
			return err
		}
		if len(vals) != len(epochs) {
			return fmt.Errorf("%d epoch values for %d epochs", len(vals), len(epochs))
		}
		for i, r := range got {
			if r.Err != nil || !r.Leased {
				return fmt.Errorf("read %d = %+v", i, r)
			}
		}
		return nil
	})
	check("WriteRecords", func() error {
		got, err := s.WriteRecords(ctx, records)
		if err != nil {
			return err
		}
		for i, r := range got {
			if r.Err != nil || r.Outcome != tier.Written {
				return fmt.Errorf("write %d = %+v", i, r)
			}
		}
		return nil
	})
	check("Invalidate", func() error {
		_, _, err := s.Invalidate(ctx, tombs, epochs)
		return err
	})
}

// slotOwners maps every hash slot to the address of the master serving it.
func slotOwners(t *testing.T, cc *goredis.ClusterClient) []string {
	t.Helper()
	slots, err := cc.ClusterSlots(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	owners := make([]string, 16384)
	for _, r := range slots {
		for s := r.Start; s <= r.End; s++ {
			owners[s] = r.Nodes[0].Addr
		}
	}
	return owners
}

func TestClusterNodeFailureIsPerKey(t *testing.T) {
	// A long node timeout keeps the other masters from declaring the paused
	// one failed (and the cluster down) while the test runs.
	c := redistest.StartCluster(t, 3, 0, redistest.Config{Args: []string{
		"cluster-node-timeout 30000",
		"cluster-require-full-coverage no",
	}})
	o := c.ClusterOptions()
	o.ContextTimeoutEnabled = true
	o.ReadTimeout = 300 * time.Millisecond
	o.WriteTimeout = 300 * time.Millisecond
	o.MaxRedirects = 1
	cc := goredis.NewClusterClient(o)
	t.Cleanup(func() { _ = cc.Close() })
	s, err := New(cc, Options{Prefix: "fail:"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	keys := make([]string, 60)
	var writes []tier.Write
	for i := range keys {
		keys[i] = fmt.Sprintf("{k%d}", i)
		writes = append(writes, tier.Write{Key: keys[i], Value: []byte(keys[i])})
	}
	if errs, err := s.SetMulti(ctx, writes); err != nil || firstNonNil(errs) != nil {
		t.Fatalf("SetMulti: %v %v", err, firstNonNil(errs))
	}

	owners := slotOwners(t, cc)
	var victim *redistest.Server
	for _, n := range c.Nodes() {
		if n.Role == redistest.RoleMaster {
			victim = n.Server
			break
		}
	}
	onVictim := func(key string) bool {
		slot, err := cc.ClusterKeySlot(ctx, "fail:"+key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return sameAddr(owners[slot], victim.Addr())
	}
	down := map[string]bool{}
	for _, k := range keys {
		down[k] = onVictim(k)
	}

	victim.Pause()
	defer victim.Resume()

	got, err := s.GetMulti(ctx, keys)
	if err != nil {
		t.Fatalf("GetMulti with one master paused: whole-call error %v, want per-key errors", err)
	}
	nDown := 0
	for i, k := range keys {
		l := got[i]
		if down[k] {
			nDown++
			if l.Err == nil {
				t.Errorf("key %q on the paused master: no error (%+v)", k, l)
			} else if !strings.HasPrefix(l.Err.Error(), "redis: get multi: ") {
				t.Errorf("key %q: error %q lacks the operation", k, l.Err)
			}
			continue
		}
		if l.Err != nil || !l.Found || string(l.Value) != k {
			t.Errorf("key %q on a healthy master = %+v, want its value", k, l)
		}
	}
	if nDown == 0 || nDown == len(keys) {
		t.Fatalf("%d of %d keys on the paused master: the test needs some on each side", nDown, len(keys))
	}

	// The records of the same keys: per-key errors too.
	ops := make([]tier.ReadOp, len(keys))
	for i, k := range keys {
		ops[i] = tier.ReadOp{Key: k, Lease: &tier.Lease{Key: "lk:" + k, Token: "t", TTL: time.Minute}}
	}
	_, reads, err := s.ReadRecords(ctx, nil, ops)
	if err != nil {
		t.Fatalf("ReadRecords with one master paused: whole-call error %v, want per-key errors", err)
	}
	recs := make([]tier.RecordWrite, len(keys))
	for i, k := range keys {
		r := reads[i]
		if down[k] {
			if r.Err == nil {
				t.Errorf("read of %q on the paused master: no error (%+v)", k, r)
			} else if !strings.HasPrefix(r.Err.Error(), "redis: read records: ") {
				t.Errorf("read of %q: error %q lacks the operation", k, r.Err)
			}
		} else if r.Err != nil || !r.Found || string(r.Value) != k || r.Now <= 0 {
			t.Errorf("read of %q on a healthy master = %+v, want its bytes and the clock", k, r)
		}
		recs[i] = tier.RecordWrite{Key: k, Record: tier.AppendRecord(nil, tier.KindValue, r.Now, 0, []byte(k))}
	}
	results, err := s.WriteRecords(ctx, recs)
	if err != nil {
		t.Fatalf("WriteRecords with one master paused: whole-call error %v, want per-write errors", err)
	}
	for i, k := range keys {
		r := results[i]
		if down[k] != (r.Outcome == tier.Failed && r.Err != nil) {
			t.Errorf("record write of %q (on paused master: %v) = %+v", k, down[k], r)
		}
	}

	for i := range writes {
		writes[i].Value = []byte("new")
	}
	errs, err := s.SetMulti(ctx, writes)
	if err != nil {
		t.Fatalf("SetMulti with one master paused: whole-call error %v", err)
	}
	for i, w := range writes {
		if down[w.Key] != (errs[i] != nil) {
			t.Errorf("write %q (on paused master: %v): error %v", w.Key, down[w.Key], errs[i])
		}
	}

	victim.Resume()
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.WaitForFailover(waitCtx); err != nil {
		t.Fatal(err)
	}
	// Everything works again, and the failed writes really did not happen
	// on the paused node, or happened completely.
	got, err = s.GetMulti(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		if got[i].Err != nil || !got[i].Found {
			t.Errorf("after Resume, key %q = %+v", k, got[i])
		}
	}
}

func sameAddr(a, b string) bool {
	ha, pa, _ := net.SplitHostPort(a)
	hb, pb, _ := net.SplitHostPort(b)
	if pa != pb {
		return false
	}
	norm := func(h string) string {
		if h == "localhost" || h == "" {
			return "127.0.0.1"
		}
		return h
	}
	return norm(ha) == norm(hb)
}

func firstNonNil(errs []error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func TestClusterClearEveryMaster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3, 0)
	cc := clusterClient(t, c)
	ctx := context.Background()
	a, _ := New(cc, Options{Prefix: "a:"})
	b, _ := New(cc, Options{Prefix: "ab:"})
	var writes []tier.Write
	for i := range 3000 {
		writes = append(writes, tier.Write{Key: fmt.Sprintf("{%d}", i), Value: []byte("v")})
	}
	for _, s := range []*Store{a, b} {
		if _, err := s.SetMulti(ctx, writes); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Clear(ctx); err != nil {
		t.Fatalf("Clear on a cluster: %v", err)
	}
	// Count on every node, replicas included (there are none here).
	var left, kept int
	for _, addr := range c.Addrs() {
		node := goredis.NewClient(&goredis.Options{Addr: addr, Password: c.ClusterOptions().Password})
		for _, p := range []struct {
			pattern string
			n       *int
		}{{"a:*", &left}, {"ab:*", &kept}} {
			iter := node.Scan(ctx, 0, p.pattern, 1000).Iterator()
			for iter.Next(ctx) {
				*p.n++
			}
			if err := iter.Err(); err != nil {
				t.Fatal(err)
			}
		}
		_ = node.Close()
	}
	if left != 0 || kept != len(writes) {
		t.Fatalf("after Clear of prefix a: %d keys left under a:, %d under ab: (want 0 and %d)", left, kept, len(writes))
	}
}
