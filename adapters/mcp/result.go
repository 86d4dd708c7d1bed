package agentmcp

import (
	"encoding/json"
	"maps"
	"slices"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// encodeResult is the cached form of a successful result: its content,
// structured content and _meta as JSON. Nothing the SDK sets per call
// (the result type of the negotiated protocol version, the server info it
// adds to _meta) is part of it.
func encodeResult(res *mcp.CallToolResult) (json.RawMessage, error) {
	return json.Marshal(&mcp.CallToolResult{
		Meta:              res.Meta,
		Content:           res.Content,
		StructuredContent: res.StructuredContent,
	})
}

// decodeResult returns a fresh result from its cached form, so that nothing
// the SDK does to the result it sends can reach the cache or another caller.
func decodeResult(raw json.RawMessage) (*mcp.CallToolResult, error) {
	res := new(mcp.CallToolResult)
	if err := json.Unmarshal(raw, res); err != nil {
		return nil, err
	}
	if res.Content == nil {
		res.Content = []mcp.Content{} // "content" is required on the wire
	}
	return res, nil
}

// cloneResult returns a copy of res that a caller may hand to the SDK: the
// SDK writes to a result's _meta before sending it, and one uncached result
// may go to every caller that waited for the same load.
func cloneResult(res *mcp.CallToolResult) *mcp.CallToolResult {
	c := *res
	c.Meta = maps.Clone(res.Meta)
	c.Content = slices.Clone(res.Content)
	return &c
}

// errorResult is an error result (IsError) with one text message.
func errorResult(msg string) *mcp.CallToolResult {
	return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: msg}}}
}

// passThrough is how the loader hands back a result that must reach its
// callers but not the cache: an error result, one that asks for input, or
// one that does not encode. When the result's error wraps
// agentcache.ErrNotFound, Unwrap returns it, so the cache remembers "not
// found".
type passThrough struct {
	res      *mcp.CallToolResult
	notFound error
}

func (p *passThrough) Error() string {
	switch {
	case p.res.IsError:
		return "agentmcp: the tool returned an error result"
	case p.res.NeedsInput() || len(p.res.InputRequests) > 0:
		return "agentmcp: the tool asked for input"
	}
	return "agentmcp: the tool's result does not encode as JSON"
}

func (p *passThrough) Unwrap() error { return p.notFound }

// toolError carries a Go error of the handlers after the middleware (a
// protocol error for the client) through the cache, untouched. It does not
// unwrap: such an error is never a cacheable "not found".
type toolError struct{ err error }

func (e *toolError) Error() string { return e.err.Error() }
