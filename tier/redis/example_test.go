package redis_test

import (
	"context"
	"log"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/tier/redis"
)

// A store on a client the application already has. The store leaves the
// client open on Close; ContextTimeoutEnabled lets a context deadline bound
// each call.
func ExampleNew() {
	client := goredis.NewClient(&goredis.Options{
		Addr:                  "localhost:6379",
		ReadTimeout:           200 * time.Millisecond,
		ContextTimeoutEnabled: true,
	})
	defer client.Close()
	store, err := redis.New(client, redis.Options{Prefix: "shop:prod:"})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	ctx := context.Background()
	if err := store.Set(ctx, "cart:42", []byte(`{"items":3}`), time.Hour); err != nil {
		log.Print(err) // the cache would count it and carry on
	}
}

// A store that creates, checks and owns its client. A wrong password or an
// unreachable server is reported here, not on the first cache miss.
func ExampleNewFromURL() {
	store, err := redis.NewFromURL("redis://:secret@localhost:6379/0?read_timeout=100ms", redis.Options{Prefix: "shop:prod:"})
	if err != nil {
		log.Fatal(err) // e.g. redis: authentication failed for localhost:6379: WRONGPASS ...
	}
	defer store.Close()
}

// A Redis Cluster: batches cost one round trip per master and never fail
// with CROSSSLOT.
func ExampleNewFromConfig() {
	store, err := redis.NewFromConfig(redis.Config{Addrs: []string{"10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"}}, redis.Options{Prefix: "shop:prod:"})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
}
