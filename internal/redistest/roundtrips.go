package redistest

import (
	"context"
	"slices"
	"sync"

	goredis "github.com/redis/go-redis/v9"
)

// RoundTrips is a go-redis hook that records the round trips of the clients
// it is added to: each single command and each pipeline is one Trip,
// recorded when it is sent. Add it to a client with AddHook, or add
// Node(addr) to each node client of a cluster (Install does) to know which
// node each trip went to. It is safe for concurrent use; the zero value is
// ready.
type RoundTrips struct {
	mu    sync.Mutex
	trips []Trip
}

// Trip is one round trip.
type Trip struct {
	Addr     string          // the address given to Node; "" for trips of the hook itself
	Pipeline bool            // a pipeline (or transaction), not a single command
	Cmds     []goredis.Cmder // what it sent; their replies and errors are set once it returns
}

// Names returns the names of the trip's commands.
func (t Trip) Names() []string {
	names := make([]string, len(t.Cmds))
	for i, c := range t.Cmds {
		names[i] = c.Name()
	}
	return names
}

// Commands returns the names of the commands of trips, in order.
func Commands(trips []Trip) []string {
	var names []string
	for _, t := range trips {
		names = append(names, t.Names()...)
	}
	return names
}

// Len returns how many round trips were recorded since the last Reset.
func (r *RoundTrips) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.trips)
}

// Since returns the round trips recorded after the first n.
func (r *RoundTrips) Since(n int) []Trip {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n >= len(r.trips) {
		return nil
	}
	return slices.Clone(r.trips[n:])
}

// Trips returns the round trips recorded since the last Reset.
func (r *RoundTrips) Trips() []Trip { return r.Since(0) }

// Reset forgets the round trips recorded so far.
func (r *RoundTrips) Reset() {
	r.mu.Lock()
	r.trips = nil
	r.mu.Unlock()
}

// Node returns a hook that records the round trips of one node's client as
// going to addr.
func (r *RoundTrips) Node(addr string) goredis.Hook { return nodeHook{r: r, addr: addr} }

// Install adds a Node hook to every node client of cc, with the node's
// address. It must run before cc sends anything: it only sees the node
// clients created afterwards.
func (r *RoundTrips) Install(cc *goredis.ClusterClient) {
	cc.OnNewNode(func(node *goredis.Client) { node.AddHook(r.Node(node.Options().Addr)) })
}

func (r *RoundTrips) add(addr string, pipeline bool, cmds []goredis.Cmder) {
	r.mu.Lock()
	r.trips = append(r.trips, Trip{Addr: addr, Pipeline: pipeline, Cmds: cmds})
	r.mu.Unlock()
}

// DialHook implements goredis.Hook.
func (r *RoundTrips) DialHook(next goredis.DialHook) goredis.DialHook { return next }

// ProcessHook implements goredis.Hook.
func (r *RoundTrips) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return nodeHook{r: r}.ProcessHook(next)
}

// ProcessPipelineHook implements goredis.Hook.
func (r *RoundTrips) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return nodeHook{r: r}.ProcessPipelineHook(next)
}

type nodeHook struct {
	r    *RoundTrips
	addr string
}

func (h nodeHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h nodeHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h.r.add(h.addr, false, []goredis.Cmder{cmd})
		return next(ctx, cmd)
	}
}

func (h nodeHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		h.r.add(h.addr, true, slices.Clone(cmds))
		return next(ctx, cmds)
	}
}
