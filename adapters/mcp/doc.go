// Package agentmcp caches the results of MCP tools/call requests served with
// the official MCP Go SDK (github.com/modelcontextprotocol/go-sdk/mcp). It is
// a server-side receiving middleware:
//
//	mw, err := agentmcp.NewMiddleware(cache, agentmcp.Policy{
//		"get_weather": {Resource: resource.Resource{Name: "get_weather", TTL: 10 * time.Minute}},
//		"get_cart":    {Resource: cart}, // cart.Scope == scope.User
//		"add_to_cart": {Invalidates: []resource.Resource{cart}},
//	}, nil)
//	server.AddReceivingMiddleware(mw)
//
// # What is cached
//
// A tools/call of a tool named in the [Policy] with a [ToolPolicy.Resource]
// is served through the [agentcache.Cache] as that resource: from
// L1, from L2 (shared by every instance), or by running the tool once for
// every concurrent identical call. The key is the resource, the caller's
// scope ID for a per-user or per-session resource, and the canonical JSON
// of the call's arguments (the semantics of [agentcache.Wrap] with json.RawMessage arguments: key
// order, white space and number spelling do not matter). What is stored is
// the result's content, structured content and _meta, as JSON; every caller
// gets its own decoded copy.
//
// A result whose underlying error (set with [mcp.CallToolResult.SetError],
// as the SDK's typed handlers do when they return an error) wraps
// [agentcache.ErrNotFound] is remembered as "not found" for the resource's
// negative TTL; later identical calls get an error result saying the tool
// found nothing, without running it.
//
// # What is never cached
//
//   - Tools not in the policy, and every method other than tools/call: they
//     pass through untouched.
//   - Tools annotated destructive ([mcp.ToolAnnotations.DestructiveHint]
//     set to true), whatever the policy says. The middleware learns a tool's
//     annotations by asking the handlers after it for tools/list on each
//     call it would cache, so a tool that is replaced at run time is judged
//     by its current definition. (The MCP specification presumes a tool with
//     no DestructiveHint destructive; this middleware does not, because
//     naming a tool in the policy is the explicit statement that it can be
//     cached.) A tool that tools/list does not show to the caller, or whose
//     annotations cannot be listed, is not cached either.
//   - Results with IsError set, results that ask the client for input
//     ([mcp.CallToolResult.NeedsInput]), and calls that answer such a
//     request (InputResponses or RequestState set).
//   - Protocol errors (a handler's Go error): they are returned as they are.
//
// # Writes
//
// A policy entry with [ToolPolicy.Invalidates] makes its tool a mutation,
// like [agentcache.WrapMutation]: after a call that succeeds (no Go error,
// IsError false, no input required) the named resources are invalidated in
// the caller's scope — this user's get_cart on every instance, nobody
// else's. The scope IDs they need are checked before the tool runs; a
// mutation that could not invalidate what it changes is refused without
// running.
//
// # Whose results they are
//
// Before a cached or mutating call the middleware puts the caller's IDs in
// the context (see package scope):
//
//   - The user is the UserID of the request's verified bearer token
//     (RequestExtra.TokenInfo, set by the SDK's streamable HTTP transport
//     behind auth.RequireBearerToken) when there is one; otherwise the user
//     the application put in the context with scope.WithUser (for the
//     streamable transport, the context of the HTTP request that opened the
//     MCP session; for stdio or in-memory transports, the context given to
//     Server.Connect or Server.Run).
//   - The session is the MCP session ID (Mcp-Session-Id) when the transport
//     has one; otherwise the session in the context (scope.WithSession).
//
// [Options.UserID] and [Options.SessionID] replace these rules. A call of a
// per-user or per-session tool without the ID it needs fails closed: the
// tool is not called, nothing is cached, and the client gets an error result
// (IsError) saying why. It never falls back to a shared entry.
//
// # Tracing
//
// Lookups and tool runs are traced by the Cache (see package otel). The SDK
// does not expose the JSON-RPC request ID to middleware, so the
// gen_ai.tool.call.id attribute is set only when [Options.ToolCallID]
// supplies an ID or the context already carries one (otel.WithToolCallID).
package agentmcp
