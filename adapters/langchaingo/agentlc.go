// Package agentlc caches LangChainGo tools (github.com/tmc/langchaingo/tools)
// with agentcache: wrap a [tools.Tool] once and hand the wrapper to an agent
// in its place.
//
//	weather, err := agentlc.Wrap(cache, weatherTool, resource.Resource{Name: "get_weather", TTL: 10 * time.Minute})
//	agent := agents.NewOneShotAgent(llm, []tools.Tool{weather, ...})
//
// # What is cached
//
// A wrapped tool's Call is served through the [agentcache.Cache] as the
// resource given to [Wrap]: from L1, from L2 (shared by every instance), or
// by running the tool once for every concurrent identical call. The result
// string is what is stored. The key is the resource, the caller's scope ID
// for a per-user or per-session resource (see package scope: put it in the
// context given to the agent executor, which passes it to every tool call),
// and the input:
//
//   - an input that is one JSON object or array (as most agents write
//     structured tool input) is keyed on its canonical form, so key order,
//     white space and number spelling do not matter:
//     {"city":"Paris","units":"C"} and {"units": "C", "city": "Paris"} are
//     one entry. The tool is called with that canonical form, so the calls
//     that share an entry give it the same text; a tool that reads the
//     raw text rather than decoding it should be wrapped with its own key;
//   - any other input is keyed on its exact text, white space included,
//     also when it parses as a JSON scalar: "3.10" and "3.1", "1e3" and
//     "1000", or "Paris" in quotes with and without spaces around it, are
//     different inputs.
//
// The two kinds never share an entry. JSON that the canonical form rejects
// (a duplicated key, for one) or that is nested deeper or is larger than
// resource.Limits' defaults is keyed on its exact text.
//
// A tool error that wraps [agentcache.ErrNotFound] is remembered as "not
// found" for the resource's negative TTL and returned as such by later
// identical calls without running the tool; so are results that an
// agentcache.NegativeWhen[string] option marks negative.
//
// # What is never cached
//
// Every other tool error: it is returned as it is, and the next call runs
// the tool again. A per-user or per-session tool called without that ID in
// the context fails with an error wrapping scope.ErrMissing (or
// scope.ErrInvalid): the tool is not called, nothing is cached, and no
// caller is ever served another's result. A tool wrapped with
// [WrapMutation] is never cached; it invalidates the resources it names in
// the caller's scope when it succeeds.
//
// The wrapper has the tool's Name and Description; Unwrap returns the tool.
package agentlc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/tmc/langchaingo/tools"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/resource"
)

// Wrap returns t cached as resource r: a tools.Tool with t's name and
// description whose Call is served from the cache when the same input (see
// the package documentation) was seen in the same scope. opts tune the
// cache as for [agentcache.Wrap]: agentcache.ArgLimits,
// agentcache.NegativeWhen[string], agentcache.RefreshAhead,
// agentcache.WriteThrough, agentcache.NoFleetLock.
//
// Wrap fails if t is nil, if r is invalid, or if r is already registered
// with c with other settings.
func Wrap(c *agentcache.Cache, t tools.Tool, r resource.Resource, opts ...agentcache.ToolOption) (tools.Tool, error) {
	if c == nil {
		return nil, errors.New("agentlc: nil Cache")
	}
	if t == nil {
		return nil, fmt.Errorf("agentlc: Wrap %s: nil tool", r.Name)
	}
	call, err := agentcache.Wrap(c, r, func(ctx context.Context, input string) (string, error) {
		if k := keyOf(input); k.JSON != nil {
			input = string(k.JSON) // what the call was keyed on
		}
		return t.Call(ctx, input)
	}, append([]agentcache.ToolOption{agentcache.KeyFunc(keyAny)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("agentlc: %w", err)
	}
	return &cachedTool{tool: t, call: func(ctx context.Context, input string) (string, error) {
		out, err := call(ctx, input)
		if errors.Is(err, agentcache.ErrClosed) {
			return t.Call(ctx, input) // a closed cache serves nothing
		}
		return out, err
	}}, nil
}

// WrapMutation returns t as a write tool: when its Call succeeds, each of
// the given resources is invalidated in the caller's scope (a global
// resource everywhere), as with [agentcache.WrapMutation] — add_to_cart
// dropping this user's cached get_cart on every instance. The scope IDs the
// resources need are checked before t runs; without them the call fails and
// t is not called. Its results are never cached.
func WrapMutation(c *agentcache.Cache, t tools.Tool, invalidates ...resource.Resource) (tools.Tool, error) {
	if c == nil {
		return nil, errors.New("agentlc: nil Cache")
	}
	if t == nil {
		return nil, errors.New("agentlc: WrapMutation: nil tool")
	}
	call, err := agentcache.WrapMutation(c, invalidates, t.Call)
	if err != nil {
		return nil, fmt.Errorf("agentlc: %w", err)
	}
	return &cachedTool{tool: t, call: call}, nil
}

// TargetCall is the one entry of r that a tool wrapped with [Wrap] caches
// for input in scope id ("" for a global resource), for
// [agentcache.Cache.Invalidate].
func TargetCall(r resource.Resource, id, input string) agentcache.Target {
	return agentcache.TargetCall(r, id, input)
}

// cachedTool is a wrapped tool.
type cachedTool struct {
	tool tools.Tool
	call func(ctx context.Context, input string) (string, error)
}

var _ tools.Tool = (*cachedTool)(nil)

// Name returns the wrapped tool's name.
func (w *cachedTool) Name() string { return w.tool.Name() }

// Description returns the wrapped tool's description.
func (w *cachedTool) Description() string { return w.tool.Description() }

// Call runs the tool through the cache.
func (w *cachedTool) Call(ctx context.Context, input string) (string, error) {
	return w.call(ctx, input)
}

// Unwrap returns the wrapped tool.
func (w *cachedTool) Unwrap() tools.Tool { return w.tool }

// callKey is what a call is keyed on: exactly one of JSON (the canonical
// form of an input that is JSON, which is also what the tool is called
// with) and Text (any other input) is set, so the two kinds never share a
// key.
type callKey struct {
	JSON json.RawMessage `json:"json,omitempty"`
	Text *string         `json:"text,omitempty"`
}

// keyAny is the tools' agentcache.KeyFunc.
func keyAny(input string) any { return keyOf(input) }

// keyLimits leave room for the few bytes callKey adds around the input, so
// that an input accepted here is accepted by the cache's default limits.
var keyLimits = resource.Limits{
	MaxDepth: resource.DefaultMaxDepth - 1,
	MaxBytes: resource.DefaultMaxBytes - 64,
}

func keyOf(input string) callKey {
	// Only a JSON object or array is canonicalized: that is how agents
	// write structured tool input, and a tool decodes it whatever its key
	// order and spacing. Anything else is free text, even when it parses as
	// a JSON scalar: "3.10" and "3.1", or "1e3" and "1000", are different
	// inputs to a tool that reads text.
	if t := strings.TrimLeft(input, " \t\r\n"); t != "" && (t[0] == '{' || t[0] == '[') {
		if canon, err := resource.AppendCanonicalJSON(nil, []byte(input), keyLimits); err == nil {
			return callKey{JSON: canon}
		}
	}
	return callKey{Text: &input}
}
