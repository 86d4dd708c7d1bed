package agentcache

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/agentcache/agentcache-go/internal/keyspace"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
)

// ToolOption adjusts how a tool is cached.
type ToolOption interface{ apply(*toolConfig) }

type toolConfig struct {
	key        *keyFunc // nil: the arguments themselves
	isNegative func(any) bool
	negType    reflect.Type // the result type NegativeWhen's predicate takes
	// given names the options given, for the wrappers to refuse those that
	// do not apply to them.
	given        []string
	limits       resource.Limits
	refreshAhead float64
	writeThrough bool
	noFleetLock  bool
	batchWindow  time.Duration
	maxBatch     int
}

func (cfg *toolConfig) window() time.Duration {
	if cfg.batchWindow > 0 {
		return cfg.batchWindow
	}
	return defaultBatchWindow
}

func (cfg *toolConfig) maxBatchSize() int {
	if cfg.maxBatch > 0 {
		return cfg.maxBatch
	}
	return defaultMaxBatchSize
}

func (cfg *toolConfig) lookup(rs *resState, l1 string) lookup {
	lk := rs.lookup(l1)
	lk.isNegative, lk.refreshAhead = cfg.isNegative, cfg.refreshAhead
	lk.writeThrough, lk.noFleetLock = cfg.writeThrough, cfg.noFleetLock
	return lk
}

// RefreshAhead refreshes an entry in the background when it is read after
// the given share of its TTL (0.8: in its last fifth), so hot entries never
// expire under their readers. Values outside (0, 1) turn it off.
func RefreshAhead(share float64) ToolOption {
	return namedOption("RefreshAhead", func(c *toolConfig) {
		if share > 0 && share < 1 {
			c.refreshAhead = share
		}
	})
}

// WriteThrough writes L2 before a call that ran the tool returns, for
// resources where read-after-write across instances matters more than
// latency. By default L2 is written in the background.
//
// A write that fails does not fail the call: it returns the tool's result
// (which this instance's L1 holds) without an error, and the failure is
// logged and counted (Stats.L2Errors, or Stats.WritesSkipped while the
// breaker is open), as for a background write; other instances then miss
// and run the tool themselves.
func WriteThrough() ToolOption {
	return namedOption("WriteThrough", func(c *toolConfig) { c.writeThrough = true })
}

// NoFleetLock lets every instance run the tool on its own misses instead of
// one instance loading for the fleet (the default when L2 can hold leases).
// Not for WrapBatch, whose batches never take the fleet lock.
func NoFleetLock() ToolOption {
	return namedOption("NoFleetLock", func(c *toolConfig) { c.noFleetLock = true })
}

// option is a ToolOption with its name.
type option struct {
	name string
	set  func(*toolConfig)
}

func (o option) apply(c *toolConfig) {
	c.given = append(c.given, o.name)
	o.set(c)
}

func namedOption(name string, set func(*toolConfig)) ToolOption { return option{name, set} }

// check refuses the options given to wrapper that do not apply to it
// (notFor), and a NegativeWhen of another result type than result.
func (cfg *toolConfig) check(wrapper, name string, result reflect.Type, notFor ...string) error {
	for _, g := range cfg.given {
		if slices.Contains(notFor, g) {
			return fmt.Errorf("agentcache: %s %s: the %s option does not apply to %s", wrapper, name, g, wrapper)
		}
	}
	if cfg.negType != nil && cfg.negType != result {
		return fmt.Errorf("agentcache: %s %s: NegativeWhen takes %v, the tool returns %v", wrapper, name, cfg.negType, result)
	}
	return nil
}

// NegativeWhen marks results for which pred returns true as "not found"
// (an empty search result, say): they are cached for the resource's negative
// TTL and callers get ErrNotFound, exactly as if the tool had returned it.
//
// R must be the tool's result type (the value type of a batch tool): Wrap
// and WrapBatch refuse a predicate of another type.
func NegativeWhen[R any](pred func(R) bool) ToolOption {
	return namedOption("NegativeWhen", func(c *toolConfig) {
		c.negType = reflect.TypeFor[R]()
		c.isNegative = func(v any) bool { r, _ := v.(R); return pred(r) }
	})
}

// KeyFunc keys each call on fn(args) instead of on args: its result is
// hashed like arguments are (its canonical JSON form). Use it when the
// tool reads parts of its arguments that their JSON form leaves out, which
// Wrap otherwise refuses (see resource.CheckArgs), or to key on less than
// the arguments when the rest never changes the answer. fn must return
// different values for any two arguments the tool may answer differently:
// calls whose keys are equal share one answer. TargetCall on the resource
// goes through fn too. A in KeyFunc must be the tool's argument type, and
// every tool wrapped under one resource must give the same fn.
func KeyFunc[A any](fn func(args A) any) ToolOption {
	return namedOption("KeyFunc", func(c *toolConfig) {
		c.key = &keyFunc{
			typed: fn,
			args:  reflect.TypeFor[A](),
			fn:    reflect.ValueOf(fn).Pointer(),
			key: func(v any) (any, error) {
				a, ok := v.(A)
				if !ok {
					var zero A
					return nil, fmt.Errorf("agentcache: the key function takes %T, not %T", zero, v)
				}
				return fn(a), nil
			},
		}
	})
}

// keyFunc is a KeyFunc, type-erased.
type keyFunc struct {
	typed any // the func(A) any itself
	args  reflect.Type
	fn    uintptr // the function's code, to tell two KeyFuncs apart
	key   func(args any) (any, error)
}

// ArgLimits bounds the size and nesting of arguments accepted for hashing
// (defaults: resource.Limits' zero value). Arguments beyond them are
// refused with an error and the tool is not called.
func ArgLimits(l resource.Limits) ToolOption {
	return namedOption("ArgLimits", func(c *toolConfig) { c.limits = l })
}

// register returns the cache's state for r, creating it on first use. Two
// registrations of one name@version must agree on every setting.
func (c *Cache) register(r resource.Resource) (*resState, error) {
	if c == nil {
		return nil, errNilCache
	}
	if c.closed.Load() {
		return nil, fmt.Errorf("agentcache: %s: %w", r.Name, ErrClosed)
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("agentcache: %w", err)
	}
	ttl := r.TTL
	if ttl == 0 {
		ttl = c.opts.DefaultTTL
	}
	rs := &resState{
		id:     r.ID(),
		def:    r,
		ttl:    ttl,
		negTTL: r.NegativeTTLFor(ttl),
		stale:  r.StaleWindow,
	}
	rs.obs = c.obs.newResObs(r.Name, r.Scope.String())
	rs.claims = &claims{}
	switch r.Scope {
	case scope.User:
		rs.segPrefix = "u:"
	case scope.Session:
		rs.segPrefix = "s:"
	}
	c.resMu.Lock()
	defer c.resMu.Unlock()
	if old, ok := c.resources[rs.id]; ok {
		if old.def != r {
			return nil, fmt.Errorf("agentcache: resource %s is already registered with other settings (%+v)", rs.id, old.def)
		}
		return old, nil
	}
	rs.cell = c.ep.Pinned(keyspace.ResourceEpochKey(rs.id))
	c.resources[rs.id] = rs
	return rs, nil
}

// claims records the tools cached under a resource: a second, different tool
// under the same name and version would share the first one's entries.
type claims struct {
	mu            sync.Mutex
	args, result  reflect.Type
	single, batch uintptr // the code of the tools wrapped
	key           *keyFunc
}

// checkTool checks what Wrap, WrapBatch and Memoize check of a
// tool once its resource is registered: the codec carries its results, and
// no other tool is cached under the resource.
func (c *Cache) checkTool(rs *resState, op string, tool any, args, result reflect.Type, key *keyFunc, batch bool) error {
	if err := c.checkResult(result); err != nil {
		return fmt.Errorf("agentcache: %s %s: %w (or set a Codec that carries it)", op, rs.def.Name, err)
	}
	return c.claim(rs, op, tool, args, result, key, batch)
}

// claim records that tool (a batch tool if batch), taking args and
// returning result, is cached under rs with the key function key. Wrapping
// the same tool again is fine; another is an error.
func (c *Cache) claim(rs *resState, op string, tool any, args, result reflect.Type, key *keyFunc, batch bool) error {
	if key != nil && key.args != args {
		return fmt.Errorf("agentcache: %s %s: KeyFunc takes %s, but the tool's arguments are %s", op, rs.def.Name, key.args, args)
	}
	cl := rs.claims
	cl.mu.Lock()
	defer cl.mu.Unlock()
	fn := reflect.ValueOf(tool).Pointer()
	slot := &cl.single
	if batch {
		slot = &cl.batch
	}
	other := func(what string) error {
		return fmt.Errorf("agentcache: %s %s: resource %s already caches a tool with %s; a second tool under it would share its entries (give it a resource of its own, or a new Version)", op, rs.def.Name, rs.id, what)
	}
	switch {
	case cl.args != nil && (cl.args != args || cl.result != result):
		return other(fmt.Sprintf("arguments %s and results %s", cl.args, cl.result))
	case *slot != 0 && *slot != fn:
		return other("another function (" + funcName(*slot) + ")")
	case cl.args != nil && !sameKey(cl.key, key):
		return other("another KeyFunc")
	}
	cl.args, cl.result, cl.key, *slot = args, result, key, fn
	return nil
}

// keyFunc returns the KeyFunc of the tools cached under rs, if any.
func (rs *resState) keyFunc() *keyFunc {
	rs.claims.mu.Lock()
	defer rs.claims.mu.Unlock()
	return rs.claims.key
}

func sameKey(a, b *keyFunc) bool { return a == nil && b == nil || a != nil && b != nil && a.fn == b.fn }

func funcName(pc uintptr) string {
	if f := runtime.FuncForPC(pc); f != nil {
		return f.Name()
	}
	return "unknown"
}

// seg returns the scope segment of keys for the scope ID id.
func (rs *resState) seg(id string) string {
	if rs.segPrefix == "" {
		return ""
	}
	return string(scope.AppendEscaped([]byte(rs.segPrefix), id))
}

// An L1 key of a call is laid out as NUL, name@version, NUL, the scope
// segment, then either sepInline and the canonical form of the arguments,
// when it is at most maxInlineArgs bytes, or sepHash and the text of their
// hash (resource.Hash). The leading NUL keeps it apart from every
// key-value key; neither separator occurs in a scope segment or in
// canonical JSON, which escapes control characters. Short arguments, most
// tools' (an ID, a city and a unit), are so keyed exactly and an L1 hit on
// them hashes nothing; the hash, which names the entry in L2, is computed
// on the way there.
const (
	sepHash       = 0
	sepInline     = 1
	maxInlineArgs = 64
)

// appendKeyHead appends the L1 key of a call in scope id up to its
// arguments, separator included: the caller appends their canonical form
// and then calls endKey.
func (rs *resState) appendKeyHead(b []byte, id string) []byte {
	b = append(b, 0)
	b = append(b, rs.id...)
	b = append(b, 0)
	if rs.segPrefix != "" {
		b = append(b, rs.segPrefix...)
		b = scope.AppendEscaped(b, id)
	}
	return append(b, sepInline)
}

// endKey finishes an L1 key whose arguments' canonical form follows the
// separator at b[sep]: arguments longer than maxInlineArgs are replaced by
// their hash.
func endKey(b []byte, sep int) []byte {
	if len(b)-sep-1 <= maxInlineArgs {
		return b
	}
	h := resource.HashCanonical(b[sep+1:])
	b = append(b[:sep], sepHash)
	return h.AppendTo(b)
}

// canonicalJSONArgs returns tool, given the canonical form of its arguments
// when they are JSON text (A is json.RawMessage): two texts with one key
// are one input, however the tool decodes them (encoding/json matches keys
// case-insensitively, last one winning; a tool may read number literals as
// written).
func canonicalJSONArgs[A, R any](tool func(context.Context, A) (R, error), lim resource.Limits, id string) func(context.Context, A) (R, error) {
	if reflect.TypeFor[A]() != reflect.TypeFor[json.RawMessage]() {
		return tool
	}
	return func(ctx context.Context, args A) (R, error) {
		raw, err := resource.AppendCanonicalJSON(nil, any(args).(json.RawMessage), lim)
		if err != nil { // refused by the key already
			var zero R
			return zero, fmt.Errorf("agentcache: %s: arguments: %w", id, err)
		}
		return tool(ctx, any(json.RawMessage(raw)).(A))
	}
}

// appendArgsKey appends the L1 key of the call of rs in scope id with
// arguments *args, encoded by enc: a typed tool's and a batch ID's.
func appendArgsKey[A any](rs *resState, dst []byte, id string, enc *resource.ArgsEncoder[A], args *A, lim resource.Limits) ([]byte, error) {
	dst = rs.appendKeyHead(dst, id)
	sep := len(dst) - 1
	dst, err := enc.Append(dst, args, lim)
	if err != nil {
		return nil, err
	}
	return endKey(dst, sep), nil
}

// appendValueKey appends the L1 key of the call of rs in scope id with
// arguments args as Invalidate, a KeyFunc and a Memo give them: a
// json.RawMessage is JSON text, anything else a value to encode.
func (rs *resState) appendValueKey(dst []byte, id string, args any, lim resource.Limits) ([]byte, error) {
	if raw, ok := args.(json.RawMessage); ok {
		return rs.appendJSONKey(dst, id, raw, lim)
	}
	dst = rs.appendKeyHead(dst, id)
	sep := len(dst) - 1
	dst, err := resource.AppendValue(dst, args, lim)
	if err != nil {
		return nil, err
	}
	return endKey(dst, sep), nil
}

// appendJSONKey appends the L1 key of the call of rs in scope id with the
// JSON arguments raw: a JSON tool's.
func (rs *resState) appendJSONKey(dst []byte, id string, raw json.RawMessage, lim resource.Limits) ([]byte, error) {
	dst = rs.appendKeyHead(dst, id)
	sep := len(dst) - 1
	dst, err := resource.AppendCanonicalJSON(dst, raw, lim)
	if err != nil {
		return nil, err
	}
	return endKey(dst, sep), nil
}

// argsKey is appendValueKey as a string.
func (rs *resState) argsKey(id string, args any, lim resource.Limits) (string, error) {
	var buf [l1KeyBuf]byte
	b, err := rs.appendValueKey(buf[:0], id, args, lim)
	return string(b), err
}

// split returns the scope segment and the argument hash, in text, of the
// L1 key of a call of rs.
func (rs *resState) split(l1 string) (seg, hash string) {
	_, seg, hash, _ = splitCallKey(l1)
	return seg, hash
}

// splitCallKey reads an L1 key of a call (see appendKeyHead) back into the
// resource's name@version, the scope segment and the argument hash, in
// text; the hash of inline arguments is computed. ok is false for any
// other key (a key-value key).
func splitCallKey(l1 string) (rid, seg, hash string, ok bool) {
	if len(l1) == 0 || l1[0] != 0 {
		return "", "", "", false
	}
	i := strings.IndexByte(l1[1:], 0)
	if i < 0 {
		return "", "", "", false
	}
	rid, rest := l1[1:1+i], l1[2+i:]
	j := strings.IndexAny(rest, "\x00\x01")
	if j < 0 {
		return "", "", "", false
	}
	seg, args := rest[:j], rest[j+1:]
	if rest[j] == sepHash {
		return rid, seg, args, len(args) == resource.HashTextLen
	}
	return rid, seg, resource.HashCanonical([]byte(args)).String(), true
}

// lookup returns the lookup of the call whose L1 key is l1.
func (rs *resState) lookup(l1 string) lookup {
	seg, tail := rs.split(l1)
	return lookup{r: rs, seg: seg, tail: tail, l1: l1}
}

// call is the cached path of every wrapped tool: tool(ctx, args) behind the
// cache, for the call whose L1 key is kb (in the caller's buffer, which
// the call does not keep). The arguments are only captured (and so moved
// to the heap) on the paths that need them, never on an L1 hit.
func call[A, R any](ctx context.Context, c *Cache, rs *resState, cfg *toolConfig, kb []byte, id string, tool func(context.Context, A) (R, error), args A) (R, error) {
	if c.obs.active(ctx) {
		return callObserved(ctx, c, rs, cfg, string(kb), id, tool, args)
	}
	return callTier(ctx, c, rs, cfg, kb, tool, args, nil)
}

func callObserved[A, R any](ctx context.Context, c *Cache, rs *resState, cfg *toolConfig, l1, id string, tool func(context.Context, A) (R, error), args A) (R, error) {
	o := &obsLookup{scopeID: id}
	if c.obs.recordArgs {
		_, o.argHash = rs.split(l1)
	}
	return observe(ctx, c, rs.obs, o, func(o *obsLookup) (R, bool) {
		return freshL1[R](c, l1, o)
	}, func(ctx context.Context, o *obsLookup) (R, error) {
		// callTier only reads its key.
		return callTier(ctx, c, rs, cfg, unsafe.Slice(unsafe.StringData(l1), len(l1)), tool, args, o)
	})
}

// l1KeyBuf is room for the L1 key of most calls, on the stack.
const l1KeyBuf = 160

func callTier[A, R any](ctx context.Context, c *Cache, rs *resState, cfg *toolConfig, kb []byte, tool func(context.Context, A) (R, error), args A, o *obsLookup) (R, error) {
	// The lookup does not keep its key, so a string over the caller's
	// buffer serves it without a copy; a miss makes a real string.
	v, hit := fromL1Fast[R](c, unsafe.String(unsafe.SliceData(kb), len(kb)))
	if hit == hitFresh {
		if o != nil {
			o.tier = tierL1
		}
		return v, nil
	}
	return callSlow(ctx, c, rs, cfg, string(kb), v, hit, tool, args, o)
}

func callSlow[A, R any](ctx context.Context, c *Cache, rs *resState, cfg *toolConfig, l1 string, v R, hit hit, tool func(context.Context, A) (R, error), args A, o *obsLookup) (R, error) {
	run := func(ctx context.Context) (R, error) { return tool(ctx, args) }
	lk := cfg.lookup(rs, l1)
	if hit != hitNone {
		served(ctx, c, &lk, hit, run, o)
		return v, nil
	}
	return fetch(ctx, c, &lk, run, o)
}

// Wrap returns tool cached as resource r: same signature, same results,
// served from L1 or L2 when the same arguments were seen in the same scope.
//
// The key is built from r (name@version), the scope ID that r's kind takes
// from ctx (see package scope), and a hash of args' canonical JSON form. A
// per-user or per-session resource called without that ID in ctx fails
// with an error wrapping scope.ErrMissing: the tool is not called and
// nothing is cached. Bad arguments (too large, too deep, not encodable) are
// refused the same way.
//
// Wrap itself refuses what would make the cache answer wrongly:
//   - an argument type A with a part that its JSON form leaves out
//     (resource.CheckArgs: an unexported field, one tagged `json:"-"`, one
//     hidden by a field of the same JSON name, a type with MarshalJSON but
//     no UnmarshalJSON): calls that differ only there would share one
//     answer. Give a KeyFunc to key such calls yourself;
//   - a result type R that the Codec cannot carry (see TypeChecker): an L2
//     hit would not return what the tool did;
//   - a second, different tool under a resource that already caches one
//     (another function, other argument or result types, another
//     KeyFunc): the two would share entries. Wrapping the same function
//     again is fine, and so is the single-ID tool of a resource that
//     WrapBatch caches (its argument type being the batch's ID type and
//     its result the batch's value type): both key an entry by the one
//     ID, so they share entries by design.
//
// JSON arguments (A is json.RawMessage, the shape agent frameworks and MCP
// give tools) are keyed by their canonical form (see package resource), so
// the same arguments give the same entry whatever their key order, white
// space, escaping or number spelling, and the tool is given that canonical
// form, never the caller's text: calls that share an entry give the tool
// the same bytes. Text that is not one JSON value (or hits the limits, or
// repeats a key) is refused with an error and the tool is not called.
//
// Every caller gets the value as the Codec returns it (see Codec), also the
// one whose call ran the tool, so L1 and L2 hits never differ. Values are
// shared between callers: they must not be modified.
func Wrap[A, R any](c *Cache, r resource.Resource, tool func(ctx context.Context, args A) (R, error), opts ...ToolOption) (func(ctx context.Context, args A) (R, error), error) {
	if tool == nil {
		return nil, fmt.Errorf("agentcache: Wrap %s: nil tool", r.Name)
	}
	cfg := newToolConfig(opts)
	if err := cfg.check("Wrap", r.Name, reflect.TypeFor[R](), "BatchWindow", "MaxBatchSize"); err != nil {
		return nil, err
	}
	if cfg.key == nil {
		if err := resource.CheckArgs(reflect.TypeFor[A]()); err != nil {
			return nil, fmt.Errorf("agentcache: Wrap %s: %w (or key the calls with a KeyFunc)", r.Name, err)
		}
	}
	rs, err := c.register(r)
	if err != nil {
		return nil, err
	}
	if err := c.checkTool(rs, "Wrap", tool, reflect.TypeFor[A](), reflect.TypeFor[R](), cfg.key, false); err != nil {
		return nil, err
	}
	tool = canonicalJSONArgs(tool, cfg.limits, rs.id)
	// The arguments' canonical form is written straight after the key's
	// head, by the type's compiled encoder or from what the KeyFunc returns.
	enc := resource.NewArgsEncoder[A]()
	var keyOf func(A) any
	if cfg.key != nil {
		keyOf = cfg.key.typed.(func(A) any)
	}
	return func(ctx context.Context, args A) (R, error) {
		var zero R
		if c.closed.Load() {
			return zero, ErrClosed
		}
		id, err := scope.ID(ctx, r.Scope)
		if err != nil {
			return zero, fmt.Errorf("agentcache: %s: %w", rs.id, err)
		}
		var buf [l1KeyBuf]byte
		var kb []byte
		if keyOf != nil {
			kb, err = rs.appendValueKey(buf[:0], id, keyOf(args), cfg.limits)
		} else {
			kb, err = appendArgsKey(rs, buf[:0], id, enc, &args, cfg.limits)
		}
		if err != nil {
			return zero, fmt.Errorf("agentcache: %s: arguments: %w", rs.id, err)
		}
		return call(ctx, c, rs, cfg, kb, id, tool, args)
	}, nil
}

func newToolConfig(opts []ToolOption) *toolConfig {
	cfg := &toolConfig{}
	for _, o := range opts {
		if o != nil {
			o.apply(cfg)
		}
	}
	return cfg
}

// WrapMutation returns a write tool that, when it succeeds, invalidates each
// of the given resources in the caller's scope — add_to_cart dropping this
// user's get_cart on every instance, nobody else's. A global resource is
// invalidated everywhere.
//
// The scope IDs the resources need are checked before the tool runs: a
// mutation that could not invalidate what it changes fails closed, without
// running. If the tool succeeds but the fleet cannot be told (L2 down), the
// local invalidation still applies, the result is returned without error (the
// write happened; an error would invite a retry), and the failure is logged,
// counted in Stats.FleetErrors and handed to Options.OnFleetError.
//
// Its arguments are in Wrap's order: the cache, what the tool touches, the
// tool. A mutation must name at least one resource.
func WrapMutation[A, R any](c *Cache, invalidates []resource.Resource, tool func(ctx context.Context, args A) (R, error)) (func(ctx context.Context, args A) (R, error), error) {
	if tool == nil {
		return nil, fmt.Errorf("agentcache: WrapMutation: nil tool")
	}
	if c == nil {
		return nil, errNilCache
	}
	if len(invalidates) == 0 {
		return nil, fmt.Errorf("agentcache: WrapMutation: no resources to invalidate")
	}
	invalidates = slices.Clone(invalidates) // the caller may reuse its slice
	for _, r := range invalidates {
		if _, err := c.register(r); err != nil {
			return nil, err
		}
	}
	return func(ctx context.Context, args A) (R, error) {
		var zero R
		if c.closed.Load() {
			return zero, ErrClosed
		}
		targets := make([]Target, len(invalidates))
		for i, r := range invalidates {
			t, err := TargetResourceIn(ctx, r)
			if err != nil {
				return zero, err
			}
			targets[i] = t
		}
		res, err := tool(ctx, args)
		if err != nil {
			return res, err
		}
		_ = c.Invalidate(ctx, targets...) // a failure is logged, counted and reported by fleet
		return res, nil
	}, nil
}
