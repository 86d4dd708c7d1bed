package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentcache/agentcache-go/agentcache"
	acotel "github.com/agentcache/agentcache-go/otel"
	"github.com/agentcache/agentcache-go/resource"
	acrun "github.com/agentcache/agentcache-go/run"
	"github.com/agentcache/agentcache-go/scope"
)

// The cached tools. Each is wrapped once per instance; the resource says
// whose its results are and how long they live.
var (
	weatherRes = resource.Resource{Name: "get_weather", Scope: scope.Global, TTL: 10 * time.Minute}
	cartRes    = resource.Resource{Name: "get_cart", Scope: scope.User, TTL: time.Minute}
	searchRes  = resource.Resource{Name: "search_docs", Scope: scope.Global, TTL: time.Hour}
	orderRes   = resource.Resource{Name: "get_order", Scope: scope.User, TTL: 5 * time.Minute, NegativeTTL: time.Minute}
	notesRes   = resource.Resource{Name: "session_notes", Scope: scope.Session, TTL: 10 * time.Minute}
)

// The demo's users. The IDs are what the cache sees (and keeps out of
// traces); the names are for the console.
const (
	aliceID      = "u-1001"
	bobID        = "u-2002"
	aliceSession = "s-7f3a"
	bobSession   = "s-91c4"
)

// instance is one replica of the application (one pod): its own Cache and
// L1, the shared L2, and the shop's tools wrapped by its cache.
type instance struct {
	name  string
	cache *agentcache.Cache

	weather func(context.Context, WeatherArgs) (Forecast, error)
	cart    func(context.Context, NoArgs) (Cart, error)
	add     func(context.Context, AddArgs) (Cart, error)
	search  func(context.Context, SearchArgs) (SearchResult, error)
	order   func(context.Context, OrderArgs) (Order, error)
	notes   func(context.Context, NoArgs) (Notes, error)
}

// wrapTools wraps the shop's tools with in's cache: reads with Wrap, the
// cart write with WrapMutation, which drops the caller's get_cart entries on
// every instance when it succeeds.
func (in *instance) wrapTools(s *shop, tracer trace.Tracer) error {
	var errs []error
	collect := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var err error
	in.weather, err = agentcache.Wrap(in.cache, weatherRes, s.getWeather)
	collect(err)
	in.cart, err = agentcache.Wrap(in.cache, cartRes, s.getCart)
	collect(err)
	in.add, err = agentcache.WrapMutation(in.cache, []resource.Resource{cartRes}, traced(tracer, "add_to_cart", s.addToCart))
	collect(err)
	in.search, err = agentcache.Wrap(in.cache, searchRes, s.searchDocs)
	collect(err)
	in.order, err = agentcache.Wrap(in.cache, orderRes, s.getOrder)
	collect(err)
	in.notes, err = agentcache.Wrap(in.cache, notesRes, s.sessionNotes)
	collect(err)
	return errors.Join(errs...)
}

// traced gives a write tool the execute_tool span that the cache gives the
// read tools it runs, so the trace shows the tool next to the invalidation.
func traced[A, R any](tracer trace.Tracer, name string, tool func(context.Context, A) (R, error)) func(context.Context, A) (R, error) {
	return func(ctx context.Context, a A) (R, error) {
		ctx, span := tracer.Start(ctx, acotel.SpanTool+" "+name, trace.WithAttributes(
			acotel.KeyGenAIOperation.String(acotel.OpExecuteTool), acotel.KeyGenAIToolName.String(name)))
		defer span.End()
		r, err := tool(ctx, a)
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		return r, err
	}
}

// user is one person talking to the agent. Their context carries their
// scope IDs, their run.Run and the root span of their agent run, whichever
// instance serves each turn.
type user struct {
	name, id, session string
	ctx               context.Context
	run               *acrun.Run
	root              trace.Span
}

// step is one tool call of the script.
type step struct {
	inst int    // index into the instances: 0 is A, 1 is B
	user int    // 0 is alice, 1 is bob
	tool string // tool name
	arg  string // the city, query, item or order ID; "" for tools without arguments
}

// script is the scripted session. Each comment says what the step shows
// with a healthy Redis; the load balancer sends turns to either instance.
var script = []step{
	{0, 0, "get_weather", "Lisbon"},        // first call anywhere: the tool runs
	{0, 0, "search_docs", "return policy"}, // the slow tool, first call
	{0, 0, "get_cart", ""},                 // alice's cart, first read
	{1, 1, "get_weather", "Oslo"},
	{1, 1, "get_weather", "Lisbon"}, // B never asked, but A put it in Redis: L2
	{1, 1, "search_docs", "shipping to Portugal"},
	{1, 1, "search_docs", "return policy"}, // A's slow search, from L2 on B
	{1, 1, "get_cart", ""},                 // bob's own cart: per user, so the tool runs
	{1, 0, "get_cart", ""},                 // alice lands on B: her cart from L2
	{0, 0, "session_notes", ""},
	{1, 1, "session_notes", ""}, // bob's session is another scope: the tool runs
	{0, 0, "get_order", "A-1001"},
	{1, 1, "get_order", "B-2001"},
	{0, 0, "get_order", "A-1002"}, // the agent guesses an order ID: not found
	{0, 0, "get_order", "A-1002"}, // the same guess: the negative cache answers
	{1, 0, "get_order", "A-1002"}, // on B too, from the marker in Redis
	{0, 0, "get_weather", "Lisbon"},
	{0, 0, "add_to_cart", "umbrella"}, // drops alice's get_cart everywhere
	{0, 0, "get_cart", ""},            // so the tool runs again
	{1, 1, "get_cart", ""},            // bob's cart was not touched: L1
	{1, 0, "get_cart", ""},            // B dropped its copy of alice's old cart: the new one from L2
	{0, 0, "session_notes", ""},       // L1
	{1, 0, "session_notes", ""},       // alice's session on B: L2
	{0, 1, "search_docs", "return policy"},
	{1, 1, "add_to_cart", "socks"},
	{1, 1, "get_cart", ""},
	{0, 0, "get_cart", ""}, // bob's mutation left alice's cart alone: L1
	{0, 1, "get_weather", "Lisbon"},
	{1, 1, "get_weather", "Oslo"},
	{0, 0, "search_docs", "return policy"},
	{1, 0, "get_cart", ""},
	{0, 1, "get_cart", ""}, // bob's new cart, written to Redis by B: L2
}

// extend returns the script cut or extended to n steps. Extra steps are
// drawn from rng, weighted towards reads as real agent traffic is.
func extend(n int, rng *rand.Rand) []step {
	if n <= len(script) {
		return slices.Clone(script[:n])
	}
	out := slices.Clone(script)
	cities := []string{"Lisbon", "Oslo", "Nairobi"}
	queries := []string{"return policy", "shipping to Portugal", "gift cards", "shipping costs"}
	items := []string{"sunscreen", "map", "headlamp", "socks"}
	for len(out) < n {
		s := step{inst: rng.IntN(2), user: rng.IntN(2)}
		switch r := rng.IntN(100); {
		case r < 20:
			s.tool, s.arg = "get_weather", cities[rng.IntN(len(cities))]
		case r < 40:
			s.tool, s.arg = "search_docs", queries[rng.IntN(len(queries))]
		case r < 60:
			s.tool = "get_cart"
		case r < 67:
			s.tool, s.arg = "add_to_cart", items[rng.IntN(len(items))]
		case r < 85:
			// The user's real order, or a guess next to it.
			s.tool, s.arg = "get_order", fmt.Sprintf("%c-%d", "AB"[s.user], [2]int{1001, 2001}[s.user]+rng.IntN(3))
		default:
			s.tool = "session_notes"
		}
		out = append(out, s)
	}
	return out
}

// scopeOf is the scope kind of each tool ("user" for the mutation, whose
// invalidation is per user).
var scopeOf = map[string]scope.Kind{
	"get_weather": weatherRes.Scope, "get_cart": cartRes.Scope, "add_to_cart": scope.User,
	"search_docs": searchRes.Scope, "get_order": orderRes.Scope, "session_notes": notesRes.Scope,
}

// tierMutation is the tier reported for a write tool: it always runs and is
// never cached.
const tierMutation = "mutation"

// stepResult is one line of output, and one JSON object with -json.
type stepResult struct {
	Step      int             `json:"step"`
	Instance  string          `json:"instance"`
	User      string          `json:"user"`
	Tool      string          `json:"tool"`
	Args      json.RawMessage `json:"args"`
	ScopeKind string          `json:"scope_kind"`
	Tier      string          `json:"tier"`
	LatencyMS float64         `json:"latency_ms"`
	SavedMS   float64         `json:"saved_ms"`
	Outcome   string          `json:"outcome"` // "ok", "not_found" or "error"
	Error     string          `json:"error"`
	Result    string          `json:"result"`
	Redis     string          `json:"redis"`    // "up", or "down" once the link was cut
	Outdated  bool            `json:"outdated"` // a cart that no longer matches the database
	// Mutations only.
	Invalidated []string `json:"invalidated,omitempty"`
	FleetTold   *bool    `json:"fleet_told,omitempty"`
	// Warnings the caches logged since the previous step.
	Warnings []string `json:"warnings,omitempty"`

	latency, saved time.Duration
}

// do runs one step on in for u and reports it. The step is a span whose
// lookup child says which tier answered.
func (d *demo) do(n int, s step, in *instance, u *user) stepResult {
	ctx, span := d.tracer.Start(u.ctx, "agent.step", trace.WithAttributes(
		attribute.Int("demo.step", n), attribute.String("demo.instance", in.name)))
	res := stepResult{Step: n, Instance: in.name, User: u.name, Tool: s.tool,
		ScopeKind: scopeOf[s.tool].String(), Outcome: "ok", Redis: "up"}
	if d.cut {
		res.Redis = "down"
	}
	before := u.run.Summary().TimeSaved
	mark := d.spans.len()
	fleetErrs := in.cache.Stats().FleetErrors
	start := time.Now()
	var args any
	var err error
	switch s.tool {
	case "get_weather":
		a := WeatherArgs{City: s.arg}
		args = a
		var f Forecast
		if f, err = in.weather(ctx, a); err == nil {
			res.Result = fmt.Sprintf("%s %d°C, %s", f.City, f.TempC, f.Summary)
		}
	case "search_docs":
		a := SearchArgs{Query: s.arg}
		args = a
		var r SearchResult
		if r, err = in.search(ctx, a); err == nil {
			res.Result = fmt.Sprintf("%s for %q", plural(len(r.Hits), "hit"), a.Query)
		}
	case "get_cart":
		args = NoArgs{}
		var c Cart
		if c, err = in.cart(ctx, NoArgs{}); err == nil {
			res.Result = describeCart(c.Items)
			if truth := d.shop.cartOf(u.id); !slices.Equal(truth, c.Items) {
				res.Outdated = true
				res.Result += fmt.Sprintf(" (OUTDATED: the database has %d)", len(truth))
			}
		}
	case "add_to_cart":
		a := AddArgs{Item: s.arg}
		args = a
		res.Tier = tierMutation
		var c Cart
		if c, err = in.add(ctx, a); err == nil {
			res.Result = fmt.Sprintf("added %s, %s", a.Item, describeCart(c.Items))
			res.Invalidated = []string{cartRes.Name}
			told := in.cache.Stats().FleetErrors == fleetErrs
			res.FleetTold = &told
		}
	case "get_order":
		a := OrderArgs{ID: s.arg}
		args = a
		var o Order
		if o, err = in.order(ctx, a); err == nil {
			res.Result = fmt.Sprintf("%s %s", o.ID, o.Status)
			if o.ETA != "" {
				res.Result += ", arrives " + o.ETA
			}
		}
	case "session_notes":
		args = NoArgs{}
		var nt Notes
		if nt, err = in.notes(ctx, NoArgs{}); err == nil {
			res.Result = plural(len(nt.Lines), "note") + ": " + strings.Join(nt.Lines, "; ")
		}
	default:
		err = fmt.Errorf("unknown tool %q", s.tool)
	}
	res.latency = time.Since(start)
	span.End()

	res.Args, _ = json.Marshal(args)
	if res.Tier == "" {
		res.Tier = d.tierOf(mark, span.SpanContext().SpanID())
	}
	res.saved = u.run.Summary().TimeSaved - before
	res.LatencyMS, res.SavedMS = ms(res.latency), ms(res.saved)
	switch {
	case errors.Is(err, agentcache.ErrNotFound):
		res.Outcome, res.Error, res.Result = "not_found", err.Error(), "not found"
	case err != nil:
		res.Outcome, res.Error = "error", err.Error()
	}
	return res
}

// tierOf reads the tier that answered a step from the agentcache.tier
// attribute of the lookup span under the step's span, among the spans that
// ended since mark.
func (d *demo) tierOf(mark int, stepSpan trace.SpanID) string {
	for _, sp := range d.spans.since(mark) {
		if sp.Parent().SpanID() != stepSpan || !strings.HasPrefix(sp.Name(), acotel.SpanLookup) {
			continue
		}
		for _, kv := range sp.Attributes() {
			if kv.Key == acotel.KeyTier {
				return kv.Value.AsString()
			}
		}
	}
	return "?"
}

func describeCart(items []string) string {
	return plural(len(items), "item") + ": " + strings.Join(items, ", ")
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// ms is d in milliseconds, rounded to the microsecond.
func ms(d time.Duration) float64 {
	return float64(d.Round(time.Microsecond)) / float64(time.Millisecond)
}
