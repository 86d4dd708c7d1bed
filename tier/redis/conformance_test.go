package redis

import (
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/internal/redistest"
	"github.com/agentcache/agentcache-go/tier"
	"github.com/agentcache/agentcache-go/tier/tiertest"
)

// singleClient returns a client for srv that lets context deadlines bound
// each call, as the clients of NewFromConfig do.
func singleClient(t testing.TB, srv *redistest.Server) *goredis.Client {
	o := srv.Options()
	o.ContextTimeoutEnabled = true
	c := goredis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func clusterClient(t testing.TB, c *redistest.Cluster) *goredis.ClusterClient {
	o := c.ClusterOptions()
	o.ContextTimeoutEnabled = true
	cc := goredis.NewClusterClient(o)
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// factory opens stores on one shared client; the stores do not own it.
func factory(client goredis.UniversalClient) tiertest.Factory {
	return func(t *testing.T, prefix string) tier.Remote {
		s, err := New(client, Options{Prefix: prefix})
		if err != nil {
			t.Fatalf("New(prefix %q): %v", prefix, err)
		}
		return s
	}
}

func TestConformanceSingle(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	tiertest.Run(t, factory(singleClient(t, srv)))
}

func TestConformanceCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3, 0)
	tiertest.Run(t, factory(clusterClient(t, c)))
}

// The store owning its client must also pass: Close then closes the client
// while other stores' operations may still be running on theirs.
func TestConformanceOwnedClient(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	tiertest.Run(t, func(t *testing.T, prefix string) tier.Remote {
		s, err := New(singleClient(t, srv), Options{Prefix: prefix, CloseClient: true})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// A Ring (client-side sharding over independent servers) is a
// UniversalClient too; the store treats each shard like a cluster node.
func TestConformanceRing(t *testing.T) {
	t.Parallel()
	a, b := redistest.Start(t), redistest.Start(t)
	ring := goredis.NewRing(&goredis.RingOptions{
		Addrs:                 map[string]string{"a": a.Addr(), "b": b.Addr()},
		ContextTimeoutEnabled: true,
	})
	t.Cleanup(func() { _ = ring.Close() })
	tiertest.Run(t, factory(ring))
}
