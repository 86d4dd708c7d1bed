package embedded

import (
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/tier"
	acredis "github.com/agentcache/agentcache-go/tier/redis"
	"github.com/agentcache/agentcache-go/tier/tiertest"
)

// The demo's embedded mode is only honest if the store behaves on miniredis
// as it does on Redis: run the same conformance suite the real server runs.
func TestConformance(t *testing.T) {
	m, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	client := goredis.NewClient(&goredis.Options{Addr: m.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = client.Close() })
	tiertest.Run(t, func(t *testing.T, prefix string) tier.Remote {
		s, err := acredis.New(client, acredis.Options{Prefix: prefix})
		if err != nil {
			t.Fatalf("New(prefix %q): %v", prefix, err)
		}
		return s
	})
}
