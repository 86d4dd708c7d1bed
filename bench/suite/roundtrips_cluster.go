package suite

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/internal/redistest"
)

// rtClusterMasters is the size of the round_trips_cluster workload's
// cluster: masters without replicas, the 16384 slots split evenly.
const rtClusterMasters = 3

// rtClusterSuffix ends the system names of the round_trips_cluster rows.
const rtClusterSuffix = ", Redis Cluster (per node)"

// rtNodes is a fleet's round-trip counters, one per server (by address),
// each shared by every instance's client of that server, and the trace of
// every round trip they counted.
type rtNodes struct {
	mu    sync.Mutex
	rts   map[string]*roundTrips
	trips []rtTrip
}

// rtTrip is one round trip of a trace.
type rtTrip struct {
	addr string
	kind rtKind
	cmds string // its commands (see tripName), ", " between them
}

func newRTNodes() *rtNodes { return &rtNodes{rts: map[string]*roundTrips{}} }

// node returns the counter of the server at addr, to hook on a client of it.
func (ns *rtNodes) node(addr string) *roundTrips {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	rt := ns.rts[addr]
	if rt == nil {
		rt = &roundTrips{trace: func(k rtKind, cmds []goredis.Cmder) {
			names := make([]string, len(cmds))
			for i, c := range cmds {
				names[i] = tripName(c)
			}
			ns.mu.Lock()
			ns.trips = append(ns.trips, rtTrip{addr: addr, kind: k, cmds: strings.Join(names, ", ")})
			ns.mu.Unlock()
		}}
		ns.rts[addr] = rt
	}
	return rt
}

// tripName names cmd for a trace: its name and its subcommand (CLIENT,
// CLUSTER), first key (EVAL, EVALSHA and their _RO forms) or first argument
// (any other), with the suite's L2 prefix cut from a key.
func tripName(cmd goredis.Cmder) string {
	args := cmd.Args()
	i := 1
	switch cmd.Name() {
	case "eval", "evalsha", "eval_ro", "evalsha_ro":
		i = 3
		if len(args) > 2 && fmt.Sprint(args[2]) == "0" {
			i = len(args) // no keys
		}
	}
	if i >= len(args) {
		return cmd.Name()
	}
	arg := benchPrefix.ReplaceAllString(fmt.Sprint(args[i]), "")
	if len(arg) > 40 {
		arg = arg[:40] + "…"
	}
	return cmd.Name() + " " + arg
}

// benchPrefix matches the L2 prefixes env.prefix makes.
var benchPrefix = regexp.MustCompile(`bench:[a-z0-9_]+:[0-9]+:`)

// rtPerNode is what a fleet's counters counted per server, or the
// difference of two such snapshots; trips [from, to) of the trace are
// the round trips in it (give or take one in flight at a snapshot).
type rtPerNode struct {
	n        map[string]rtCount
	from, to int
}

func (ns *rtNodes) snapshot() rtPerNode {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	s := rtPerNode{n: make(map[string]rtCount, len(ns.rts)), to: len(ns.trips)}
	for addr, rt := range ns.rts {
		s.n[addr] = rt.snapshot()
	}
	return s
}

// trace returns the round trips of the trace in p.
func (ns *rtNodes) trace(p rtPerNode) []rtTrip {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return slices.Clone(ns.trips[p.from:min(p.to, len(ns.trips))])
}

func (a rtPerNode) sub(b rtPerNode) rtPerNode {
	d := rtPerNode{n: make(map[string]rtCount, len(a.n)), from: b.to, to: a.to}
	for addr, c := range a.n {
		d.n[addr] = c.sub(b.n[addr])
	}
	return d
}

// sum is the count over every server.
func (a rtPerNode) sum() rtCount {
	var s rtCount
	for _, c := range a.n {
		s = s.add(c)
	}
	return s
}

// busiest returns the server of p with the most operation round trips and
// their number (the first in addrs order on a tie; "" and 0 if none).
func (a rtPerNode) busiest(addrs []string) (string, int64) {
	var top string
	var n int64
	for _, addr := range a.addrs(addrs) {
		if c := a.n[addr].ops; c > n || top == "" {
			top, n = addr, c
		}
	}
	return top, n
}

// addrs returns addrs and then, sorted, any other server p counted
// operation round trips on.
func (a rtPerNode) addrs(addrs []string) []string {
	out := slices.Clone(addrs)
	var more []string
	for addr, c := range a.n {
		if c.ops > 0 && !slices.Contains(addrs, addr) {
			more = append(more, addr)
		}
	}
	sort.Strings(more)
	return append(out, more...)
}

// perNode lists the operation round trips per server, in addrs order.
func (a rtPerNode) perNode(addrs []string) string {
	var parts []string
	for _, addr := range a.addrs(addrs) {
		parts = append(parts, fmt.Sprintf("%s %d", addr, a.n[addr].ops))
	}
	return strings.Join(parts, ", ")
}

// rtClusterClient makes a fleet instance's client on cl: a cluster client
// of its own, with the options of env.client, whose every node client is
// hooked on its server's counter. The hook is in place before the client
// makes its first node client (go-redis makes them lazily, on the first
// slot-map load), so it sees every command and every per-node pipeline
// (go-redis runs a cluster pipeline as one pipeline per node, in parallel,
// each through that node client's pipeline hooks).
func rtClusterClient(cl *redistest.Cluster) rtClient {
	return func(nodes *rtNodes) goredis.UniversalClient {
		o := cl.ClusterOptions()
		o.ContextTimeoutEnabled = true
		cc := goredis.NewClusterClient(o)
		cc.OnNewNode(func(node *goredis.Client) { node.AddHook(nodes.node(node.Options().Addr)) })
		return cc
	}
}

// roundTripsCluster counts the round trips of the round_trips workload's
// operations (rtCases) on a Redis Cluster the harness starts for it
// (rtClusterMasters masters, no replicas), per node: issue 15 asks for the
// same counts per node, a cluster pipeline being one pipeline per node, sent
// in parallel. Each instance of a fleet has a cluster client of its own; a
// node's count is summed over the instances. The row's figure is the
// busiest node's count, against the single-node minimum and budget; the
// note gives every node's count and the total. Connection handshakes,
// script loads and the cluster client's own topology commands (CLUSTER
// SLOTS, COMMAND) are counted apart (see roundTrips). Each case runs on
// several fleets; the run whose busiest node counted the median is reported.
// With a log, every round trip of the reported run is listed per node.
func roundTripsCluster(ctx context.Context, e *env) error {
	const wl = "round_trips_cluster"
	cl, err := redistest.LaunchCluster(rtClusterMasters, 0)
	if err != nil {
		return fmt.Errorf("starting a Redis Cluster: %w", err)
	}
	defer cl.Close()
	masters := cl.Addrs()
	client := rtClusterClient(cl)
	samples := e.cfg.size(3, 1)
	for _, rc := range rtCases() {
		type run struct {
			r     rtResult
			trips []rtTrip
		}
		var runs []run
		for s := 0; s < samples; s++ {
			f, err := newRTFleet(e, rc.instances, rc.opts, client)
			if err != nil {
				return err
			}
			if !rc.fresh {
				// Let the subscriptions come up: their commands are not the operation's.
				time.Sleep(100 * time.Millisecond)
			}
			r, err := rc.run(ctx, f)
			var trips []rtTrip
			if err == nil {
				trips = f.nodes.trace(r.totalBy)
			}
			f.close()
			if err != nil {
				return fmt.Errorf("%s: %w", rc.name, err)
			}
			runs = append(runs, run{r, trips})
		}
		top := func(r rtResult) int64 { _, n := r.totalBy.busiest(masters); return n }
		sort.SliceStable(runs, func(i, j int) bool {
			ti, tj := top(runs[i].r), top(runs[j].r)
			return ti < tj || ti == tj && runs[i].r.total.ops < runs[j].r.total.ops
		})
		m := runs[len(runs)/2]
		r := m.r
		busy := top(r)
		_, callerBusy := r.callerBy.busiest(masters)
		note := fmt.Sprintf("per node: %s; %d in all; caller's path: %d on the busiest node, %d in all (%s); %s",
			r.totalBy.perNode(masters), r.total.ops, callerBusy, r.caller.ops, r.callerBy.perNode(masters), r.total.handshakes())
		if len(runs) > 1 {
			note = fmt.Sprintf("median of %d fleets by the busiest node (%d–%d); ", len(runs), top(runs[0].r), top(runs[len(runs)-1].r)) + note
		}
		if r.extra != "" {
			note += "; " + r.extra
		}
		e.logf("  %s%s: %d round trips on the busiest node, minimum %v; %s", rc.name, rtClusterSuffix, busy, rc.min, note)
		for _, line := range tripsByNode(m.trips, masters) {
			e.logf("    %s", line)
		}
		name := rc.name + rtClusterSuffix
		e.versus(wl, "agentcache: "+name, MetricRoundTrips, float64(busy), sysMinimum+": "+name, rc.min, rc.budget, note)
		if rc.callerMin >= 0 {
			const cp = ", caller's path"
			e.versus(wl, "agentcache: "+name+cp, MetricRoundTrips, float64(callerBusy), sysMinimum+": "+name+cp, rc.callerMin, rc.callerBud,
				fmt.Sprintf("round trips until the operation returned, on the busiest node; per node: %s", r.callerBy.perNode(masters)))
		}
	}
	return nil
}

// tripsByNode lists trips per server, in addrs order, for the log: each
// round trip's commands, "|" between round trips, the ones not counted as
// an operation's marked with what they were (pipelined commands are
// separated by ", ").
func tripsByNode(trips []rtTrip, addrs []string) []string {
	by := map[string][]string{}
	for _, t := range trips {
		s := t.cmds
		if t.kind != rtOp {
			s = "[" + t.kind.String() + ": " + s + "]"
		}
		by[t.addr] = append(by[t.addr], s)
	}
	all := slices.Clone(addrs)
	var more []string
	for addr := range by {
		if !slices.Contains(addrs, addr) {
			more = append(more, addr)
		}
	}
	sort.Strings(more)
	var out []string
	for _, addr := range append(all, more...) {
		if len(by[addr]) == 0 {
			out = append(out, addr+": none")
			continue
		}
		out = append(out, fmt.Sprintf("%s: %s", addr, strings.Join(by[addr], " | ")))
	}
	return out
}
