package agentmcp_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentcache/agentcache-go/agentcache"
)

// BenchmarkCallTool compares a cache hit through the middleware with a tool
// it does not cache, both over the in-memory transport.
func BenchmarkCallTool(b *testing.B) {
	for _, bc := range []struct{ name, tool string }{
		{"hit", "get_weather"},
		{"passthrough", "echo"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f := newFixture(b, agentcache.Options{}, nil, nil)
			cs := f.connect(context.Background())
			p := &mcp.CallToolParams{Name: bc.tool, Arguments: json.RawMessage(`{"city":"Paris"}`)}
			if bc.tool == "echo" {
				p.Arguments = json.RawMessage(`{}`)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := cs.CallTool(ctx, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
