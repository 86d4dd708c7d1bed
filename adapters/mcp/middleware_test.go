package agentmcp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/agentcache/agentcache-go/adapters/mcp"
	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/internal/testkit/wait"
	acotel "github.com/agentcache/agentcache-go/otel"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
)

var (
	weather = resource.Resource{Name: "get_weather", TTL: time.Minute}
	cart    = resource.Resource{Name: "get_cart", Scope: scope.User, TTL: time.Minute}
	notes   = resource.Resource{Name: "session_notes", Scope: scope.Session, TTL: time.Minute}
	orders  = resource.Resource{Name: "get_order", TTL: time.Minute, NegativeTTL: time.Minute}
)

// fixture is a server with counted tools behind the middleware.
type fixture struct {
	t      testing.TB
	cache  *agentcache.Cache
	server *mcp.Server
	runs   sync.Map // tool name → *atomic.Int64
	gate   chan struct{}
}

func (f *fixture) count(name string) *atomic.Int64 {
	v, _ := f.runs.LoadOrStore(name, new(atomic.Int64))
	return v.(*atomic.Int64)
}

func (f *fixture) ran(name string) int64 { return f.count(name).Load() }

type cityArgs struct {
	City  string `json:"city"`
	Units string `json:"units,omitempty"`
}

type itemArgs struct {
	Item string `json:"item"`
	Fail bool   `json:"fail,omitempty"`
}

type orderArgs struct {
	ID string `json:"id"`
}

type empty struct{}

func newFixture(t testing.TB, copts agentcache.Options, policy agentmcp.Policy, opts *agentmcp.Options) *fixture {
	t.Helper()
	c, err := agentcache.New(copts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	f := &fixture{t: t, cache: c, server: mcp.NewServer(&mcp.Implementation{Name: "shop", Version: "v1"}, nil)}
	s := f.server

	mcp.AddTool(s, &mcp.Tool{Name: "get_weather", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		func(ctx context.Context, _ *mcp.CallToolRequest, in cityArgs) (*mcp.CallToolResult, any, error) {
			n := f.count("get_weather").Add(1)
			if f.gate != nil {
				<-f.gate
			}
			return text(fmt.Sprintf("%s %s: sunny (run %d)", in.City, in.Units, n)), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "get_cart", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		func(ctx context.Context, _ *mcp.CallToolRequest, _ empty) (*mcp.CallToolResult, any, error) {
			n := f.count("get_cart").Add(1)
			user, _ := scope.UserFrom(ctx)
			return text(fmt.Sprintf("cart of %s (run %d)", user, n)), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "add_to_cart", Annotations: &mcp.ToolAnnotations{DestructiveHint: new(true)}},
		func(ctx context.Context, _ *mcp.CallToolRequest, in itemArgs) (*mcp.CallToolResult, any, error) {
			f.count("add_to_cart").Add(1)
			if in.Fail {
				return nil, nil, errors.New("out of stock")
			}
			return text("added " + in.Item), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "delete_cart", Annotations: &mcp.ToolAnnotations{DestructiveHint: new(true)}},
		func(ctx context.Context, _ *mcp.CallToolRequest, _ empty) (*mcp.CallToolResult, any, error) {
			n := f.count("delete_cart").Add(1)
			return text(fmt.Sprintf("deleted (run %d)", n)), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "flaky"},
		func(ctx context.Context, _ *mcp.CallToolRequest, _ empty) (*mcp.CallToolResult, any, error) {
			n := f.count("flaky").Add(1)
			res := errorText(fmt.Sprintf("upstream timeout (run %d)", n))
			res.Meta = mcp.Meta{"attempt": n}
			if f.gate != nil {
				<-f.gate
			}
			return res, nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "get_order"},
		func(ctx context.Context, _ *mcp.CallToolRequest, in orderArgs) (*mcp.CallToolResult, any, error) {
			f.count("get_order").Add(1)
			if in.ID != "A1" {
				return nil, nil, fmt.Errorf("order %s: %w", in.ID, agentcache.ErrNotFound)
			}
			return text("order A1: shipped"), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "session_notes"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ empty) (*mcp.CallToolResult, any, error) {
			n := f.count("session_notes").Add(1)
			return text(fmt.Sprintf("notes (run %d)", n)), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "structured"},
		func(ctx context.Context, _ *mcp.CallToolRequest, in cityArgs) (*mcp.CallToolResult, map[string]any, error) {
			n := f.count("structured").Add(1)
			return nil, map[string]any{"city": in.City, "run": n}, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "echo"},
		func(ctx context.Context, _ *mcp.CallToolRequest, _ empty) (*mcp.CallToolResult, any, error) {
			f.count("echo").Add(1)
			return text("echo"), nil, nil
		})

	if policy == nil {
		policy = defaultPolicy()
	}
	mw, err := agentmcp.NewMiddleware(c, policy, opts)
	if err != nil {
		t.Fatal(err)
	}
	s.AddReceivingMiddleware(mw)
	return f
}

func defaultPolicy() agentmcp.Policy {
	return agentmcp.Policy{
		"get_weather":   {Resource: weather},
		"get_cart":      {Resource: cart},
		"add_to_cart":   {Invalidates: []resource.Resource{cart}},
		"delete_cart":   {Resource: resource.Resource{Name: "delete_cart"}}, // destructive: never cached
		"flaky":         {Resource: resource.Resource{Name: "flaky"}},
		"get_order":     {Resource: orders},
		"session_notes": {Resource: notes},
		"structured":    {Resource: resource.Resource{Name: "structured"}},
	}
}

// connect opens an in-memory client session; serverCtx is the context the
// server side of the session runs with (where an application puts the
// user with scope.WithUser).
func (f *fixture) connect(serverCtx context.Context) *mcp.ClientSession {
	f.t.Helper()
	st, ct := mcp.NewInMemoryTransports()
	ss, err := f.server.Connect(serverCtx, st, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "v1"}, nil)
	cs, err := client.Connect(context.Background(), ct, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { cs.Close(); ss.Wait() })
	return cs
}

func call(t *testing.T, cs *mcp.ClientSession, name, args string) *mcp.CallToolResult {
	t.Helper()
	p := &mcp.CallToolParams{Name: name}
	if args != "" {
		p.Arguments = json.RawMessage(args)
	}
	res, err := cs.CallTool(context.Background(), p)
	if err != nil {
		t.Fatalf("CallTool %s %s: %v", name, args, err)
	}
	return res
}

func text(s string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}

func errorText(s string) *mcp.CallToolResult {
	return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}

func textOf(t *testing.T, res *mcp.CallToolResult) string {
	t.Helper()
	var b strings.Builder
	for _, c := range res.Content {
		tc, ok := c.(*mcp.TextContent)
		if !ok {
			t.Fatalf("content %T, want text", c)
		}
		b.WriteString(tc.Text)
	}
	return b.String()
}

func wantRuns(t *testing.T, f *fixture, name string, want int64) {
	t.Helper()
	if got := f.ran(name); got != want {
		t.Errorf("%s ran %d times, want %d", name, got, want)
	}
}

func TestCachedAcrossArgumentSpellings(t *testing.T) {
	f := newFixture(t, agentcache.Options{}, nil, nil)
	cs := f.connect(context.Background())

	first := call(t, cs, "get_weather", `{"city":"Paris","units":"C"}`)
	for _, args := range []string{
		`{"units":"C","city":"Paris"}`,
		` { "city" : "Paris" , "units" : "C" } `,
		`{"city":"Par\u0069s","units":"C"}`,
	} {
		res := call(t, cs, "get_weather", args)
		if res.IsError || textOf(t, res) != textOf(t, first) {
			t.Errorf("%s: got %q (IsError %v), want the cached %q", args, textOf(t, res), res.IsError, textOf(t, first))
		}
	}
	wantRuns(t, f, "get_weather", 1)

	if got := textOf(t, call(t, cs, "get_weather", `{"city":"Oslo","units":"C"}`)); got != "Oslo C: sunny (run 2)" {
		t.Errorf("other arguments: got %q", got)
	}
	wantRuns(t, f, "get_weather", 2)
}

func TestStructuredContentCached(t *testing.T) {
	f := newFixture(t, agentcache.Options{}, nil, nil)
	cs := f.connect(context.Background())
	a := call(t, cs, "structured", `{"city":"Rome"}`)
	b := call(t, cs, "structured", `{"city":"Rome"}`)
	wantRuns(t, f, "structured", 1)
	ja, _ := json.Marshal(a.StructuredContent)
	jb, _ := json.Marshal(b.StructuredContent)
	if string(ja) != `{"city":"Rome","run":1}` || string(ja) != string(jb) {
		t.Errorf("structured content: first %s, cached %s", ja, jb)
	}
	if textOf(t, a) != textOf(t, b) {
		t.Errorf("text content: first %q, cached %q", textOf(t, a), textOf(t, b))
	}
}

func TestConcurrentIdenticalCallsRunOnce(t *testing.T) {
	f := newFixture(t, agentcache.Options{}, nil, nil)
	f.gate = make(chan struct{})
	cs := f.connect(context.Background())

	const n = 8
	var wg sync.WaitGroup
	results := make([]string, n)
	for i := range n {
		wg.Go(func() {
			results[i] = textOf(t, call(t, cs, "get_weather", `{"city":"Lima"}`))
		})
	}
	wait.For(t, 5*time.Second, "the other calls joining the load", func() bool { return f.cache.Stats().Joined == n-1 })
	close(f.gate)
	wg.Wait()
	for i, r := range results {
		if r != "Lima : sunny (run 1)" {
			t.Errorf("call %d: %q", i, r)
		}
	}
	wantRuns(t, f, "get_weather", 1)
}

func TestPerUserRunsOncePerUser(t *testing.T) {
	f := newFixture(t, agentcache.Options{}, nil, nil)
	alice := f.connect(scope.WithUser(context.Background(), "alice"))
	bob := f.connect(scope.WithUser(context.Background(), "bob"))

	for range 3 {
		if got := textOf(t, call(t, alice, "get_cart", `{}`)); got != "cart of alice (run 1)" {
			t.Errorf("alice: %q", got)
		}
	}
	for range 3 {
		got := textOf(t, call(t, bob, "get_cart", `{}`))
		if !strings.HasPrefix(got, "cart of bob ") {
			t.Errorf("bob: %q", got)
		}
	}
	wantRuns(t, f, "get_cart", 2)
}

func TestPerUserWithoutUserFailsClosed(t *testing.T) {
	f := newFixture(t, agentcache.Options{}, nil, nil)
	anon := f.connect(context.Background())

	res := call(t, anon, "get_cart", `{}`)
	if !res.IsError || !strings.Contains(textOf(t, res), "no user ID") {
		t.Errorf("get_cart without a user: IsError %v, %q; want an error result", res.IsError, textOf(t, res))
	}
	wantRuns(t, f, "get_cart", 0)

	// A mutation that could not invalidate the user's cart is refused too.
	res = call(t, anon, "add_to_cart", `{"item":"tea"}`)
	if !res.IsError {
		t.Errorf("add_to_cart without a user: %q, want an error result", textOf(t, res))
	}
	wantRuns(t, f, "add_to_cart", 0)

	// An invalid user ID fails the same way.
	bad := f.connect(scope.WithUser(context.Background(), "alice smith"))
	if res := call(t, bad, "get_cart", `{}`); !res.IsError {
		t.Errorf("get_cart with an invalid user: %q, want an error result", textOf(t, res))
	}
	wantRuns(t, f, "get_cart", 0)
}

func TestDestructiveNeverCachedAndInvalidates(t *testing.T) {
	f := newFixture(t, agentcache.Options{}, nil, nil)
	alice := f.connect(scope.WithUser(context.Background(), "alice"))
	bob := f.connect(scope.WithUser(context.Background(), "bob"))

	// delete_cart has a Resource in the policy but is annotated destructive.
	for i := 1; i <= 3; i++ {
		if got := textOf(t, call(t, alice, "delete_cart", `{}`)); got != fmt.Sprintf("deleted (run %d)", i) {
			t.Errorf("delete_cart call %d: %q", i, got)
		}
	}

	call(t, alice, "get_cart", `{}`)
	call(t, bob, "get_cart", `{}`)
	wantRuns(t, f, "get_cart", 2)

	// A failed write (error result) invalidates nothing.
	if res := call(t, alice, "add_to_cart", `{"item":"tea","fail":true}`); !res.IsError {
		t.Errorf("failing add_to_cart: %q, want an error result", textOf(t, res))
	}
	call(t, alice, "get_cart", `{}`)
	wantRuns(t, f, "get_cart", 2)

	// A successful one invalidates alice's cart only, and runs every time.
	for range 2 {
		if got := textOf(t, call(t, alice, "add_to_cart", `{"item":"tea"}`)); got != "added tea" {
			t.Errorf("add_to_cart: %q", got)
		}
	}
	wantRuns(t, f, "add_to_cart", 3)
	if got := textOf(t, call(t, alice, "get_cart", `{}`)); got != "cart of alice (run 3)" {
		t.Errorf("alice after her write: %q", got)
	}
	if got := textOf(t, call(t, bob, "get_cart", `{}`)); !strings.HasSuffix(got, "(run 2)") {
		t.Errorf("bob after alice's write: %q, want his cached cart", got)
	}
	wantRuns(t, f, "get_cart", 3)
}

func TestErrorResultNotCached(t *testing.T) {
	f := newFixture(t, agentcache.Options{}, nil, nil)
	cs := f.connect(context.Background())
	for i := 1; i <= 3; i++ {
		res := call(t, cs, "flaky", `{}`)
		if !res.IsError || textOf(t, res) != fmt.Sprintf("upstream timeout (run %d)", i) {
			t.Errorf("call %d: IsError %v, %q", i, res.IsError, textOf(t, res))
		}
	}
	wantRuns(t, f, "flaky", 3)
}

// TestSharedErrorResult makes concurrent identical calls share one load that
// returns an error result: each caller gets its own copy (the SDK writes to
// the result's _meta before sending it; the race detector watches).
func TestSharedErrorResult(t *testing.T) {
	f := newFixture(t, agentcache.Options{}, nil, nil)
	f.gate = make(chan struct{})
	cs := f.connect(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if res := call(t, cs, "flaky", `{}`); !res.IsError {
				t.Errorf("got %q, want an error result", textOf(t, res))
			}
		})
	}
	wait.For(t, 5*time.Second, "3 calls joining the load", func() bool { return f.cache.Stats().Joined == 3 })
	close(f.gate)
	wg.Wait()
}

func TestNotFoundIsRemembered(t *testing.T) {
	f := newFixture(t, agentcache.Options{}, nil, nil)
	cs := f.connect(context.Background())

	res := call(t, cs, "get_order", `{"id":"Z9"}`)
	if !res.IsError || textOf(t, res) != "order Z9: agentcache: not found" {
		t.Errorf("first guess: IsError %v, %q", res.IsError, textOf(t, res))
	}
	res = call(t, cs, "get_order", `{"id":"Z9"}`)
	if !res.IsError || textOf(t, res) != "get_order: not found" {
		t.Errorf("repeated guess: IsError %v, %q", res.IsError, textOf(t, res))
	}
	wantRuns(t, f, "get_order", 1)

	call(t, cs, "get_order", `{"id":"A1"}`)
	call(t, cs, "get_order", `{"id":"A1"}`)
	wantRuns(t, f, "get_order", 2)
}

func TestUnlistedToolsAndMethodsPassThrough(t *testing.T) {
	f := newFixture(t, agentcache.Options{}, nil, nil)
	cs := f.connect(context.Background())
	for range 3 {
		call(t, cs, "echo", `{}`)
	}
	wantRuns(t, f, "echo", 3)
	list, err := cs.ListTools(context.Background(), nil)
	if err != nil || len(list.Tools) != 9 {
		t.Fatalf("ListTools: %d tools, %v", len(list.Tools), err)
	}
	if _, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "no_such_tool"}); err == nil {
		t.Error("calling an unknown tool succeeded")
	}
}

func TestAbsentArguments(t *testing.T) {
	f := newFixture(t, agentcache.Options{}, nil, nil)
	alice := f.connect(scope.WithUser(context.Background(), "alice"))
	call(t, alice, "get_cart", "")
	call(t, alice, "get_cart", "")
	wantRuns(t, f, "get_cart", 1)
}

func TestRuntimeReplacementToDestructive(t *testing.T) {
	f := newFixture(t, agentcache.Options{}, nil, nil)
	cs := f.connect(context.Background())
	call(t, cs, "get_weather", `{"city":"Kyiv"}`)
	call(t, cs, "get_weather", `{"city":"Kyiv"}`)
	wantRuns(t, f, "get_weather", 1)

	// The tool is replaced by a destructive one: its calls are no longer
	// served from the cache.
	f.server.AddTool(&mcp.Tool{
		Name:        "get_weather",
		InputSchema: json.RawMessage(`{"type":"object"}`),
		Annotations: &mcp.ToolAnnotations{DestructiveHint: new(true)},
	}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		f.count("get_weather").Add(1)
		return text("reset"), nil
	})
	if got := textOf(t, call(t, cs, "get_weather", `{"city":"Kyiv"}`)); got != "reset" {
		t.Errorf("after replacement: %q", got)
	}
	wantRuns(t, f, "get_weather", 2)
}

func TestToolCallIDOnSpan(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	f := newFixture(t, agentcache.Options{Telemetry: agentcache.TelemetryOptions{TracerProvider: tp, RootSpans: true}}, nil, &agentmcp.Options{
		ToolCallID: func(_ context.Context, req *mcp.CallToolRequest) string {
			id, _ := req.Params.Meta["toolCallId"].(string)
			return id
		},
	})
	cs := f.connect(context.Background())
	if _, err := cs.CallTool(context.Background(), &mcp.CallToolParams{
		Meta: mcp.Meta{"toolCallId": "call_42"},
		Name: "get_weather", Arguments: map[string]string{"city": "Baku"},
	}); err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, s := range exp.GetSpans() {
		if !strings.HasPrefix(s.Name, acotel.SpanTool) {
			continue
		}
		for _, a := range s.Attributes {
			if a.Key == acotel.KeyGenAIToolCallID && a.Value.AsString() == "call_42" {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("no execute_tool span with gen_ai.tool.call.id=call_42 among %d spans", len(exp.GetSpans()))
	}
}

func TestNewMiddlewareRejectsBadPolicies(t *testing.T) {
	c, err := agentcache.New(agentcache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	for _, tc := range []struct {
		name   string
		policy agentmcp.Policy
		want   string
	}{
		{"both", agentmcp.Policy{"x": {Resource: weather, Invalidates: []resource.Resource{cart}}}, "not both"},
		{"neither", agentmcp.Policy{"x": {}}, "neither"},
		{"no name", agentmcp.Policy{"x": {Resource: resource.Resource{TTL: time.Second}}}, "Name is empty"},
		{"bad name", agentmcp.Policy{"x": {Resource: resource.Resource{Name: "a/b"}}}, "only letters"},
		{"shared", agentmcp.Policy{"x": {Resource: weather}, "y": {Resource: weather}}, "both cache"},
		{"conflict", agentmcp.Policy{
			"x": {Resource: resource.Resource{Name: "get_cart", TTL: time.Hour}},
			"y": {Invalidates: []resource.Resource{cart}},
		}, "other settings"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := agentmcp.NewMiddleware(c, tc.policy, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := agentmcp.NewMiddleware(nil, nil, nil); err == nil {
		t.Error("nil cache accepted")
	}
}

// TestStreamableHTTP runs the protocol over the streamable HTTP transport
// behind bearer-token auth: the user comes from the token (TokenInfo), the
// session from Mcp-Session-Id.
func TestStreamableHTTP(t *testing.T) {
	f := newFixture(t, agentcache.Options{}, nil, &agentmcp.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	verify := func(_ context.Context, token string, _ *http.Request) (*auth.TokenInfo, error) {
		user, ok := strings.CutPrefix(token, "token-")
		if !ok {
			return nil, auth.ErrInvalidToken
		}
		return &auth.TokenInfo{UserID: user, Expiration: time.Now().Add(time.Hour)}, nil
	}
	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return f.server }, nil)
	srv := httptest.NewServer(auth.RequireBearerToken(verify, nil)(handler))
	t.Cleanup(srv.Close)

	open := func(token string) *mcp.ClientSession {
		t.Helper()
		hc := &http.Client{Transport: bearer{token, http.DefaultTransport}}
		client := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "v1"}, nil)
		cs, err := client.Connect(context.Background(), &mcp.StreamableClientTransport{
			Endpoint: srv.URL, HTTPClient: hc, DisableStandaloneSSE: true, MaxRetries: -1,
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cs.Close() })
		return cs
	}
	alice1, alice2, bob := open("token-alice"), open("token-alice"), open("token-bob")

	for _, cs := range []*mcp.ClientSession{alice1, alice2, alice1, bob, bob} {
		call(t, cs, "get_cart", `{}`)
	}
	wantRuns(t, f, "get_cart", 2) // once for alice, once for bob
	if got := textOf(t, call(t, alice2, "get_cart", `{}`)); got != "cart of alice (run 1)" {
		t.Errorf("alice's second session: %q", got)
	}

	for _, cs := range []*mcp.ClientSession{alice1, alice1, alice2, alice2, bob} {
		call(t, cs, "session_notes", `{}`)
	}
	wantRuns(t, f, "session_notes", 3) // once per MCP session

	call(t, alice1, "add_to_cart", `{"item":"tea"}`)
	call(t, alice2, "get_cart", `{}`)
	call(t, bob, "get_cart", `{}`)
	wantRuns(t, f, "get_cart", 3) // alice's cart again, bob's still cached
}

// TestStreamableHTTPContextUser takes the user from the context that the
// application's HTTP middleware sets (scope.WithUser) on the request that
// opens the MCP session.
func TestStreamableHTTPContextUser(t *testing.T) {
	f := newFixture(t, agentcache.Options{}, nil, nil)
	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return f.server }, nil)
	withUser := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if u := r.Header.Get("X-User"); u != "" {
			ctx = scope.WithUser(ctx, u)
		}
		handler.ServeHTTP(w, r.WithContext(ctx))
	})
	srv := httptest.NewServer(withUser)
	t.Cleanup(srv.Close)
	open := func(user string) *mcp.ClientSession {
		t.Helper()
		hc := &http.Client{Transport: header{"X-User", user, http.DefaultTransport}}
		cs, err := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "v1"}, nil).Connect(context.Background(),
			&mcp.StreamableClientTransport{Endpoint: srv.URL, HTTPClient: hc, DisableStandaloneSSE: true, MaxRetries: -1}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cs.Close() })
		return cs
	}
	alice, bob, anon := open("alice"), open("bob"), open("")
	for _, cs := range []*mcp.ClientSession{alice, bob, alice, bob} {
		call(t, cs, "get_cart", `{}`)
	}
	wantRuns(t, f, "get_cart", 2)
	if got := textOf(t, call(t, bob, "get_cart", `{}`)); !strings.HasPrefix(got, "cart of bob ") {
		t.Errorf("bob: %q", got)
	}
	if res := call(t, anon, "get_cart", `{}`); !res.IsError {
		t.Errorf("no user: %q, want an error result", textOf(t, res))
	}
	wantRuns(t, f, "get_cart", 2)
}

type header struct {
	name, value string
	next        http.RoundTripper
}

func (h header) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(h.name, h.value)
	return h.next.RoundTrip(r)
}

type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}
