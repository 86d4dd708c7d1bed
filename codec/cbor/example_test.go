package cbor_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/codec/cbor"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/tier/fake"
)

type order struct {
	ID      uint64    `json:"id"`
	Placed  time.Time `json:"placed"`
	Items   []string  `json:"items"`
	Receipt []byte    `json:"receipt"`
}

// With Options.Codec set to cbor.Codec{}, values go to L2 as CBOR, and every
// tier returns the same value: the caller whose call ran the tool, an L1
// hit, and an L2 hit on another instance. (tier/fake stands in for Redis.)
func ExampleCodec() {
	backend := fake.NewBackend(fake.BackendOptions{})
	defer backend.Close()
	ctx := context.Background()
	// A loose L2Timeout, so that a loaded machine cannot time the in-memory
	// L2 out (the default, 250ms, is meant for Redis).
	a, _ := agentcache.New(agentcache.Options{L2: backend.Remote("shop:"), L2Timeout: time.Minute, Codec: cbor.Codec{}})
	defer a.Close(ctx)
	b, _ := agentcache.New(agentcache.Options{L2: backend.Remote("shop:"), L2Timeout: time.Minute, Codec: cbor.Codec{}})
	defer b.Close(ctx)

	getOrder := resource.Resource{Name: "get_order", TTL: time.Hour}
	paris := time.FixedZone("CET", 3600)
	tool := func(ctx context.Context, id uint64) (order, error) {
		return order{
			ID:      id,
			Placed:  time.Date(2026, 3, 1, 9, 30, 0, 123456789, paris),
			Items:   []string{"book", "lamp"},
			Receipt: []byte{0xca, 0xfe},
		}, nil
	}
	// WriteThrough: the value is in L2 when the first call returns.
	orderA, _ := agentcache.Wrap(a, getOrder, tool, agentcache.WriteThrough())
	orderB, _ := agentcache.Wrap(b, getOrder, tool, agentcache.WriteThrough())

	loaded, _ := orderA(ctx, 18446744073709551615) // the tool runs
	fromL1, _ := orderA(ctx, 18446744073709551615)
	fromL2, _ := orderB(ctx, 18446744073709551615)
	fmt.Println(reflect.DeepEqual(loaded, fromL1), reflect.DeepEqual(loaded, fromL2), b.Stats().L2Hits)
	fmt.Println(fromL2.ID, fromL2.Placed.Format(time.RFC3339Nano), fromL2.Items, fromL2.Receipt)
	// Even the caller that ran the tool gets the decoded copy: the time
	// keeps its instant and offset, not its zone's name.
	fmt.Println(loaded.Placed.Format("MST"))
	// Output:
	// true true 1
	// 18446744073709551615 2026-03-01T09:30:00.123456789+01:00 [book lamp] [202 254]
	// +0100
}

// A result type the codec cannot carry is refused when the tool is wrapped,
// with an error naming the part, instead of being served differently from L1
// and from L2.
func ExampleCodec_CheckType() {
	c, _ := agentcache.New(agentcache.Options{Codec: cbor.Codec{}})
	defer c.Close(context.Background())

	type lookup struct {
		Answer string
		Err    error // an interface with methods: CBOR cannot decode into it
	}
	_, err := agentcache.Wrap(c, resource.Resource{Name: "lookup"},
		func(ctx context.Context, q string) (lookup, error) { return lookup{}, nil })
	var te *cbor.TypeError
	fmt.Println(errors.Is(err, agentcache.ErrResultType), errors.As(err, &te))
	fmt.Println(te.Path)
	// Output:
	// true true
	// cbor_test.lookup.Err
}
