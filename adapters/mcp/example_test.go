package agentmcp_test

import (
	"context"
	"fmt"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentcache/agentcache-go/adapters/mcp"
	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
)

func Example() {
	ctx := context.Background()
	cache, err := agentcache.New(agentcache.Options{}) // add L2 (tier/redis) to share across instances
	if err != nil {
		panic(err)
	}
	defer cache.Close(ctx)

	server := mcp.NewServer(&mcp.Implementation{Name: "shop", Version: "v1"}, nil)
	type cartArgs struct{}
	runs := 0
	mcp.AddTool(server, &mcp.Tool{Name: "get_cart", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		func(ctx context.Context, _ *mcp.CallToolRequest, _ cartArgs) (*mcp.CallToolResult, any, error) {
			runs++
			user, _ := scope.UserFrom(ctx)
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: user + ": 2 items"}}}, nil, nil
		})
	type addArgs struct {
		Item string `json:"item"`
	}
	mcp.AddTool(server, &mcp.Tool{Name: "add_to_cart", Annotations: &mcp.ToolAnnotations{DestructiveHint: new(true)}},
		func(ctx context.Context, _ *mcp.CallToolRequest, in addArgs) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "added " + in.Item}}}, nil, nil
		})

	cart := resource.Resource{Name: "get_cart", Scope: scope.User, TTL: time.Minute}
	mw, err := agentmcp.NewMiddleware(cache, agentmcp.Policy{
		"get_cart":    {Resource: cart},
		"add_to_cart": {Invalidates: []resource.Resource{cart}},
	}, nil)
	if err != nil {
		panic(err)
	}
	server.AddReceivingMiddleware(mw)

	// An in-memory client and server; the server side of the session runs
	// as user alice (over HTTP the user would come from the bearer token).
	st, ct := mcp.NewInMemoryTransports()
	if _, err := server.Connect(scope.WithUser(ctx, "alice"), st, nil); err != nil {
		panic(err)
	}
	session, err := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "v1"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		panic(err)
	}
	defer session.Close()

	callTool := func(name string, args any) {
		res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s: %s (tool runs so far: %d)\n", name, res.Content[0].(*mcp.TextContent).Text, runs)
	}
	callTool("get_cart", map[string]any{})
	callTool("get_cart", map[string]any{})
	callTool("add_to_cart", map[string]any{"item": "tea"})
	callTool("get_cart", map[string]any{})
	// Output:
	// get_cart: alice: 2 items (tool runs so far: 1)
	// get_cart: alice: 2 items (tool runs so far: 1)
	// add_to_cart: added tea (tool runs so far: 1)
	// get_cart: alice: 2 items (tool runs so far: 2)
}
