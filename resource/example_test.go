package resource_test

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
)

func ExampleHashJSON() {
	// Two spellings of the same arguments, as two model turns might write them.
	a := []byte(`{"city":"Paris","days":3,"units":"metric"}`)
	b := []byte(`{ "units": "metric", "days": 3.0, "city": "\u0050aris" }`)

	ha, _ := resource.HashJSON(a, resource.Limits{})
	hb, _ := resource.HashJSON(b, resource.Limits{})
	fmt.Println(ha == hb, ha)

	canonical, _ := resource.AppendCanonicalJSON(nil, b, resource.Limits{})
	fmt.Println(string(canonical))

	// Hostile arguments fail fast.
	_, err := resource.HashJSON([]byte(strings.Repeat("[", 1_000_000)), resource.Limits{})
	fmt.Println(errors.Is(err, resource.ErrTooDeep))
	// Output:
	// true ZPiuf_TsukH8rGvWTBzpPw
	// {"city":"Paris","days":3,"units":"metric"}
	// true
}

func ExampleHashValue() {
	type weatherArgs struct {
		City  string `json:"city"`
		Days  int    `json:"days"`
		Units string `json:"units,omitempty"`
	}
	h1, _ := resource.HashValue(weatherArgs{City: "Paris", Days: 3, Units: "metric"}, resource.Limits{})
	h2, _ := resource.HashJSON([]byte(`{"units":"metric","days":3,"city":"Paris"}`), resource.Limits{})
	fmt.Println(h1 == h2)
	// Output:
	// true
}

func ExampleResource() {
	cart := resource.Resource{
		Name:    "get_cart",
		Scope:   scope.User,
		TTL:     10 * time.Minute,
		Version: 2,
	}
	fmt.Println(cart.Validate(), cart.ID(), cart.NegativeTTLFor(cart.TTL))

	bad := resource.Resource{Name: "get:cart"}
	fmt.Println(bad.Validate())
	// Output:
	// <nil> get_cart@2 1m0s
	// resource: Name "get:cart" has ':' at byte 3; only letters, digits, '_', '.' and '-' are allowed
}
