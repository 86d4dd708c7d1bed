// Command agents is a runnable tour of agentcache: a scripted shopping agent
// (no LLM, no network) whose tool calls go through the cache, on two
// instances of the application that share one Redis, for two users.
//
//	go run ./examples/agents                # embedded Redis-compatible server
//	REDIS_URL=redis://localhost:6379 go run ./examples/agents
//	go run ./examples/agents -redis-down    # Redis goes away mid-run
//	go run ./examples/agents -json          # one JSON object per step
//
// Other flags: -steps N (default: the 32-step script; further steps are
// drawn from -seed), -seed N (tool latencies and extra steps), -trace
// compact|full|none (the trace tree), -redis-url (default $REDIS_URL).
//
// Each step prints the instance (A or B, two pods behind a load balancer),
// the user, the tool, whose result it is (global, user or session scope),
// the tier that answered — l1 (this instance's memory), l2 (Redis, filled by
// either instance), negative (a remembered "not found") or loader (the real
// tool ran) — the latency and the tool time the cache estimates it saved.
// The tier is read from the agentcache.tier attribute of the lookup span,
// recorded by the OpenTelemetry SDK into memory; the run ends with each
// user's run.Summary, each instance's Stats and the trace tree.
//
// What the script shows:
//
//   - a result computed on one instance is served from Redis on the other;
//   - per-user and per-session results are never shared across scopes;
//   - add_to_cart (a mutation) invalidates get_cart for that user only, on
//     every instance, and nobody else's cart;
//   - a guessed order ID that does not exist is remembered: the same guess is
//     answered by the negative cache without calling the tool, on either
//     instance;
//   - with -redis-down, the link to Redis is cut halfway: L1 keeps serving,
//     misses go to the tools, no error reaches the agent, and an invalidation
//     says it could not tell the other instance (which may then serve its
//     older copy until the entry's TTL ends: availability over consistency,
//     as the package documents).
//
// Without REDIS_URL the demo starts miniredis, an in-process
// Redis-compatible server, on a loopback port and says so; the cache talks to
// it over TCP exactly as it would to Redis. With REDIS_URL it uses that
// server, under the key prefix "agentcache-demo:", and starts by
// invalidating everything an earlier run left there.
//
// # JSON output
//
// With -json each step is one line:
//
//	{"step":18,"instance":"A","user":"alice","tool":"add_to_cart","args":{"item":"umbrella"},
//	 "scope_kind":"user","tier":"mutation","latency_ms":34.118,"saved_ms":0,"outcome":"ok",
//	 "error":"","result":"added umbrella, 2 items: travel adapter, umbrella","redis":"up",
//	 "outdated":false,"invalidated":["get_cart"],"fleet_told":true}
//
// tier is l1, l2, negative, loader, or mutation for a write tool (never
// cached); outcome is ok, not_found or error, and error holds the message
// the agent got for the last two; redis is up, or down once -redis-down cut
// the link; outdated marks a get_cart whose items differ from the database.
// invalidated and fleet_told appear on mutations only, warnings (the
// caches' log lines since the previous step) only when there are some. The
// last line is {"summary": {...}}: overall and per-user run.Summary totals
// (by_tier, hit_ratio, miss_ms, saved_ms, and per tool), mutations and how
// many told the fleet, outdated reads, errors, each instance's Stats, the
// tools' run time from their spans, and with -redis-down the totals after
// the cut (after_cut).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/examples/agents/internal/embedded"
	"github.com/agentcache/agentcache-go/examples/agents/internal/faultproxy"
	acrun "github.com/agentcache/agentcache-go/run"
	"github.com/agentcache/agentcache-go/scope"
	acredis "github.com/agentcache/agentcache-go/tier/redis"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "agents:", err)
		os.Exit(1)
	}
}

// quietRedis silences go-redis's own log: it reports the connection
// trouble that the caches already log (once per kind, per instance), and it
// would interleave with the table.
type quietRedis struct{}

var quietOnce sync.Once

func (quietRedis) Printf(context.Context, string, ...any) {}

// keyPrefix isolates the demo's keys in a shared Redis.
const keyPrefix = "agentcache-demo:"

// think is the pause between two steps, where a real agent would wait for
// its LLM. It also leaves invalidation messages their few milliseconds to
// reach the other instance before it is asked for what they invalidated.
const think = 10 * time.Millisecond

type config struct {
	steps     int
	json      bool
	redisDown bool
	seed      uint64
	redisURL  string
	urlFrom   string // "REDIS_URL" or "-redis-url"
	trace     string
}

func parseFlags(args []string) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("agents", flag.ContinueOnError)
	fs.IntVar(&cfg.steps, "steps", len(script), "number of scripted steps (beyond the script, more are drawn from -seed)")
	fs.BoolVar(&cfg.json, "json", false, "print one JSON object per step and a final {\"summary\": ...}")
	fs.BoolVar(&cfg.redisDown, "redis-down", false, "cut the link to Redis halfway through the run")
	fs.Uint64Var(&cfg.seed, "seed", 1, "seed for tool latencies and extra steps")
	fs.StringVar(&cfg.redisURL, "redis-url", os.Getenv("REDIS_URL"), "Redis to use (default $REDIS_URL; empty: start an embedded server)")
	fs.StringVar(&cfg.trace, "trace", "compact", "trace tree: compact (L2 round trips folded), full, or none")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	cfg.urlFrom = "REDIS_URL"
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "redis-url" {
			cfg.urlFrom = "-redis-url"
		}
	})
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if cfg.steps < 1 || cfg.steps > 10_000 {
		return cfg, fmt.Errorf("-steps %d: want 1 to 10000", cfg.steps)
	}
	switch cfg.trace {
	case "compact", "full", "none":
	default:
		return cfg, fmt.Errorf("-trace %q: want compact, full or none", cfg.trace)
	}
	return cfg, nil
}

// run is the whole demo: flags in args, report on stdout.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	cfg, err := parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	quietOnce.Do(func() { goredis.SetLogger(quietRedis{}) })
	d := &demo{cfg: cfg, shop: newShop(cfg.seed)}
	if cfg.json {
		d.out = &jsonReport{w: stdout}
	} else {
		d.out = &textReport{w: stdout, traceMode: cfg.trace}
	}
	defer d.close()
	if err := d.setup(ctx); err != nil {
		return err
	}
	return d.play(ctx)
}

// demo is one run: the L2, two instances, two users, the recorded spans.
type demo struct {
	cfg  config
	out  reporter
	shop *shop

	mini   *miniredis.Miniredis // embedded mode
	proxy  *faultproxy.Proxy    // with -redis-down
	l2     l2Info
	cut    bool // the link to Redis has been cut
	failed int  // steps that returned an error to the agent

	stores []*acredis.Store
	insts  []*instance
	users  []*user
	warns  *warnSink

	tp     *sdktrace.TracerProvider
	spans  *spanLog
	tracer trace.Tracer
}

// l2Info describes the Redis in use, for the report.
type l2Info struct {
	Mode  string `json:"mode"`  // "embedded" or "redis"
	Addr  string `json:"addr"`  // host:port of the server (not the proxy)
	Proxy bool   `json:"proxy"` // reached through the demo's cuttable proxy
	From  string `json:"-"`     // where the URL came from
}

func (d *demo) setup(ctx context.Context) error {
	d.spans = &spanLog{}
	// A synchronous exporter: a span is readable as soon as it ends, which
	// is how each step learns its tier.
	d.tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(d.spans))
	d.tracer = d.tp.Tracer("github.com/agentcache/agentcache-go/examples/agents")
	d.warns = &warnSink{}

	rawURL, err := d.startL2()
	if err != nil {
		return err
	}
	for _, name := range []string{"A", "B"} {
		// Each instance has its own connection pool, as separate pods would.
		store, err := acredis.NewFromURL(rawURL, acredis.Options{Prefix: keyPrefix})
		if err != nil {
			return err
		}
		d.stores = append(d.stores, store)
		c, err := agentcache.New(agentcache.Options{
			L2: store,

			Logger: slog.New(&warnHandler{sink: d.warns, inst: name}), Telemetry: agentcache.TelemetryOptions{TracerProvider: d.tp, Name: "pod-" + strings.ToLower(name)},
		})
		if err != nil {
			return err
		}
		in := &instance{name: name, cache: c}
		d.insts = append(d.insts, in)
		if err := in.wrapTools(d.shop, d.tracer); err != nil {
			return err
		}
	}
	// A new Cache subscribes to invalidations in the background, and the
	// subscription's first confirmation resets what the instance knows
	// (drops L1, marks epochs unconfirmed). Lookups racing it would pay an
	// extra epoch round trip later; a pod would be warming up anyway. There
	// is no API to wait for the subscription, so give it a moment.
	time.Sleep(100 * time.Millisecond)
	if d.l2.Mode == "redis" {
		// Entries of an earlier run would answer this one from L2. One epoch
		// bump makes them unreachable (they age out by TTL); no SCAN.
		if err := d.insts[0].cache.Invalidate(ctx, agentcache.TargetAll()); err != nil {
			return fmt.Errorf("dropping earlier demo entries: %w", err)
		}
	}
	for _, u := range []struct{ name, id, session string }{
		{"alice", aliceID, aliceSession}, {"bob", bobID, bobSession},
	} {
		uctx := scope.WithSession(scope.WithUser(ctx, u.id), u.session)
		uctx, r := acrun.Start(uctx)
		uctx, root := d.tracer.Start(uctx, "invoke_agent shop-assistant", trace.WithAttributes(
			attribute.String("gen_ai.operation.name", "invoke_agent"),
			attribute.String("gen_ai.agent.name", "shop-assistant")))
		d.users = append(d.users, &user{name: u.name, id: u.id, session: u.session, ctx: uctx, run: r, root: root})
	}
	return nil
}

// startL2 starts the embedded server or checks REDIS_URL, puts the proxy in
// front with -redis-down, and returns the URL the stores should dial.
func (d *demo) startL2() (string, error) {
	rawURL := d.cfg.redisURL
	if rawURL == "" {
		m, err := embedded.Start()
		if err != nil {
			return "", err
		}
		d.mini = m
		rawURL = "redis://" + m.Addr()
		d.l2 = l2Info{Mode: "embedded", Addr: m.Addr()}
	} else {
		u, err := url.Parse(rawURL)
		if err != nil {
			// Never echo the URL: it may hold a password.
			return "", errors.New("REDIS_URL (or -redis-url) is not a valid URL")
		}
		addr := u.Host
		if addr == "" {
			addr = u.Path // unix:///path/to/socket
		}
		d.l2 = l2Info{Mode: "redis", Addr: addr, From: d.cfg.urlFrom}
	}
	if !d.cfg.redisDown {
		return rawURL, nil
	}
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "redis" || u.Host == "" {
		return "", errors.New("-redis-down needs a redis://host:port URL: it cuts a TCP proxy placed in front of that address")
	}
	target := u.Host
	if u.Port() == "" {
		target = net.JoinHostPort(u.Hostname(), "6379")
	}
	p, err := faultproxy.Start(target)
	if err != nil {
		return "", err
	}
	d.proxy = p
	d.l2.Addr, d.l2.Proxy = target, true
	u.Host = p.Addr()
	return u.String(), nil
}

// play runs the steps and reports them, then the summary.
func (d *demo) play(ctx context.Context) error {
	steps := extend(d.cfg.steps, rand.New(rand.NewPCG(d.cfg.seed, 0xa6e27)))
	cutBefore := 0
	if d.cfg.redisDown {
		cutBefore = len(steps)/2 + 1
	}
	d.out.header(d.l2, len(steps), cutBefore)
	start := time.Now()
	var results []stepResult
	for i, s := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := i + 1
		if n == cutBefore {
			d.proxy.Cut()
			d.cut = true
			d.out.cut(n)
		}
		in, u := d.insts[s.inst], d.users[s.user]
		r := d.do(n, s, in, u)
		r.Warnings = d.warns.drain()
		results = append(results, r)
		d.out.step(r)
		if r.Outcome == "error" {
			// An error that reached the agent is what the demo promises
			// never happens; say so loudly but finish the run.
			d.failed++
		}
		time.Sleep(think)
	}
	for _, u := range d.users {
		u.root.End()
	}
	sum := d.summarize(results, time.Since(start), cutBefore)
	d.out.trace(d.spans.all(), d.users)
	d.out.summary(sum)
	if d.failed > 0 {
		return fmt.Errorf("%d steps returned an error to the agent", d.failed)
	}
	return nil
}

// close releases everything setup started, in reverse order.
func (d *demo) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for _, in := range d.insts {
		_ = in.cache.Close(ctx)
	}
	for _, s := range d.stores {
		_ = s.Close()
	}
	if d.proxy != nil {
		_ = d.proxy.Close()
	}
	if d.mini != nil {
		d.mini.Close()
	}
	if d.tp != nil {
		_ = d.tp.Shutdown(ctx)
	}
}

// warnSink collects the caches' log lines so they print under the step
// that caused them instead of interleaving with the table.
type warnSink struct {
	mu    sync.Mutex // guards lines
	lines []string
}

func (s *warnSink) add(line string) {
	s.mu.Lock()
	s.lines = append(s.lines, line)
	s.mu.Unlock()
}

func (s *warnSink) drain() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.lines
	s.lines = nil
	return out
}

// warnHandler is the slog.Handler of one instance's cache.
type warnHandler struct {
	sink  *warnSink
	inst  string
	attrs []slog.Attr
}

func (h *warnHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *warnHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(h.inst + ": " + r.Message)
	add := func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	h.sink.add(b.String())
	return nil
}

func (h *warnHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &c
}

func (h *warnHandler) WithGroup(string) slog.Handler { return h }
