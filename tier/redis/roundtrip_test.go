package redis

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/internal/redistest"
	"github.com/agentcache/agentcache-go/tier"
)

// tripCounts returns the round trips of r since its last Reset per server,
// as issue 15 counts them: one per ProcessHook or ProcessPipelineHook call.
// The slot-map loads of a cluster client (CLUSTER ...) are the client's own,
// not a call's, and are left out. It also returns what each trip sent.
func tripCounts(r *redistest.RoundTrips) (map[string]int, string) {
	n := map[string]int{}
	what := map[string][]string{}
	for _, trip := range r.Trips() {
		names := slices.DeleteFunc(trip.Names(), func(name string) bool { return name == "cluster" })
		if len(names) == 0 {
			continue
		}
		n[trip.Addr]++
		what[trip.Addr] = append(what[trip.Addr], strings.Join(names, " "))
	}
	return n, fmt.Sprint(what)
}

// expectTrips runs fn and fails t unless it cost want round trips (as
// tripCounts counts them) on each of the servers named, and none on any
// other.
func expectTrips(t *testing.T, r *redistest.RoundTrips, what string, want map[string]int, fn func()) {
	t.Helper()
	r.Reset()
	fn()
	got, sent := tripCounts(r)
	if !maps.Equal(got, want) {
		t.Errorf("%s: round trips %v, want %v (sent %s)", what, got, want, sent)
	}
}

// serverStat returns the field of an INFO section line (e.g. "calls" of
// "cmdstat_eval") as a number, 0 when the line is absent.
func serverStat(t *testing.T, c *goredis.Client, section, line, field string) int {
	t.Helper()
	info, err := c.Info(context.Background(), section).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(info, "\r\n") {
		rest, ok := strings.CutPrefix(l, line+":")
		if !ok {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, field+"="); ok {
				n, _ := strconv.Atoi(v)
				return n
			}
		}
	}
	return 0
}

// The calls of the hit, miss and invalidation paths cost one round trip
// each, also on a server that never saw their scripts (the first use
// carries the script's body), and also when the reader does not know the
// epochs yet (they come with the read).
func TestRoundTripsSingle(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	client := singleClient(t, srv)
	tr := &redistest.RoundTrips{}
	client.AddHook(tr.Node("server"))
	admin := singleClient(t, srv) // INFO, SCRIPT FLUSH and the subscriber: not counted
	listener, err := New(admin, Options{Prefix: "rt:"})
	if err != nil {
		t.Fatal(err)
	}
	sub := mustSubscribe(t, listener, "n")
	s, err := New(client, Options{Prefix: "rt:"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	warm(t, client) // the connections' handshakes are no call's
	one := map[string]int{"server": 1}
	notice := func(before string) *tier.Notice {
		return &tier.Notice{Channel: "n", Before: []byte(before), After: []byte(";")}
	}
	wantNotice := func(want string) {
		t.Helper()
		if m := recv(t, sub); m.Reset || string(m.Payload) != want {
			t.Fatalf("notice %+v, want %q", m, want)
		}
	}
	epochs := []tier.EpochOp{{Key: "{u1}e", TTL: time.Hour}, {Key: "g:e", TTL: time.Minute}}
	lease := &tier.Lease{Key: "lk:{u1}k", Token: "a", TTL: time.Minute}
	calls := func(round string) {
		var vals []uint64
		var reads []tier.ReadResult
		expectTrips(t, tr, round+"ReadRecords of 2 epochs and 1 key with a lease", one, func() {
			var err error
			vals, reads, err = s.ReadRecords(ctx, epochs, []tier.ReadOp{{Key: "{u1}k", Lease: lease, Gen: 5}})
			if err != nil || len(vals) != 2 || len(reads) != 1 || reads[0].Err != nil || !reads[0].Leased {
				t.Fatalf("ReadRecords = (%v, %+v, %v), want the epochs and the lease", vals, reads, err)
			}
		})
		expectTrips(t, tr, round+"WriteRecords with a release and a notice", one, func() {
			w := tier.RecordWrite{Key: "{u1}k", Record: tier.AppendRecord(nil, tier.KindValue, reads[0].Now, 5, []byte("v")),
				TTL: time.Minute, Release: lease, Notice: notice("w")}
			out, err := s.WriteRecords(ctx, []tier.RecordWrite{w})
			if err != nil || out[0].Outcome != tier.Written {
				t.Fatalf("WriteRecords = (%+v, %v), want Written", out, err)
			}
		})
		wantNotice("w;")
		var stamps []int64
		var bumped []uint64
		expectTrips(t, tr, round+"Invalidate of 1 tombstone and 3 epochs", one, func() {
			var err error
			stamps, bumped, err = s.Invalidate(ctx,
				[]tier.TombstoneOp{{Key: "{u1}k", TTL: time.Minute, Notice: notice("t")}},
				[]tier.EpochOp{{Key: "{u1}e", Known: vals[0], Notice: notice("e")}, {Key: "g:e", TTL: time.Minute, Notice: notice("g")}, {Key: "{u2}e", TTL: time.Hour}})
			if err != nil || len(stamps) != 1 || len(bumped) != 3 || bumped[0] <= vals[0] {
				t.Fatalf("Invalidate = (%v, %v, %v)", stamps, bumped, err)
			}
		})
		wantNotice(fmt.Sprintf("t%d;", stamps[0]))
		wantNotice(fmt.Sprintf("e%d;", bumped[0]))
		wantNotice(fmt.Sprintf("g%d;", bumped[1]))
	}
	// The server has never seen the scripts.
	calls("first use: ")
	if n := serverStat(t, admin, "commandstats", "cmdstat_eval", "calls"); n != 5 {
		t.Errorf("%d EVALs for the first uses of 5 scripts", n)
	}
	// Every script is known now: the same calls go by hash.
	calls("again: ")
	if n := serverStat(t, admin, "commandstats", "cmdstat_eval", "calls"); n != 5 {
		t.Errorf("%d EVALs after the second round, want still 5: later uses go by hash", n)
	}
	if n := serverStat(t, admin, "errorstats", "errorstat_NOSCRIPT", "count"); n != 0 {
		t.Errorf("%d NOSCRIPT replies, want none", n)
	}
	// A server that lost its scripts (a restart): the calls that reach it
	// by hash are sent again with the body, once.
	if err := admin.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	expectTrips(t, tr, "ReadRecords after SCRIPT FLUSH", map[string]int{"server": 2}, func() {
		_, reads, err := s.ReadRecords(ctx, epochs, []tier.ReadOp{{Key: "{u1}x", Lease: &tier.Lease{Key: "lk:{u1}x", Token: "b", TTL: time.Minute}}})
		if err != nil || !reads[0].Leased {
			t.Fatalf("ReadRecords after SCRIPT FLUSH = (%+v, %v), want the lease taken (once)", reads, err)
		}
	})
	expectTrips(t, tr, "ReadRecords once the scripts are back", one, func() {
		if _, _, err := s.ReadRecords(ctx, epochs, []tier.ReadOp{{Key: "{u1}x"}}); err != nil {
			t.Fatal(err)
		}
	})
	// The leases (the same rule).
	expectTrips(t, tr, "Unlock, first use of its script", one, func() {
		if ok, err := s.Unlock(ctx, "lk:{u1}x", "b"); err != nil || !ok {
			t.Fatalf("Unlock = (%v, %v)", ok, err)
		}
	})
	expectTrips(t, tr, "TryLock, first use of its script", one, func() {
		if ok, err := s.TryLock(ctx, "lk:{u1}y", "c", time.Minute); err != nil || !ok {
			t.Fatalf("TryLock = (%v, %v)", ok, err)
		}
	})
	expectTrips(t, tr, "TryLock of a held lease", one, func() {
		if ok, err := s.TryLock(ctx, "lk:{u1}y", "d", time.Minute); err != nil || ok {
			t.Fatalf("TryLock of a held lease = (%v, %v), want (false, nil)", ok, err)
		}
	})
}

// warm opens the connections of c, single commands' and pipelines': a
// connection's handshake is a round trip of its own, no call's.
func warm(t *testing.T, c *goredis.Client) {
	t.Helper()
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Pipelined(ctx, func(p goredis.Pipeliner) error { return p.Ping(ctx).Err() }); err != nil {
		t.Fatal(err)
	}
}

// tagsOn returns, for each master of cc, a hash tag whose slot it serves.
func tagsOn(t *testing.T, cc *goredis.ClusterClient, prefix string) (masters []string, tag map[string]string) {
	t.Helper()
	owners := slotOwners(t, cc)
	tag = map[string]string{}
	for i := 0; len(tag) < 3 && i < 1000; i++ {
		tg := fmt.Sprintf("{t%d}", i)
		slot, err := cc.ClusterKeySlot(context.Background(), prefix+tg).Result()
		if err != nil {
			t.Fatal(err)
		}
		if addr := owners[slot]; tag[addr] == "" {
			tag[addr] = tg
		}
	}
	masters = slices.Sorted(maps.Keys(tag))
	if len(masters) != 3 {
		t.Fatalf("found tags on %d masters, want 3", len(masters))
	}
	return masters, tag
}

// On a cluster the same calls cost one pipeline per master they touch,
// also the first use of a script on each master, also with WaitReplicas
// (the WAIT shares the pipeline).
func TestRoundTripsCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3, 1)
	o := c.ClusterOptions()
	o.ContextTimeoutEnabled = true
	cc := goredis.NewClusterClient(o)
	t.Cleanup(func() { _ = cc.Close() })
	tr := &redistest.RoundTrips{}
	tr.Install(cc)
	const prefix = "rtc:"
	s, err := New(cc, Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// The slot map and a connection to every master: the client's own.
	if err := cc.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error {
		warm(t, node)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	masters, tag := tagsOn(t, cc, prefix)
	a, b, cn := masters[0], masters[1], masters[2]
	sub := mustSubscribe(t, s, "n") // its own connection, not counted

	// The first use on a: one round trip there.
	epochsA := []tier.EpochOp{{Key: tag[a] + "e1"}, {Key: tag[a] + "e2", TTL: time.Hour}}
	expectTrips(t, tr, "first ReadRecords, all on one master", map[string]int{a: 1}, func() {
		if _, _, err := s.ReadRecords(ctx, epochsA, []tier.ReadOp{{Key: tag[a] + "k"}}); err != nil {
			t.Fatal(err)
		}
	})
	// b and c have not seen the scripts yet: the first use there carries
	// them too, though a's did.
	expectTrips(t, tr, "first ReadRecords on the other masters", map[string]int{b: 1, cn: 1}, func() {
		_, reads, err := s.ReadRecords(ctx, []tier.EpochOp{{Key: tag[b] + "e"}, {Key: tag[cn] + "e"}}, []tier.ReadOp{{Key: tag[b] + "k", Lease: &tier.Lease{Key: "lk:" + tag[b] + "k", Token: "t", TTL: time.Minute}}})
		if err != nil || !reads[0].Leased {
			t.Fatalf("ReadRecords = (%+v, %v), want the lease (taken once)", reads, err)
		}
	})
	var reads []tier.ReadResult
	expectTrips(t, tr, "ReadRecords of 2 epochs and 1 key on three masters", map[string]int{a: 1, b: 1, cn: 1}, func() {
		var err error
		_, reads, err = s.ReadRecords(ctx, []tier.EpochOp{{Key: tag[a] + "e1"}, {Key: tag[b] + "e"}}, []tier.ReadOp{{Key: tag[cn] + "k", Lease: &tier.Lease{Key: "lk:" + tag[cn] + "k", Token: "t", TTL: time.Minute}}})
		if err != nil || !reads[0].Leased {
			t.Fatalf("ReadRecords = (%+v, %v), want the lease", reads, err)
		}
	})
	expectTrips(t, tr, "WriteRecords with a release and a notice", map[string]int{cn: 1}, func() {
		w := tier.RecordWrite{Key: tag[cn] + "k", Record: tier.AppendRecord(nil, tier.KindValue, reads[0].Now, 1, nil),
			Release: &tier.Lease{Key: "lk:" + tag[cn] + "k", Token: "t", TTL: time.Minute}, Notice: &tier.Notice{Channel: "n", Before: []byte("w")}}
		if out, err := s.WriteRecords(ctx, []tier.RecordWrite{w}); err != nil || out[0].Outcome != tier.Written {
			t.Fatalf("WriteRecords = (%+v, %v)", out, err)
		}
	})
	if m := recv(t, sub); string(m.Payload) != "w" {
		t.Fatalf("notice %+v, want %q", m, "w")
	}
	tombs := []tier.TombstoneOp{{Key: tag[cn] + "k", TTL: time.Minute, Notice: &tier.Notice{Channel: "n", Before: []byte("t")}}}
	bumps := []tier.EpochOp{{Key: tag[a] + "e1"}, {Key: tag[b] + "e"}, {Key: tag[cn] + "e", Notice: &tier.Notice{Channel: "n", Before: []byte("e")}}}
	expectTrips(t, tr, "Invalidate of 1 tombstone and 3 epochs on three masters, first tombstones and bumps", map[string]int{a: 1, b: 1, cn: 1}, func() {
		stamps, vals, err := s.Invalidate(ctx, tombs, bumps)
		if err != nil {
			t.Fatal(err)
		}
		// One key's node publishes both, in order.
		for _, want := range []string{fmt.Sprintf("t%d", stamps[0]), fmt.Sprintf("e%d", vals[2])} {
			if m := recv(t, sub); string(m.Payload) != want {
				t.Fatalf("notice %+v, want %q", m, want)
			}
		}
	})
	// With WaitReplicas, a store that never ran the scripts: the scripts
	// and the WAIT of each master in one pipeline there.
	w, err := New(cc, Options{Prefix: prefix, WaitReplicas: 1, WaitTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, round := range []string{"first use", "again"} {
		expectTrips(t, tr, "Invalidate with WaitReplicas, "+round, map[string]int{a: 1, b: 1, cn: 1}, func() {
			if _, _, err := w.Invalidate(ctx, tombs, bumps); err != nil {
				t.Fatal(err)
			}
		})
		for range 2 {
			recv(t, sub)
		}
	}

	// A client that may read from replicas confirms epochs with the
	// scripts, which run on masters, never with GETs a lagging replica
	// could answer with a value from before a bump.
	ro := c.ClusterOptions()
	ro.ContextTimeoutEnabled, ro.ReadOnly = true, true
	rc := goredis.NewClusterClient(ro)
	t.Cleanup(func() { _ = rc.Close() })
	rtr := &redistest.RoundTrips{}
	rtr.Install(rc)
	rs, err := New(rc, Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadEpochs(ctx, []tier.EpochOp{{Key: "ro:e"}}); err != nil { // the key exists
		t.Fatal(err)
	}
	rtr.Reset()
	if _, err := rs.LoadEpochs(ctx, []tier.EpochOp{{Key: "ro:e", Known: 1}}); err != nil {
		t.Fatal(err)
	}
	_, sent := tripCounts(rtr)
	if strings.Contains(sent, "get") || !strings.Contains(sent, "eval") {
		t.Fatalf("LoadEpochs on a ReadOnly cluster client sent %s; want the epoch scripts and no GET", sent)
	}
}

// With WaitReplicas on one server, the WAIT shares the scripts' pipeline
// when the client's read timeout covers it, and is sent after them when it
// does not (one round trip more, and still a wait on the connection that
// wrote).
func TestRoundTripsWaitReadTimeout(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	for _, c := range []struct {
		readTimeout time.Duration
		want        int
	}{{0, 1}, {-1, 1}, {50 * time.Millisecond, 2}} {
		o := srv.Options()
		o.ReadTimeout = c.readTimeout
		client := goredis.NewClient(o)
		t.Cleanup(func() { _ = client.Close() })
		tr := &redistest.RoundTrips{}
		client.AddHook(tr.Node("server"))
		s, err := New(client, Options{Prefix: "rtw:", WaitReplicas: 1, WaitTimeout: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		warm(t, client)
		expectTrips(t, tr, fmt.Sprintf("Invalidate with WaitReplicas, read timeout %v", c.readTimeout), map[string]int{"server": c.want}, func() {
			_, _, err := s.Invalidate(ctx, []tier.TombstoneOp{{Key: "k", TTL: time.Minute}}, []tier.EpochOp{{Key: "e"}})
			if err == nil || !strings.Contains(err.Error(), "0 of 1 replicas") {
				t.Fatalf("Invalidate on a server without replicas: %v, want the missing acknowledgement", err)
			}
		})
	}
}

// TestLoadEpochsReadsPlainlyWhatIsThere: a load of epochs the keys hold (at
// least Known) is one round trip of GETs, and no script runs; a key that is
// missing, lower than Known or not an epoch takes one more round trip, of
// the script that creates, raises or repairs it.
func TestLoadEpochsReadsPlainlyWhatIsThere(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	client := singleClient(t, srv)
	tr := &redistest.RoundTrips{}
	client.AddHook(tr.Node("server"))
	s, err := New(client, Options{Prefix: "le:"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	warm(t, client)
	raw := singleClient(t, srv)
	for k, v := range map[string]string{"le:a": "100", "le:b": "200", "le:low": "5", "le:junk": "x1"} {
		if err := raw.Set(ctx, k, v, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := raw.LPush(ctx, "le:list", "x").Err(); err != nil {
		t.Fatal(err)
	}
	var vals []uint64
	expectTrips(t, tr, "LoadEpochs of epochs that are there", map[string]int{"server": 1}, func() {
		if vals, err = s.LoadEpochs(ctx, []tier.EpochOp{{Key: "a", Known: 100}, {Key: "b"}}); err != nil {
			t.Fatal(err)
		}
	})
	if vals[0] != 100 || vals[1] != 200 {
		t.Fatalf("LoadEpochs = %v, want [100 200]", vals)
	}
	expectTrips(t, tr, "LoadEpochs with keys to create, raise and repair", map[string]int{"server": 2}, func() {
		if vals, err = s.LoadEpochs(ctx, []tier.EpochOp{{Key: "a"}, {Key: "low", Known: 50}, {Key: "new", Known: 7}, {Key: "junk"}, {Key: "list"}}); err != nil {
			t.Fatal(err)
		}
	})
	if vals[0] != 100 || vals[1] != 50 || vals[2] <= 7 || vals[3] == 0 || vals[4] == 0 {
		t.Fatalf("LoadEpochs = %v, want 100, 50 (raised), >7 (created) and two new epochs (repaired)", vals)
	}
	for k, want := range map[string]string{"le:low": "50", "le:new": strconv.FormatUint(vals[2], 10), "le:junk": strconv.FormatUint(vals[3], 10), "le:list": strconv.FormatUint(vals[4], 10)} {
		if got, err := raw.Get(ctx, k).Result(); err != nil || got != want {
			t.Errorf("%s holds %q (%v), want %q", k, got, err, want)
		}
	}
	if n := s.Repairs(); n != 2 {
		t.Errorf("Repairs() = %d, want 2 (the text and the list)", n)
	}
}
