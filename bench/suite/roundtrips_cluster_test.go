package suite

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/internal/redistest"
)

// TestClusterRoundTripsHook checks the per-node counter against the go-redis
// this module uses and a real Redis Cluster of three masters: a command is
// one round trip on the node that serves its key and none on the others, a
// pipeline over keys of every node one round trip on each node, and the
// cluster client's own topology commands (CLUSTER SLOTS, COMMAND), the
// connection handshakes and an EVALSHA answered NOSCRIPT are counted apart.
func TestClusterRoundTripsHook(t *testing.T) {
	cl := redistest.StartCluster(t, rtClusterMasters, 0)
	ctx := context.Background()
	masters := cl.Addrs()
	nodes := newRTNodes()
	cc := rtClusterClient(cl)(nodes).(*goredis.ClusterClient)
	defer cc.Close()

	// A key on each master. MasterForKey loads the slot map (CLUSTER SLOTS)
	// and sends nothing else.
	keys := make([]string, len(masters))
	for i, found := 0, 0; found < len(masters); i++ {
		if i > 1000 {
			t.Fatalf("no key on some master after 1000 tries: %q", keys)
		}
		k := fmt.Sprintf("k%d", i)
		node, err := cc.MasterForKey(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		for j, addr := range masters {
			if node.Options().Addr == addr && keys[j] == "" {
				keys[j] = k
				found++
			}
		}
	}
	last := nodes.snapshot()
	if s := last.sum(); s.ops != 0 || s.topo == 0 {
		t.Fatalf("after loading the slot map: %+v, want no operation round trips and some topology ones", s)
	}
	// step checks that ops ran exactly want operation round trips on each
	// master, and returns what else the counters saw.
	step := func(what string, want []int64) rtPerNode {
		t.Helper()
		now := nodes.snapshot()
		d := now.sub(last)
		last = now
		for i, addr := range masters {
			if got := d.n[addr].ops; got != want[i] {
				t.Errorf("%s: %d operation round trips on master %d (%s), want %d; per node: %s; trace: %v",
					what, got, i, addr, want[i], d.perNode(masters), nodes.trace(d))
			}
		}
		for addr, c := range d.n {
			if c.ops != 0 && !strings.Contains(strings.Join(masters, " "), addr) {
				t.Errorf("%s: %d operation round trips on %s, not a master", what, c.ops, addr)
			}
		}
		return d
	}

	if err := cc.Get(ctx, keys[0]).Err(); err != goredis.Nil {
		t.Fatalf("GET: %v", err)
	}
	d := step("one GET", []int64{1, 0, 0})
	// Its connection was opened by then (by the GET itself, or by the
	// cluster client's slot load, which go-redis may run first on the same
	// node), and its handshake counted apart.
	if s := nodes.snapshot().sum(); s.hs == 0 || s.conns == 0 {
		t.Errorf("no connection handshake counted by the first GET: %+v", s)
	}
	// The first command also made the client load the command table.
	var sawSlots, sawCommand bool
	for _, tr := range nodes.trace(rtPerNode{to: d.to}) {
		switch {
		case tr.kind == rtTopology && strings.HasPrefix(tr.cmds, "cluster slots"):
			sawSlots = true
		case tr.kind == rtTopology && tr.cmds == "command":
			sawCommand = true
		case tr.kind == rtOp && (strings.HasPrefix(tr.cmds, "cluster") || strings.HasPrefix(tr.cmds, "command")):
			t.Errorf("a topology round trip counted as an operation's: %+v", tr)
		}
	}
	if !sawSlots || !sawCommand {
		t.Errorf("saw CLUSTER SLOTS %v, COMMAND %v; want both, counted as topology; trace: %v", sawSlots, sawCommand, nodes.trace(rtPerNode{to: d.to}))
	}

	if err := cc.Get(ctx, keys[0]).Err(); err != goredis.Nil {
		t.Fatalf("GET: %v", err)
	}
	if d := step("a second GET", []int64{1, 0, 0}); d.sum().hs != 0 || d.sum().topo != 0 {
		t.Errorf("a second GET on a warm client: %+v, want no handshakes and no topology round trips", d.sum())
	}

	if _, err := cc.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, k := range keys {
			p.Get(ctx, k)
			p.Get(ctx, k+":other") // any node's: it joins that node's pipeline
		}
		p.Set(ctx, keys[2], "v", time.Minute)
		return nil
	}); err != nil && err != goredis.Nil {
		t.Fatal(err)
	}
	step("a pipeline over every node", []int64{1, 1, 1})

	if err := cc.Set(ctx, keys[1], "v", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	step("one SET", []int64{0, 1, 0})

	sha := strings.Repeat("0", 40)
	if err := cc.EvalSha(ctx, sha, []string{keys[1]}).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOSCRIPT") {
		t.Fatalf("EVALSHA of an unknown script: %v, want NOSCRIPT", err)
	}
	if d := step("an EVALSHA answered NOSCRIPT", []int64{0, 0, 0}); d.n[masters[1]].scripts != 1 {
		t.Errorf("an EVALSHA answered NOSCRIPT: %+v on master 1, want 1 script load", d.n[masters[1]])
	}

	// A reload of the slot map, in the background: topology only.
	before := last.sum().topo
	cc.ReloadState(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for nodes.snapshot().sum().topo == before {
		if time.Now().After(deadline) {
			t.Fatal("ReloadState sent no CLUSTER SLOTS within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	step("a slot-map reload", []int64{0, 0, 0})

	for _, tc := range []struct {
		cmd  goredis.Cmder
		want bool
	}{
		{goredis.NewCmd(ctx, "cluster", "slots"), true},
		{goredis.NewCmd(ctx, "CLUSTER", "SHARDS"), true},
		{goredis.NewCmd(ctx, "cluster", "nodes"), true},
		{goredis.NewCmd(ctx, "command"), true},
		{goredis.NewCmd(ctx, "command", "docs"), true},
		{goredis.NewCmd(ctx, "cluster", "keyslot", "k"), false},
		{goredis.NewCmd(ctx, "cluster"), false},
		{goredis.NewCmd(ctx, "get", "k"), false},
		{goredis.NewCmd(ctx, "hello", 3), false},
	} {
		if got := topologyCmd(tc.cmd); got != tc.want {
			t.Errorf("topologyCmd(%v) = %v, want %v", tc.cmd.Args(), got, tc.want)
		}
	}
}

// TestRoundTripsClusterRows runs the round_trips_cluster workload once, in
// quick mode, and checks its rows: one per case (and per caller's path)
// against the single-node minimum and budget, with the per-node counts and
// the total in the note. It checks no figures.
func TestRoundTripsClusterRows(t *testing.T) {
	if testing.Short() {
		t.Skip("the workload takes a few seconds; -short skips it")
	}
	var log io.Writer = io.Discard
	if testing.Verbose() {
		log = os.Stderr
	}
	e := &env{cfg: Config{Quick: true, Log: log}, rep: &Report{}}
	if err := roundTripsCluster(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	rows := map[string]Result{}
	for _, r := range e.rep.Results {
		if r.Workload != "round_trips_cluster" || r.Metric != MetricRoundTrips {
			t.Errorf("row %s / %s / %s: not a round_trips_cluster round-trip row", r.Workload, r.System, r.Metric)
		}
		rows[r.System] = r
	}
	for _, rc := range rtCases() {
		names := []string{rc.name + rtClusterSuffix}
		if rc.callerMin >= 0 {
			names = append(names, rc.name+rtClusterSuffix+", caller's path")
		}
		for i, name := range names {
			r, ok := rows["agentcache: "+name]
			if !ok {
				t.Errorf("no row %q", name)
				continue
			}
			if r.Baseline != sysMinimum+": "+name {
				t.Errorf("%s: baseline %q", name, r.Baseline)
			}
			min, bud := rc.min, rc.budget
			if i == 1 {
				min, bud = rc.callerMin, rc.callerBud
			}
			if base, ok := rows[r.Baseline]; !ok || base.Value != min {
				t.Errorf("%s: minimum %+v, want %v", name, base, min)
			}
			if bud != nil && r.Budget != bud.text {
				t.Errorf("%s: budget %q, want %q", name, r.Budget, bud.text)
			}
			if !strings.Contains(r.Note, "per node: ") {
				t.Errorf("%s: the note has no per-node counts: %q", name, r.Note)
			}
			if i == 0 && (!strings.Contains(r.Note, " in all") || !strings.Contains(r.Note, "handshakes")) {
				t.Errorf("%s: the note has no total or no handshakes: %q", name, r.Note)
			}
		}
	}
}
