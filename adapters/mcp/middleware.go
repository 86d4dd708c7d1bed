package agentmcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentcache/agentcache-go/agentcache"
	acotel "github.com/agentcache/agentcache-go/otel"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
)

const (
	methodCallTool  = "tools/call"
	methodListTools = "tools/list"
)

// maxListPages bounds the tools/list pages read to find one tool's
// annotations, so a handler that keeps returning cursors cannot loop us.
const maxListPages = 100

// Policy says, by MCP tool name, how tools are cached. Tools it does not
// name pass through.
type Policy map[string]ToolPolicy

// ToolPolicy is how one tool is cached. Exactly one of Resource (a reader)
// and Invalidates (a writer) is set.
type ToolPolicy struct {
	// Resource caches the tool's results: its name and version start every
	// key, its scope says whose the results are, its TTLs how long they
	// live. Name is required; the other fields default as in package
	// resource. A tool annotated destructive is never cached, whatever its
	// Resource.
	Resource resource.Resource

	// Invalidates makes the tool a mutation: each call that succeeds
	// invalidates these resources in the caller's scope (a global resource
	// everywhere). The tool is never cached.
	Invalidates []resource.Resource

	// Options tune the cached reader: agentcache.ArgLimits,
	// agentcache.RefreshAhead, agentcache.WriteThrough,
	// agentcache.NoFleetLock. Ignored for a mutation.
	Options []agentcache.ToolOption
}

// Options configures the middleware. A nil *Options and every zero field
// mean the default.
type Options struct {
	// UserID returns the user a tools/call is made for, to be put in the
	// context with scope.WithUser; "" leaves the context as it is (so a user
	// the application put there is used). Default RequestUserID: the user
	// of the request's verified bearer token.
	UserID func(ctx context.Context, req *mcp.CallToolRequest) string

	// SessionID returns the session a tools/call belongs to, to be put in
	// the context with scope.WithSession; "" leaves the context as it is.
	// Default RequestSessionID: the MCP session ID.
	SessionID func(ctx context.Context, req *mcp.CallToolRequest) string

	// ToolCallID returns the ID of the call (the model's tool call ID, if
	// the client sends it, for example in _meta), to be put on the
	// execute_tool span as gen_ai.tool.call.id; "" leaves the context as it
	// is. Default: none (the SDK does not expose the JSON-RPC request ID to
	// middleware).
	ToolCallID func(ctx context.Context, req *mcp.CallToolRequest) string

	// Logger receives tool panics, with their stacks, and annotation look-ups
	// that fail. Default slog.Default().
	Logger *slog.Logger
}

// RequestUserID returns the UserID of the request's bearer token
// (RequestExtra.TokenInfo), or "" when the request carries none. It is the
// default [Options.UserID].
func RequestUserID(_ context.Context, req *mcp.CallToolRequest) string {
	if req.Extra == nil || req.Extra.TokenInfo == nil {
		return ""
	}
	return req.Extra.TokenInfo.UserID
}

// RequestSessionID returns the MCP session ID of the request, or "" when the
// transport has none (stdio, in-memory). It is the default
// [Options.SessionID].
func RequestSessionID(_ context.Context, req *mcp.CallToolRequest) string {
	if req.Session == nil {
		return ""
	}
	return req.Session.ID()
}

// tool is one policy entry, ready to serve.
type tool struct {
	name     string
	cached   func(context.Context, json.RawMessage) (json.RawMessage, error) // nil for a mutation
	mutation func(ctx context.Context, in *invocation) (*mcp.CallToolResult, error)
}

// invocation is one tools/call on its way through the cache: what the loader
// needs to run the handlers after the middleware.
type invocation struct {
	next   mcp.MethodHandler
	method string
	req    *mcp.CallToolRequest
}

type invocationKey struct{}

type middleware struct {
	tools     map[string]*tool
	userID    func(context.Context, *mcp.CallToolRequest) string
	sessionID func(context.Context, *mcp.CallToolRequest) string
	callID    func(context.Context, *mcp.CallToolRequest) string
	log       *slog.Logger
}

// NewMiddleware returns a receiving middleware (install it with
// Server.AddReceivingMiddleware) that caches tools/call results in c as
// policy says. It registers every resource of the policy with c and fails
// if one is invalid, if a resource is registered with other settings, if
// two tools would share a cached resource, or if an entry sets both or
// neither of Resource and Invalidates.
func NewMiddleware(c *agentcache.Cache, policy Policy, opts *Options) (mcp.Middleware, error) {
	if c == nil {
		return nil, errors.New("agentmcp: nil Cache")
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	m := &middleware{
		tools:     make(map[string]*tool, len(policy)),
		userID:    o.UserID,
		sessionID: o.SessionID,
		callID:    o.ToolCallID,
		log:       o.Logger,
	}
	if m.userID == nil {
		m.userID = RequestUserID
	}
	if m.sessionID == nil {
		m.sessionID = RequestSessionID
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	names := make([]string, 0, len(policy))
	for name := range policy {
		names = append(names, name)
	}
	sort.Strings(names) // deterministic errors

	// owner maps a cached resource's ID to the tool caching it.
	owner := map[string]string{}
	for _, name := range names {
		p := policy[name]
		t, err := newTool(c, name, p)
		if err != nil {
			return nil, err
		}
		if t.cached != nil {
			id := p.Resource.ID()
			if other, ok := owner[id]; ok {
				return nil, fmt.Errorf("agentmcp: tools %q and %q both cache resource %s; give each its own", other, name, id)
			}
			owner[id] = name
		}
		m.tools[name] = t
	}
	return m.wrap, nil
}

func newTool(c *agentcache.Cache, name string, p ToolPolicy) (*tool, error) {
	cache, mutate := p.Resource.Name != "", len(p.Invalidates) > 0
	switch {
	case cache && mutate:
		return nil, fmt.Errorf("agentmcp: tool %q: a policy entry either caches (Resource) or invalidates (Invalidates), not both", name)
	case !cache && !mutate:
		if p.Resource != (resource.Resource{}) {
			return nil, fmt.Errorf("agentmcp: tool %q: Resource.Name is empty", name)
		}
		return nil, fmt.Errorf("agentmcp: tool %q: the policy entry sets neither Resource nor Invalidates", name)
	}
	t := &tool{name: name}
	if mutate {
		run := func(ctx context.Context, in *invocation) (*mcp.CallToolResult, error) {
			res, err := in.run(ctx)
			if err != nil {
				return nil, &toolError{err}
			}
			if !succeeded(res) {
				return nil, &passThrough{res: res} // no invalidation
			}
			return res, nil
		}
		f, err := agentcache.WrapMutation(c, p.Invalidates, run)
		if err != nil {
			return nil, fmt.Errorf("agentmcp: tool %q: %w", name, err)
		}
		t.mutation = f
		return t, nil
	}
	f, err := agentcache.Wrap(c, p.Resource, load, p.Options...)
	if err != nil {
		return nil, fmt.Errorf("agentmcp: tool %q: %w", name, err)
	}
	t.cached = f
	return t, nil
}

// run calls the handlers after the middleware.
func (in *invocation) run(ctx context.Context) (*mcp.CallToolResult, error) {
	res, err := in.next(ctx, in.method, in.req)
	if err != nil {
		return nil, err
	}
	ctr, ok := res.(*mcp.CallToolResult)
	if !ok || ctr == nil {
		return nil, fmt.Errorf("agentmcp: tools/call returned %T, not *mcp.CallToolResult", res)
	}
	return ctr, nil
}

// load is the loader of every cached tool: it runs the call found in ctx and
// returns what may be cached, or an error carrying what may not.
func load(ctx context.Context, _ json.RawMessage) (json.RawMessage, error) {
	in, _ := ctx.Value(invocationKey{}).(*invocation)
	if in == nil {
		return nil, errors.New("agentmcp: no tools/call in context")
	}
	res, err := in.run(ctx)
	if err != nil {
		return nil, &toolError{err}
	}
	if !succeeded(res) {
		p := &passThrough{res: res}
		if res.IsError && errors.Is(res.GetError(), agentcache.ErrNotFound) {
			p.notFound = res.GetError()
		}
		return nil, p
	}
	raw, err := encodeResult(res)
	if err != nil {
		return nil, &passThrough{res: res}
	}
	return raw, nil
}

// succeeded reports whether res is a complete, successful result: one that
// may be cached, and after which a mutation invalidates.
func succeeded(res *mcp.CallToolResult) bool {
	return !res.IsError && !res.NeedsInput() && len(res.InputRequests) == 0
}

// wrap is the mcp.Middleware.
func (m *middleware) wrap(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		if method != methodCallTool {
			return next(ctx, method, req)
		}
		r, ok := req.(*mcp.CallToolRequest)
		if !ok || r.Params == nil {
			return next(ctx, method, req)
		}
		t := m.tools[r.Params.Name]
		if t == nil {
			return next(ctx, method, req)
		}
		ctx = m.identify(ctx, r)
		in := &invocation{next: next, method: method, req: r}
		if t.mutation != nil {
			return m.mutate(ctx, t, in)
		}
		if len(r.Params.InputResponses) > 0 || r.Params.RequestState != "" {
			return next(ctx, method, req) // the second leg of a call that asked for input
		}
		destructive, known := m.destructive(ctx, next, r)
		if destructive || !known {
			return next(ctx, method, req)
		}
		return m.cache(ctx, t, in)
	}
}

// identify puts the caller's user, session and tool call IDs in ctx.
func (m *middleware) identify(ctx context.Context, r *mcp.CallToolRequest) context.Context {
	if id := m.userID(ctx, r); id != "" {
		ctx = scope.WithUser(ctx, id)
	}
	if id := m.sessionID(ctx, r); id != "" {
		ctx = scope.WithSession(ctx, id)
	}
	if m.callID != nil {
		if id := m.callID(ctx, r); id != "" {
			ctx = acotel.WithToolCallID(ctx, id)
		}
	}
	return ctx
}

// destructive reports whether the tool r calls is annotated destructive, by
// listing the tools the handlers after the middleware serve to this
// session. known is false when the tool is not listed or the list fails:
// the call then passes through uncached.
func (m *middleware) destructive(ctx context.Context, next mcp.MethodHandler, r *mcp.CallToolRequest) (destructive, known bool) {
	cursor := ""
	for range maxListPages {
		res, err := next(ctx, methodListTools, &mcp.ListToolsRequest{
			Session: r.Session,
			Params:  &mcp.ListToolsParams{Cursor: cursor},
			Extra:   r.Extra,
		})
		if err != nil {
			m.log.Warn("agentmcp: tools/list failed; calling the tool uncached", "tool", r.Params.Name, "error", err)
			return false, false
		}
		list, ok := res.(*mcp.ListToolsResult)
		if !ok || list == nil {
			return false, false
		}
		for _, t := range list.Tools {
			if t != nil && t.Name == r.Params.Name {
				a := t.Annotations
				return a != nil && a.DestructiveHint != nil && *a.DestructiveHint, true
			}
		}
		if list.NextCursor == "" {
			return false, false
		}
		cursor = list.NextCursor
	}
	return false, false
}

// cache serves a cached tool.
func (m *middleware) cache(ctx context.Context, t *tool, in *invocation) (mcp.Result, error) {
	args := in.req.Params.Arguments
	if len(args) == 0 {
		args = json.RawMessage("null") // absent arguments, as "arguments": null
	}
	raw, err := t.cached(context.WithValue(ctx, invocationKey{}, in), args)
	if err == nil {
		res, derr := decodeResult(raw)
		if derr != nil {
			// Stored by an incompatible version of the SDK or of this
			// package: serve the tool instead (bump Resource.Version on such
			// changes).
			m.log.Warn("agentmcp: a cached result does not decode; calling the tool", "tool", t.name, "error", derr)
			return in.next(ctx, in.method, in.req)
		}
		return res, nil
	}
	return m.failed(ctx, t, in, err)
}

// mutate serves a mutation.
func (m *middleware) mutate(ctx context.Context, t *tool, in *invocation) (mcp.Result, error) {
	res, err := t.mutation(ctx, in)
	if err == nil {
		return res, nil
	}
	if errors.Is(err, agentcache.ErrClosed) {
		// The fleet could not be told of the write: refuse it.
		return errorResult(fmt.Sprintf("%s: the cache is closed; the tool was not called", t.name)), nil
	}
	return m.failed(ctx, t, in, err)
}

// failed turns the error of a cached or mutating call into what the client
// gets.
func (m *middleware) failed(ctx context.Context, t *tool, in *invocation, err error) (mcp.Result, error) {
	var pt *passThrough
	var te *toolError
	var pe *agentcache.PanicError
	switch {
	case errors.As(err, &pt):
		return cloneResult(pt.res), nil
	case errors.As(err, &te):
		return nil, te.err
	case errors.As(err, &pe):
		m.log.Error("agentmcp: tool panicked", "tool", t.name, "panic", fmt.Sprint(pe.Value), "stack", string(pe.Stack))
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: fmt.Sprintf("tool %q panicked", t.name)}
	case errors.Is(err, agentcache.ErrNotFound):
		return errorResult(fmt.Sprintf("%s: not found", t.name)), nil
	case errors.Is(err, agentcache.ErrClosed):
		return in.next(ctx, in.method, in.req) // a closed cache serves nothing: call the tool
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return nil, err
	}
	// Refused before the tool ran: a missing or invalid scope ID, arguments
	// beyond the limits.
	return errorResult(err.Error()), nil
}
