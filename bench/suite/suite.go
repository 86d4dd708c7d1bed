package suite

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/internal/redistest"
	acredis "github.com/agentcache/agentcache-go/tier/redis"
)

// Config configures a run of the suite. The zero value runs every workload
// at full size.
type Config struct {
	// Quick shrinks every workload (fewer runs, shorter benchmarks, smaller
	// key sets) so that the whole suite finishes in well under a minute. Its
	// figures are for smoke-testing the suite, not for quoting.
	Quick bool

	// Runs is how many times each timed benchmark runs; the median is kept.
	// Default 5 (1 with Quick).
	Runs int

	// BenchTime is the target duration of one testing.Benchmark run.
	// Default 500ms (20ms with Quick).
	BenchTime time.Duration

	// Match, if set, runs only the workloads whose name it matches.
	Match *regexp.Regexp

	// Log receives progress lines. Default: discarded.
	Log io.Writer
}

func (c Config) runs() int {
	switch {
	case c.Runs > 0:
		return c.Runs
	case c.Quick:
		return 1
	}
	return 5
}

func (c Config) benchTime() time.Duration {
	switch {
	case c.BenchTime > 0:
		return c.BenchTime
	case c.Quick:
		return 20 * time.Millisecond
	}
	return 500 * time.Millisecond
}

// size returns full, or quick when the run is quick.
func (c Config) size(full, quick int) int {
	if c.Quick {
		return quick
	}
	return full
}

// workload is one entry of the suite.
type workload struct {
	name string
	what string // one line for the table
	run  func(ctx context.Context, e *env) error
}

// workloads lists the suite in the order it runs. The memory workloads come
// first, while the heap is still small and quiet.
func workloads() []workload {
	return []workload{
		{"memory_l1_entry", "heap bytes per L1 entry (100k entries): Set, global and per-user Wrap, each vs bare otter", memoryL1Entry},
		{"memory_negative_key", "heap bytes per remembered negative key, bloom vs an ordinary L1 entry", memoryNegativeKey},
		{"memory_1m", "live heap and GC CPU per collection with 1M entries resident (global Wrap vs bare otter)", memory1M},
		{"negative_fp_rate", "wrong \"not found\" answers for keys that exist, per lookup", negativeFPRate},
		{"l1_hit", "L1 hit, parallel, Zipf(1.1) over 8,192 keys, small struct value", l1Hit},
		{"l1_hit_wrap", "L1 hit through the typed tool wrapper, small struct argument", l1HitWrap},
		{"tracing_overhead", "L1 hit through Wrap, untraced vs inside a recording span", tracingOverhead},
		{"l2_hit", "L2 hit, one caller, 1,000 keys cycled, L1 of 16 entries", l2Hit},
		{"batch_100_l2", "100-key batch from L2 (5,000 keys, L1 of 16 entries), default codec and each fast codec", batch100},
		{"batch_100_l2_fill", "L1 fill per entry of a 100-key batch's L2 hits (in-process L2, by difference)", batchFill},
		{"invalidate_scope_100k", "invalidate one user's scope holding 100k entries in Redis", invalidateScope},
		{"invalidation_visibility", "Invalidate on A returns → B stops serving the old value (loopback)", invalidationVisibility},
		{"stampede_8x50", "one cold key, 8 instances × 50 concurrent callers, 20ms tool", stampede},
		{"round_trips", "Redis round trips of single operations on two instances, against the minimum", roundTripsPerOp},
		{"round_trips_cluster", "the round_trips operations on a Redis Cluster of 3 masters: round trips per node, the busiest node against the minimum", roundTripsCluster},
		{"round_trips_steady", "Redis round trips per lookup, 10,000 users, Zipf(1.1) over 1,000 queries, 70% per-user, 2 instances, MaxEpochAge 200ms", steadyRoundTrips},
		{"stale_while_revalidate", "16 callers right after expiry, 20ms tool", staleWhileRevalidate},
		{"hallucinated_ids", "an agent guessing IDs, 20% retries, 70% of fresh guesses invented", hallucinatedIDs},
	}
}

// Workloads returns the names of the suite's workloads, in the order they run.
func Workloads() []string {
	var out []string
	for _, w := range workloads() {
		out = append(out, w.name)
	}
	return out
}

// Run starts a private redis-server, runs the workloads cfg selects and
// returns their results. A workload that fails is recorded in
// Report.Failures and the others still run; the error is for failures that
// stop the whole suite (no redis-server, say).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	initTesting(cfg.benchTime())
	srv, err := redistest.Launch(redistest.Config{})
	if err != nil {
		return nil, fmt.Errorf("suite: starting redis-server: %w", err)
	}
	defer srv.Close()
	e := &env{cfg: cfg, srv: srv}
	rep := &Report{Machine: machineInfo(), Quick: cfg.Quick, Runs: cfg.runs(), BenchTime: cfg.benchTime()}
	rep.Machine.LoadBefore = loadAvg()
	if rep.Machine.Redis, err = redisVersion(ctx, srv); err != nil {
		return nil, fmt.Errorf("suite: asking redis-server its version: %w", err)
	}
	e.rep = rep
	start := time.Now()
	for _, w := range workloads() {
		if cfg.Match != nil && !cfg.Match.MatchString(w.name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		e.flush(ctx)
		e.logf("%s: %s", w.name, w.what)
		rep.Workloads = append(rep.Workloads, WorkloadInfo{Name: w.name, What: w.what})
		t0 := time.Now()
		if err := w.run(ctx, e); err != nil {
			e.logf("%s: FAILED: %v", w.name, err)
			rep.Failures = append(rep.Failures, fmt.Sprintf("%s: %v", w.name, err))
		}
		e.logf("%s: done in %v", w.name, time.Since(t0).Round(time.Millisecond))
	}
	rep.Elapsed = time.Since(start)
	rep.Machine.LoadAfter = loadAvg()
	return rep, nil
}

var testingOnce sync.Once

// initTesting registers the testing flags outside "go test" (testing.Benchmark
// reads them) and sets the benchmark duration.
func initTesting(d time.Duration) {
	testingOnce.Do(testing.Init)
	_ = flag.Set("test.benchtime", d.String())
}

// env is what the workloads share: the server, the config, the report.
type env struct {
	cfg Config
	srv *redistest.Server
	rep *Report
	seq atomic.Int64
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.cfg.Log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// flush empties the server between workloads, so that each starts from the
// same state and SCAN-based baselines see only their own keys.
func (e *env) flush(ctx context.Context) {
	c := goredis.NewClient(e.srv.Options())
	defer c.Close()
	_ = c.FlushAll(ctx).Err()
}

// client returns a new go-redis client for the server, with the hooks given.
// Every system of a workload uses clients made here, with the same options.
func (e *env) client(hooks ...goredis.Hook) *goredis.Client {
	o := e.srv.Options()
	o.ContextTimeoutEnabled = true
	c := goredis.NewClient(o)
	for _, h := range hooks {
		c.AddHook(h)
	}
	return c
}

// prefix returns a fresh L2 prefix.
func (e *env) prefix(name string) string {
	return fmt.Sprintf("bench:%s:%d:", name, e.seq.Add(1))
}

// store returns an agentcache Redis store on c.
func (e *env) store(c goredis.UniversalClient, prefix string) (*acredis.Store, error) {
	return acredis.New(c, acredis.Options{Prefix: prefix})
}

// quietLogger discards agentcache's warnings: the suite checks the counters
// that matter (drops, L2 errors) itself.
var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// newCache returns a Cache with the suite's common settings applied to o.
// L2Timeout is raised to 2s: on a loaded machine a slow Redis reply would
// otherwise turn an L2 hit into a tool call (or fail a fill), which measures
// the machine rather than the path. The bound's value costs nothing on a
// call that succeeds.
func newCache(o agentcache.Options) (*agentcache.Cache, error) {
	if o.Logger == nil {
		o.Logger = quietLogger
	}
	if o.L2Timeout == 0 {
		o.L2Timeout = 2 * time.Second
	}
	if o.TTLJitter == 0 {
		o.TTLJitter = -1 // identical TTLs keep runs comparable
	}
	return agentcache.New(o)
}

// closeCache closes c, bounded.
func closeCache(c *agentcache.Cache) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = c.Close(ctx)
}

// drain waits until c's write-behind queue is empty and at least want writes
// have landed (or were refused); it fails after a while.
func drain(c *agentcache.Cache, want uint64) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		s := c.Stats()
		if s.WriteQueueDepth == 0 && s.WritesDone+s.WritesFailed+s.WritesSkipped+s.WritesDropped >= want {
			if s.WritesDropped+s.WritesFailed+s.WritesSkipped > 0 {
				return fmt.Errorf("L2 writes lost while filling: %d dropped, %d failed, %d skipped", s.WritesDropped, s.WritesFailed, s.WritesSkipped)
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("write queue did not drain: depth %d, %d of %d writes done", s.WriteQueueDepth, s.WritesDone, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// candidate is one system of a timed comparison.
type candidate struct {
	system string
	bench  func(b *testing.B)
}

// measured is the median run of a candidate.
type measured struct {
	nsPerOp     float64
	allocsPerOp float64
	bytesPerOp  float64
	n           int
}

// benchErr collects the first failure of a benchmark function, which
// testing.Benchmark would otherwise swallow.
type benchErr struct {
	mu  sync.Mutex
	err error
}

func (be *benchErr) set(err error) {
	be.mu.Lock()
	if be.err == nil {
		be.err = err
	}
	be.mu.Unlock()
}

func (be *benchErr) get() error {
	be.mu.Lock()
	defer be.mu.Unlock()
	return be.err
}

// fail records err and stops the benchmark.
func (be *benchErr) fail(b *testing.B, err error) {
	be.set(err)
	b.Fatal(err)
}

// compare runs the candidates cfg.runs() times each, interleaved (A B C A B
// C ...) so that a noisy neighbour hurts every system alike, and keeps each
// one's median run by ns/op.
func (e *env) compare(workload string, be *benchErr, cands []candidate) (map[string]measured, error) {
	runs := e.cfg.runs()
	all := make(map[string][]testing.BenchmarkResult, len(cands))
	for r := 0; r < runs; r++ {
		for _, c := range cands {
			res := testing.Benchmark(c.bench)
			if err := be.get(); err != nil {
				return nil, fmt.Errorf("%s: %w", c.system, err)
			}
			if res.N == 0 {
				return nil, fmt.Errorf("%s: benchmark failed", c.system)
			}
			all[c.system] = append(all[c.system], res)
			e.logf("  %s / %s run %d: %s %s", workload, c.system, r+1, res.String(), res.MemString())
		}
	}
	out := make(map[string]measured, len(cands))
	for sys, rs := range all {
		sort.Slice(rs, func(i, j int) bool { return nsPerOp(rs[i]) < nsPerOp(rs[j]) })
		m := rs[len(rs)/2]
		out[sys] = measured{
			nsPerOp: nsPerOp(m),
			// Whole allocations per operation, as "go test -benchmem"
			// reports them: a rare allocation of a background task does
			// not turn 0 into 0.001.
			allocsPerOp: float64(m.AllocsPerOp()),
			bytesPerOp:  float64(m.AllocedBytesPerOp()),
			n:           m.N,
		}
	}
	return out, nil
}

// nsPerOp is BenchmarkResult.NsPerOp without its rounding to an integer.
func nsPerOp(r testing.BenchmarkResult) float64 {
	if r.N == 0 {
		return 0
	}
	return float64(r.T.Nanoseconds()) / float64(r.N)
}

// percentile returns the p-th percentile (0 < p <= 1) of ds, nearest rank.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p*float64(len(s))+0.999999) - 1
	i = max(0, min(i, len(s)-1))
	return s[i]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// median returns the median of xs.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// roundTrips counts the commands and pipelines a go-redis client sends: each
// is one round trip to a single server. Every call is counted, none sampled,
// when its reply has come (so a background round trip still in flight when
// an operation returns is not counted on the operation's path).
//
// Two kinds of round trips are counted apart, not in n:
//
//   - Connection handshakes (hs). The commands go-redis sends itself to set
//     up a connection it opens (pooled or Pub/Sub) pass through the same
//     hooks, because the handshake connection clones the client's hooks. In
//     go-redis v9.23 (baseClient.initConn) a connection opens with HELLO (a
//     command); AUTH if HELLO was refused and a password is set (a command);
//     one pipeline of SELECT, READONLY, CLIENT SETNAME and CLIENT TRACKING ON
//     for the options that ask for them (none here: an empty pipeline is not
//     sent); CLIENT MAINT_NOTIFICATIONS (a command, while the client's
//     maintenance notifications are in auto mode: its first connection, until
//     Redis refuses it and the client turns them off); and one pipeline of two
//     CLIENT SETINFO (library name and version; Redis before 7.2 refuses them,
//     still a round trip). Here: 2 per connection, 3 on a client's first.
//     go-redis v9.23 keeps pipelines on a pool of their own (PipelinePoolSize),
//     so a client that sends commands and pipelines opens two connections.
//   - Script loads (scripts): an EVALSHA (alone or in a pipeline of EVALSHAs)
//     that Redis answered NOSCRIPT, which the caller then resends as EVAL
//     (counted in n). It happens once per script on a server that has not seen
//     it (the first workload of a run, a restarted Redis), so it is kept out
//     of the per-operation figures like a handshake.
//   - Topology (topo): the commands a go-redis cluster client sends a node
//     for itself, not for a caller. In go-redis v9.23 these are CLUSTER SLOTS
//     (ClusterClient.loadState: the slot map, loaded on first use, again in
//     the background when it is older than ClusterStateReloadInterval, and
//     when the store asks for a reload after a failed call) and COMMAND
//     (ClusterClient.cmdsInfo: the command table, once per client, for the
//     routing policies). CLUSTER SHARDS and CLUSTER NODES are counted here too.
//     agentcache's store sends none of these itself; a single-node client
//     sends none at all.
//
// SUBSCRIBE and the Pub/Sub pings bypass the hooks (go-redis writes them to
// the connection directly) and are not counted at all.
type roundTrips struct {
	n       atomic.Int64 // round trips of the operations
	hs      atomic.Int64 // round trips of connection handshakes
	conns   atomic.Int64 // connections set up (HELLO commands seen)
	scripts atomic.Int64 // EVALSHA round trips answered NOSCRIPT
	topo    atomic.Int64 // a cluster client's own topology round trips

	// trace, if set, is told of every round trip once it is counted, with
	// what it counted as.
	trace func(k rtKind, cmds []goredis.Cmder)
}

// rtKind is what a round trip counts as (see roundTrips).
type rtKind int

const (
	rtOp        rtKind = iota // an operation's
	rtHandshake               // a connection handshake's
	rtScript                  // an EVALSHA answered NOSCRIPT
	rtTopology                // a cluster client's own
)

func (k rtKind) String() string {
	switch k {
	case rtHandshake:
		return "handshake"
	case rtScript:
		return "NOSCRIPT"
	case rtTopology:
		return "topology"
	}
	return "operation"
}

// topologyCmd reports whether cmd is one a go-redis cluster client sends
// itself to learn the cluster's layout or command table (see roundTrips).
func topologyCmd(cmd goredis.Cmder) bool {
	switch cmd.Name() {
	case "command":
		return true
	case "cluster":
		args := cmd.Args()
		if len(args) < 2 {
			return false
		}
		sub, _ := args[1].(string)
		switch strings.ToLower(sub) {
		case "slots", "shards", "nodes":
			return true
		}
	}
	return false
}

// handshakeCmd reports whether cmd is one go-redis sends itself while it
// sets up a connection (see roundTrips). The suite's systems send none of
// these themselves.
func handshakeCmd(cmd goredis.Cmder) bool {
	switch cmd.Name() {
	case "hello", "auth", "select", "readonly":
		return true
	case "client":
		args := cmd.Args()
		if len(args) < 2 {
			return false
		}
		sub, _ := args[1].(string)
		switch strings.ToLower(sub) {
		case "setinfo", "setname", "tracking", "maint_notifications":
			return true
		}
	}
	return false
}

func isEvalSha(cmd goredis.Cmder) bool {
	n := cmd.Name()
	return n == "evalsha" || n == "evalsha_ro"
}

// noScript reports whether err is Redis's NOSCRIPT answer. A pipeline hook
// finds it in its commands' Err; a process hook in what next returned (the
// command's Err is set after the hooks).
func noScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// rtCount is what a roundTrips counted, or the difference of two counts.
type rtCount struct{ ops, hs, conns, scripts, topo int64 }

// snapshot returns what r counted so far.
func (r *roundTrips) snapshot() rtCount {
	return rtCount{ops: r.n.Load(), hs: r.hs.Load(), conns: r.conns.Load(), scripts: r.scripts.Load(), topo: r.topo.Load()}
}

func (a rtCount) sub(b rtCount) rtCount {
	return rtCount{ops: a.ops - b.ops, hs: a.hs - b.hs, conns: a.conns - b.conns, scripts: a.scripts - b.scripts, topo: a.topo - b.topo}
}

func (a rtCount) add(b rtCount) rtCount {
	return rtCount{ops: a.ops + b.ops, hs: a.hs + b.hs, conns: a.conns + b.conns, scripts: a.scripts + b.scripts, topo: a.topo + b.topo}
}

// handshakes describes the round trips kept out of ops, for a note.
func (a rtCount) handshakes() string {
	s := "no connection handshakes"
	if a.hs > 0 {
		s = fmt.Sprintf("connection handshakes (not counted above): %d round trips, %d connections opened", a.hs, a.conns)
	}
	if a.scripts > 0 {
		s += fmt.Sprintf("; %d EVALSHA round trips answered NOSCRIPT (script loads, not counted above)", a.scripts)
	}
	if a.topo > 0 {
		s += fmt.Sprintf("; %d round trips of the cluster client's own (CLUSTER SLOTS, COMMAND; not counted above)", a.topo)
	}
	return s
}

// record counts one round trip of kind k, which sent cmds.
func (r *roundTrips) record(k rtKind, cmds []goredis.Cmder) {
	switch k {
	case rtHandshake:
		r.hs.Add(1)
	case rtScript:
		r.scripts.Add(1)
	case rtTopology:
		r.topo.Add(1)
	default:
		r.n.Add(1)
	}
	if r.trace != nil {
		r.trace(k, cmds)
	}
}

// DialHook implements goredis.Hook.
func (r *roundTrips) DialHook(next goredis.DialHook) goredis.DialHook { return next }

// ProcessHook implements goredis.Hook.
func (r *roundTrips) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		err := next(ctx, cmd)
		k := rtOp
		switch {
		case handshakeCmd(cmd):
			if cmd.Name() == "hello" {
				r.conns.Add(1)
			}
			k = rtHandshake
		case topologyCmd(cmd):
			k = rtTopology
		case isEvalSha(cmd) && noScript(err):
			k = rtScript
		}
		r.record(k, []goredis.Cmder{cmd})
		return err
	}
}

// ProcessPipelineHook implements goredis.Hook. A pipeline is a handshake if
// every command in it is one, topology if every command in it is, and a
// script load if every command in it is an EVALSHA and one was answered
// NOSCRIPT.
func (r *roundTrips) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		err := next(ctx, cmds)
		hs, topo, sha, nos := len(cmds) > 0, len(cmds) > 0, len(cmds) > 0, false
		for _, c := range cmds {
			hs = hs && handshakeCmd(c)
			topo = topo && topologyCmd(c)
			sha = sha && isEvalSha(c)
			nos = nos || noScript(c.Err())
		}
		k := rtOp
		switch {
		case hs:
			k = rtHandshake
		case topo:
			k = rtTopology
		case sha && nos:
			k = rtScript
		}
		r.record(k, cmds)
		return err
	}
}

// MachineInfo describes where a run happened.
type MachineInfo struct {
	CPU        string `json:"cpu"`
	Cores      int    `json:"cores"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	Go         string `json:"go"`
	Redis      string `json:"redis"`
	OS         string `json:"os"`
	LoadBefore string `json:"load_before"`
	LoadAfter  string `json:"load_after"`
}

func machineInfo() MachineInfo {
	return MachineInfo{
		CPU:        cpuModel(),
		Cores:      runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		Go:         runtime.Version(),
		OS:         runtime.GOOS + "/" + runtime.GOARCH,
	}
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// loadAvg returns the 1, 5 and 15 minute load averages, or "" off Linux.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func redisVersion(ctx context.Context, srv *redistest.Server) (string, error) {
	c := goredis.NewClient(srv.Options())
	defer c.Close()
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			return v, nil
		}
	}
	return "", errors.New("no redis_version in INFO server")
}

// The defaults of agentcache.Options that the workloads size their
// baselines by (documented on Options.L1MaxEntries and
// NegativeOptions.FalsePositiveRate).
const (
	defaultL1Entries = 10_000
	defaultFPRate    = 0.01
)
