package agentcache

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
)

var (
	getCart    = resource.Resource{Name: "get_cart", Scope: scope.User, TTL: time.Minute, Version: 1}
	getWeather = resource.Resource{Name: "get_weather", Scope: scope.Global, TTL: time.Minute}
	getNotes   = resource.Resource{Name: "session_notes", Scope: scope.Session, TTL: time.Minute}
)

type cartArgs struct {
	Currency string `json:"currency"`
}

type cart struct {
	User  string   `json:"user"`
	Items []string `json:"items"`
}

// fakeShop is a cart store whose get_cart answer names the user it served.
type fakeShop struct {
	calls atomic.Int32
	items map[string][]string
}

func (s *fakeShop) getCart(ctx context.Context, a cartArgs) (cart, error) {
	s.calls.Add(1)
	u, _ := scope.UserFrom(ctx)
	return cart{User: u, Items: append([]string(nil), s.items[u]...)}, nil
}

func (s *fakeShop) addToCart(ctx context.Context, item string) (bool, error) {
	u, _ := scope.UserFrom(ctx)
	s.items[u] = append(s.items[u], item)
	return true, nil
}

func TestWrapCachesPerUser(t *testing.T) {
	c := newL1(t, Options{})
	shop := &fakeShop{items: map[string][]string{"alice": {"book"}, "bob": {"pen"}}}
	get, err := Wrap(c, getCart, shop.getCart)
	if err != nil {
		t.Fatal(err)
	}
	alice := scope.WithUser(context.Background(), "alice")
	bob := scope.WithUser(context.Background(), "bob")
	for i := 0; i < 3; i++ {
		for _, ctx := range []context.Context{alice, bob} {
			got, err := get(ctx, cartArgs{Currency: "EUR"})
			want, _ := scope.UserFrom(ctx)
			if err != nil || got.User != want {
				t.Fatalf("get_cart for %s = %+v, %v", want, got, err)
			}
		}
	}
	if n := shop.calls.Load(); n != 2 {
		t.Fatalf("tool ran %d times, want once per user", n)
	}
}

func TestScopedToolFailsClosed(t *testing.T) {
	c := newL1(t, Options{})
	shop := &fakeShop{items: map[string][]string{}}
	get, _ := Wrap(c, getCart, shop.getCart)
	notes, _ := Wrap(c, getNotes, func(ctx context.Context, _ struct{}) (string, error) { return "n", nil })
	cases := []struct {
		name string
		ctx  context.Context
		want error
		call func(context.Context) error
	}{
		{"no user", context.Background(), scope.ErrMissing, func(ctx context.Context) error { _, err := get(ctx, cartArgs{}); return err }},
		{"invalid user", scope.WithUser(context.Background(), "bad\x00id"), scope.ErrInvalid, func(ctx context.Context) error { _, err := get(ctx, cartArgs{}); return err }},
		{"session missing, user set", scope.WithUser(context.Background(), "alice"), scope.ErrMissing, func(ctx context.Context) error { _, err := notes(ctx, struct{}{}); return err }},
	}
	for _, tc := range cases {
		err := tc.call(tc.ctx)
		if !errors.Is(err, tc.want) || !strings.HasPrefix(err.Error(), "agentcache: ") {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	if shop.calls.Load() != 0 || c.l1.Len() != 0 {
		t.Fatalf("a call without its scope reached the tool (%d) or the cache (%d)", shop.calls.Load(), c.l1.Len())
	}
}

func TestUserIDsCannotForgeKeys(t *testing.T) {
	c := newL1(t, Options{})
	rs, err := c.register(getCart)
	if err != nil {
		t.Fatal(err)
	}
	// IDs crafted to look like other segments, other users, hash tags or
	// other resources must all give distinct keys, and none may put a brace
	// or a separator of its own into the key; with short arguments (held
	// in the L1 key) and long ones (hashed).
	ids := []string{"alice", "alice}", "{alice}", "alice:x", "u:alice", "alice\u00a0", "ALICE", "alice%3A", "a/b", "get_cart@1", "alice}:0000000000000000:x", "a\x00b", "a\x01b"}
	seen := map[string]string{}
	for i, id := range ids {
		args := json.RawMessage(`{}`)
		if i%2 == 1 {
			args = json.RawMessage(`{"q":"` + strings.Repeat("long ", 20) + `"}`)
		}
		h, _ := resource.HashJSON(args, resource.Limits{})
		l1, err := rs.argsKey(id, args, resource.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		lk := rs.lookup(l1)
		// The segment and hash read back from the L1 key are the ones
		// the key was built from.
		if lk.seg != rs.seg(id) || lk.tail != h.String() {
			t.Fatalf("ID %q: lookup read segment %q and hash %q back from its L1 key; want %q and %q", id, lk.seg, lk.tail, rs.seg(id), h.String())
		}
		k2 := lk.l2Key()
		// A snapshot's restore finds the same L2 key from the L1 key alone.
		if got := restoredL2Key(lk.l1); got != k2 {
			t.Fatalf("ID %q: restoredL2Key = %q; the lookup's L2 key is %q", id, got, k2)
		}
		for _, k := range []string{lk.l1, k2} {
			if other, dup := seen[k]; dup {
				t.Fatalf("IDs %q and %q share key %q", id, other, k)
			}
			seen[k] = id
		}
		if strings.Count(k2, "{") != 1 || strings.Count(k2, "}") != 1 || !strings.HasPrefix(k2, "{get_cart@1:u:") {
			t.Fatalf("ID %q broke out of its segment: %q", id, k2)
		}
		if strings.Count(k2, ":") != 3 {
			t.Fatalf("ID %q added a separator: %q", id, k2)
		}
	}
}

func TestMutationInvalidatesOnlyThatUsersCart(t *testing.T) {
	c := newL1(t, Options{})
	shop := &fakeShop{items: map[string][]string{"alice": {"book"}, "bob": {"pen"}}}
	get, _ := Wrap(c, getCart, shop.getCart)
	add, err := WrapMutation(c, []resource.Resource{getCart}, shop.addToCart)
	if err != nil {
		t.Fatal(err)
	}
	alice := scope.WithUser(context.Background(), "alice")
	bob := scope.WithUser(context.Background(), "bob")
	get(alice, cartArgs{})
	get(bob, cartArgs{})
	if _, err := add(alice, "lamp"); err != nil {
		t.Fatal(err)
	}
	got, _ := get(alice, cartArgs{})
	if len(got.Items) != 2 {
		t.Fatalf("alice's cart after add_to_cart = %v; the old cart was served", got.Items)
	}
	get(bob, cartArgs{})
	if n := shop.calls.Load(); n != 3 {
		t.Fatalf("tool calls = %d, want 3 (bob's cart must stay cached)", n)
	}
	// A mutation without the user it invalidates fails before running.
	if _, err := add(context.Background(), "x"); !errors.Is(err, scope.ErrMissing) {
		t.Fatalf("mutation without user: %v", err)
	}
	if len(shop.items[""]) != 0 {
		t.Fatal("mutation ran without the scope it must invalidate")
	}
}

func TestInvalidateTargets(t *testing.T) {
	c := newL1(t, Options{})
	shop := &fakeShop{items: map[string][]string{"alice": {"a"}, "bob": {"b"}}}
	get, _ := Wrap(c, getCart, shop.getCart)
	var weatherCalls atomic.Int32
	weather, _ := Wrap(c, getWeather, func(ctx context.Context, city string) (string, error) {
		weatherCalls.Add(1)
		return "sunny in " + city, nil
	})
	alice := scope.WithUser(context.Background(), "alice")
	bob := scope.WithUser(context.Background(), "bob")
	warm := func() {
		get(alice, cartArgs{})
		get(bob, cartArgs{})
		get(alice, cartArgs{Currency: "USD"})
		weather(alice, "paris")
	}
	warm()
	base, baseW := shop.calls.Load(), weatherCalls.Load()
	cases := []struct {
		name        string
		target      Target
		carts, wthr int32 // extra tool calls expected on a second warm()
	}{
		{"one call", TargetCall(getCart, "alice", cartArgs{Currency: "USD"}), 1, 0},
		{"resource in scope", TargetResourceScope(getCart, "alice"), 2, 0},
		{"user across resources", TargetUser("bob"), 1, 0},
		{"resource everywhere", TargetResource(getCart), 3, 0},
		{"global resource", TargetResource(getWeather), 0, 1},
		{"everything", TargetAll(), 3, 1},
	}
	for _, tc := range cases {
		if err := c.Invalidate(context.Background(), tc.target); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		warm()
		if d, w := shop.calls.Load()-base, weatherCalls.Load()-baseW; d != tc.carts || w != tc.wthr {
			t.Fatalf("%s: reloaded %d carts and %d forecasts, want %d and %d", tc.name, d, w, tc.carts, tc.wthr)
		}
		base, baseW = shop.calls.Load(), weatherCalls.Load()
	}
	if err := c.Invalidate(context.Background(), Target{}); err == nil {
		t.Fatal("zero Target accepted")
	}
	if err := c.Invalidate(context.Background(), TargetUser("")); !errors.Is(err, scope.ErrInvalid) {
		t.Fatalf("empty user ID: %v", err)
	}
}

func TestJSONArgumentsShareEntriesWhateverTheirSpelling(t *testing.T) {
	c := newL1(t, Options{})
	var calls atomic.Int32
	search, err := Wrap(c, resource.Resource{Name: "search_docs", TTL: time.Minute}, func(ctx context.Context, args json.RawMessage) (json.RawMessage, error) {
		calls.Add(1)
		return json.RawMessage(`{"hits":3}`), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, args := range []string{`{"q":"redis","limit":10}`, `{ "limit" : 10.0, "q" : "redis" }`, `{"q":"\u0072edis","limit":1e1}`} {
		out, err := search(ctx, json.RawMessage(args))
		if err != nil || string(out) != `{"hits":3}` {
			t.Fatalf("search(%s) = %s, %v", args, out, err)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("tool ran %d times for one canonical call", calls.Load())
	}
	if _, err := search(ctx, json.RawMessage(`{"q":`)); err == nil || calls.Load() != 1 {
		t.Fatalf("invalid JSON: err = %v, calls = %d", err, calls.Load())
	}
}

func TestRegisterConflicts(t *testing.T) {
	c := newL1(t, Options{})
	if _, err := Wrap(c, getCart, (&fakeShop{}).getCart); err != nil {
		t.Fatal(err)
	}
	other := getCart
	other.TTL = time.Hour
	if _, err := Wrap(c, other, (&fakeShop{}).getCart); err == nil {
		t.Fatal("same name@version with another TTL accepted")
	}
	if _, err := Wrap(c, resource.Resource{Name: "Bad Name"}, (&fakeShop{}).getCart); err == nil || !strings.Contains(err.Error(), "resource:") {
		t.Fatalf("invalid resource: %v", err)
	}
}

// TestToolPanicIsOneLineNamingTheResource: agent frameworks hand a tool's
// error to the model, so a panic's error is one line that names the
// resource, and the stack is a field of the *PanicError for logs.
func TestToolPanicIsOneLineNamingTheResource(t *testing.T) {
	c := newL1(t, Options{})
	res := resource.Resource{Name: "exploding_tool", Scope: scope.Global, TTL: time.Minute}
	get, err := Wrap(c, res, func(context.Context, string) (string, error) {
		panic("boom\nsecond line of the panic")
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = get(context.Background(), "x")
	var pe *PanicError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v (%T), want a *PanicError", err, err)
	}
	msg := err.Error()
	if strings.ContainsAny(msg, "\n\r") || !strings.HasPrefix(msg, "agentcache: exploding_tool: ") || !strings.Contains(msg, "boom") || strings.Contains(msg, "second line") {
		t.Fatalf("err.Error() = %q, want one line starting with the package and the resource", msg)
	}
	if pe.Resource != "exploding_tool" || pe.Value == nil || !strings.Contains(string(pe.Stack), "goroutine") {
		t.Fatalf("PanicError = {%q, %v, %d bytes of stack}, want the resource, the value and the stack", pe.Resource, pe.Value, len(pe.Stack))
	}
	// A panic with an error unwraps to it.
	sentinel := errors.New("sentinel")
	get2, _ := Wrap(c, resource.Resource{Name: "exploding_tool_2", Scope: scope.Global, TTL: time.Minute}, func(context.Context, string) (string, error) {
		panic(sentinel)
	})
	if _, err := get2(context.Background(), "x"); !errors.Is(err, sentinel) {
		t.Fatalf("err = %v, want it to wrap the panic's error", err)
	}
}

func TestWrappersRefuseANilCache(t *testing.T) {
	res := resource.Resource{Name: "nil_cache_tool", Scope: scope.Global, TTL: time.Minute}
	tool := func(context.Context, string) (string, error) { return "", nil }
	if _, err := Wrap(nil, res, tool); err == nil || !strings.HasPrefix(err.Error(), "agentcache: ") {
		t.Errorf("Wrap(nil, ...) = %v, want an agentcache error", err)
	}
	if _, err := WrapMutation(nil, []resource.Resource{res}, tool); err == nil || !strings.HasPrefix(err.Error(), "agentcache: ") {
		t.Errorf("WrapMutation(nil, ...) = %v, want an agentcache error", err)
	}
	c := newL1(t, Options{})
	if _, err := WrapMutation(c, nil, tool); err == nil || !strings.Contains(err.Error(), "no resources") {
		t.Errorf("WrapMutation with no resources = %v, want a refusal", err)
	}
	if _, err := WrapBatch(nil, res, func(context.Context, []int) (map[int]string, error) { return nil, nil }); err == nil {
		t.Error("WrapBatch(nil, ...) did not fail")
	}
}

// TestLossyArgumentTypesAreRefused: a typed tool's key is the JSON encoding
// of its arguments, so a field JSON leaves out would let two calls that the
// tool tells apart share one answer (tenant "globex" served "acme"'s).
// Wrap and Memoize refuse such types at once, naming the field; Memoize
// takes them with a Key that says what the call is keyed on.
func TestLossyArgumentTypesAreRefused(t *testing.T) {
	c := newL1(t, Options{})
	res := resource.Resource{Name: "tenant_report", Scope: scope.Global, TTL: time.Minute}
	type hidden struct {
		Report string `json:"report"`
		tenant string
	}
	type skipped struct {
		Report string `json:"report"`
		Tenant string `json:"-"`
	}
	type nested struct {
		Items []map[string]*skipped `json:"items"`
	}
	check := func(name string, err error, field string) {
		t.Helper()
		if !errors.Is(err, resource.ErrLossyArgs) || !strings.HasPrefix(err.Error(), "agentcache: ") || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: %v; want an agentcache error wrapping resource.ErrLossyArgs naming %s", name, err, field)
		}
	}
	_, err := Wrap(c, res, func(_ context.Context, a hidden) (string, error) { return a.tenant, nil })
	check("unexported field", err, "tenant")
	_, err = Wrap(c, res, func(_ context.Context, a skipped) (string, error) { return a.Tenant, nil })
	check("json:\"-\" field", err, "Tenant")
	_, err = Wrap(c, res, func(_ context.Context, a nested) (string, error) { return "", nil })
	check("nested", err, "Tenant")
	_, err = Memoize(func(_ context.Context, a skipped) (string, error) { return a.Tenant, nil }, MemoOptions[skipped]{Name: "m"})
	check("Memoize", err, "Tenant")
	_, err = WrapBatch(c, resource.Resource{Name: "tenant_batch", Scope: scope.Global, TTL: time.Minute}, func(context.Context, []hidden) (map[hidden]string, error) { return nil, nil })
	check("WrapBatch", err, "tenant")
	if _, err := Memoize(func(_ context.Context, a skipped) (string, error) { return a.Report, nil }, MemoOptions[skipped]{Name: "m", Key: func(a skipped) any { return a.Report }}); err != nil {
		t.Errorf("Memoize with a Key: %v", err)
	}
	// A MarshalJSON that redacts, and fields that encoding/json drops
	// because another has their JSON name, are left out of the key too.
	_, err = Wrap(c, res, func(_ context.Context, a redactedArgs) (string, error) { return a.Tenant, nil })
	check("MarshalJSON without UnmarshalJSON", err, "MarshalJSON")
	type acme struct{ Tenant string }
	type globex struct{ Tenant string }
	type colliding struct {
		acme
		globex
	}
	_, err = Wrap(c, res, func(_ context.Context, a colliding) (string, error) { return a.acme.Tenant, nil })
	check("colliding embedded fields", err, "Tenant")
	type shadowed struct {
		acme
		Tenant string
	}
	_, err = Wrap(c, res, func(_ context.Context, a shadowed) (string, error) { return a.acme.Tenant, nil })
	check("a promoted field hidden by a shallower one", err, "acme.Tenant")
	// Types whose JSON is all they hold are fine: exported fields, an
	// embedded struct's promoted fields, values that encode themselves.
	type base struct{ Tenant string }
	type ok struct {
		base
		When   time.Time       `json:"when"`
		Raw    json.RawMessage `json:"raw"`
		Labels map[string]string
	}
	if _, err := Wrap(c, resource.Resource{Name: "tenant_report_ok", Scope: scope.Global, TTL: time.Minute}, func(_ context.Context, a ok) (string, error) { return a.Tenant, nil }); err != nil {
		t.Errorf("Wrap of a type whose JSON covers it: %v", err)
	}
}

type redactedArgs struct{ Tenant string }

func (redactedArgs) MarshalJSON() ([]byte, error) { return []byte(`{"tenant":"***"}`), nil }

// TestKeyFuncKeysCallsTheToolTellsApart: with a KeyFunc, an argument type
// Wrap would refuse is accepted and keyed on what the function returns,
// and TargetCall finds the entry through the same function.
func TestKeyFuncKeysCallsTheToolTellsApart(t *testing.T) {
	c := newL1(t, Options{})
	res := resource.Resource{Name: "tenant_report", Scope: scope.Global, TTL: time.Minute}
	type req struct {
		Report string
		tenant string
	}
	var runs atomic.Int32
	get, err := Wrap(c, res, func(_ context.Context, a req) (string, error) {
		runs.Add(1)
		return a.tenant + ":" + a.Report, nil
	}, KeyFunc(func(a req) any { return [2]string{a.tenant, a.Report} }))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct{ tenant, want string }{{"acme", "acme:q"}, {"globex", "globex:q"}, {"acme", "acme:q"}} {
		if got, err := get(ctx, req{Report: "q", tenant: tc.tenant}); err != nil || got != tc.want {
			t.Errorf("tenant %s: %q, %v; want %q", tc.tenant, got, err, tc.want)
		}
	}
	if n := runs.Load(); n != 2 {
		t.Errorf("the tool ran %d times, want 2 (one per tenant)", n)
	}
	if err := c.Invalidate(ctx, TargetCall(res, "", req{Report: "q", tenant: "acme"})); err != nil {
		t.Fatal(err)
	}
	if _, err := get(ctx, req{Report: "q", tenant: "acme"}); err != nil || runs.Load() != 3 {
		t.Errorf("after TargetCall through the KeyFunc: %v, %d runs; want the tool run again (3)", err, runs.Load())
	}
	if _, err := get(ctx, req{Report: "q", tenant: "globex"}); err != nil || runs.Load() != 3 {
		t.Errorf("globex's entry: %v, %d runs; want it kept (3)", err, runs.Load())
	}
	if err := c.Invalidate(ctx, TargetCall(res, "", "not a req")); err == nil || !strings.HasPrefix(err.Error(), "agentcache: ") {
		t.Errorf("TargetCall with arguments the KeyFunc does not take: %v; want an agentcache error", err)
	}
	if _, err := Wrap(c, resource.Resource{Name: "other", Scope: scope.Global}, func(context.Context, string) (string, error) { return "", nil }, KeyFunc(func(a req) any { return a.Report })); err == nil || !strings.Contains(err.Error(), "KeyFunc") {
		t.Errorf("a KeyFunc of another argument type: %v; want an error", err)
	}
}

// TestOneToolPerResource: two different tools under one resource would
// share entries (one tool's answers served for the other's calls), so the
// second Wrap fails; wrapping the same function again is fine.
func TestOneToolPerResource(t *testing.T) {
	c := newL1(t, Options{})
	res := resource.Resource{Name: "lookup", Scope: scope.Global, TTL: time.Minute}
	if _, err := Wrap(c, res, upperTool); err != nil {
		t.Fatal(err)
	}
	if _, err := Wrap(c, res, upperTool); err != nil {
		t.Errorf("the same tool wrapped again: %v", err)
	}
	for name, wrap := range map[string]func() error{
		"another function": func() error {
			_, err := Wrap(c, res, func(_ context.Context, s string) (string, error) { return s, nil })
			return err
		},
		"other result type": func() error {
			_, err := Wrap(c, res, func(context.Context, string) (int, error) { return 0, nil })
			return err
		},
		"a KeyFunc": func() error {
			_, err := Wrap(c, res, upperTool, KeyFunc(func(s string) any { return s }))
			return err
		},
		"JSON arguments": func() error {
			_, err := Wrap(c, res, func(context.Context, json.RawMessage) (json.RawMessage, error) { return nil, nil })
			return err
		},
	} {
		if err := wrap(); err == nil || !strings.HasPrefix(err.Error(), "agentcache: ") || !strings.Contains(err.Error(), "already caches") {
			t.Errorf("%s under a resource that caches upperTool: %v; want an agentcache error", name, err)
		}
	}
}

func upperTool(_ context.Context, s string) (string, error) { return strings.ToUpper(s), nil }

// TestJSONToolGetsTheHashedBytes: a tool of JSON arguments decodes the bytes
// itself, so texts with one canonical form must reach it as one input.
// encoding/json decodes "id" and "ID" into one field, last one winning, so
// {"id":"public","ID":"secret"} and the reverse decode differently; a tool
// may read 1.10 and 1.1, or -0 and 0, as written. The tool is handed the
// canonical form that was hashed: whoever calls first, every caller of the
// key gets the answer to the same bytes.
func TestJSONToolGetsTheHashedBytes(t *testing.T) {
	c := newL1(t, Options{})
	var seen []string
	var mu sync.Mutex
	tool, err := Wrap(c, resource.Resource{Name: "doc_fetch", Scope: scope.Global, TTL: time.Minute}, func(_ context.Context, args json.RawMessage) (json.RawMessage, error) {
		mu.Lock()
		seen = append(seen, string(args))
		mu.Unlock()
		var a struct {
			ID string
			V  json.Number
		}
		if err := json.Unmarshal(args, &a); err != nil {
			return nil, err
		}
		return json.Marshal("doc " + a.ID + " v" + a.V.String())
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, pair := range [][2]string{
		{`{"id":"public","ID":"secret"}`, `{"ID":"secret","id":"public"}`},
		{`{"id":"k","v":1.10}`, `{"v":1.1, "id":"k"}`},
		{`{"id":"z","v":-0}`, `{"id":"z","v":0}`},
	} {
		mu.Lock()
		seen = nil
		mu.Unlock()
		a, err := tool(context.Background(), json.RawMessage(pair[0]))
		if err != nil {
			t.Fatal(err)
		}
		b, err := tool(context.Background(), json.RawMessage(pair[1]))
		if err != nil {
			t.Fatal(err)
		}
		canon, err := resource.AppendCanonicalJSON(nil, []byte(pair[1]), resource.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		if len(seen) != 1 || seen[0] != string(canon) {
			t.Errorf("%s then %s: the tool saw %q, want one call with the canonical form %s", pair[0], pair[1], seen, canon)
		}
		mu.Unlock()
		if string(a) != string(b) {
			t.Errorf("%s and %s share a key but got %s and %s", pair[0], pair[1], a, b)
		}
	}
}

// An option that a wrapper would ignore, or a NegativeWhen of another
// result type, is refused when the tool is wrapped, not silently dropped.
func TestToolOptionsThatDoNotApplyAreRefused(t *testing.T) {
	c := newL1(t, Options{})
	res := resource.Resource{Name: "opts_tool", TTL: time.Minute}
	tool := func(context.Context, string) (string, error) { return "", nil }
	batch := func(context.Context, []string) (map[string]string, error) { return nil, nil }
	for name, wrap := range map[string]func() error{
		"Wrap with BatchWindow":       func() error { _, err := Wrap(c, res, tool, BatchWindow(time.Second)); return err },
		"Wrap with MaxBatchSize":      func() error { _, err := Wrap(c, res, tool, MaxBatchSize(3)); return err },
		"Wrap with NegativeWhen[int]": func() error { _, err := Wrap(c, res, tool, NegativeWhen(func(int) bool { return true })); return err },
		"WrapBatch with KeyFunc":      func() error { _, err := WrapBatch(c, res, batch, KeyFunc(func(s string) any { return s })); return err },
		"WrapBatch with NoFleetLock":  func() error { _, err := WrapBatch(c, res, batch, NoFleetLock()); return err },
		"WrapBatch with NegativeWhen[int]": func() error {
			_, err := WrapBatch(c, res, batch, NegativeWhen(func(int) bool { return true }))
			return err
		},
	} {
		if err := wrap(); err == nil || !strings.HasPrefix(err.Error(), "agentcache: ") {
			t.Errorf("%s: %v; want an agentcache error", name, err)
		}
	}
	// The options that apply are taken.
	if _, err := Wrap(c, res, tool, NegativeWhen(func(s string) bool { return s == "" }), NoFleetLock(), RefreshAhead(0.8)); err != nil {
		t.Fatalf("Wrap with options that apply: %v", err)
	}
	other := resource.Resource{Name: "opts_batch", TTL: time.Minute}
	if _, err := WrapBatch(c, other, batch, BatchWindow(time.Millisecond), MaxBatchSize(8), NegativeWhen(func(s string) bool { return s == "" })); err != nil {
		t.Fatalf("WrapBatch with options that apply: %v", err)
	}
}
