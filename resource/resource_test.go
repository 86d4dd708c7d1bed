package resource_test

import (
	"strings"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
)

func TestValidate(t *testing.T) {
	ok := resource.Resource{Name: "get_cart", Scope: scope.User, TTL: time.Minute, Version: 1}
	valid := []resource.Resource{
		ok,
		{Name: "a"},
		{Name: "search.docs", Scope: scope.Session},
		{Name: "get-weather_v2.0", Scope: scope.Global},
		{Name: strings.Repeat("a", resource.MaxNameLen)},
		{Name: "x", NegativeTTL: -1},          // negative: don't cache not-found
		{Name: "x", NegativeTTL: time.Second}, // explicit
		{Name: "x", StaleWindow: time.Hour},
		{Name: "getWeather"}, // MCP-style camelCase tool names
		{Name: "Get_cart"},
	}
	for _, r := range valid {
		if err := r.Validate(); err != nil {
			t.Errorf("%+v.Validate() = %v; want nil", r, err)
		}
	}
	invalid := []struct {
		r     resource.Resource
		field string
	}{
		{resource.Resource{}, "Name is empty"},
		{resource.Resource{Name: strings.Repeat("a", resource.MaxNameLen+1)}, "Name is 65 bytes"},
		{resource.Resource{Name: "1cart"}, "Name"},
		{resource.Resource{Name: "_cart"}, "Name"},
		{resource.Resource{Name: "get cart"}, "Name"},
		{resource.Resource{Name: "get:cart"}, "Name"},
		{resource.Resource{Name: "get{cart}"}, "Name"},
		{resource.Resource{Name: "get_cart@2"}, "Name"},
		{resource.Resource{Name: "get/cart"}, "Name"},
		{resource.Resource{Name: "get_carté"}, "Name"},
		{resource.Resource{Name: "get_cart\x00"}, "Name"},
		{resource.Resource{Name: "x", Scope: scope.Kind(3)}, "Scope"},
		{resource.Resource{Name: "x", TTL: -time.Second}, "TTL"},
		{resource.Resource{Name: "x", StaleWindow: -1}, "StaleWindow"},
	}
	for _, tc := range invalid {
		err := tc.r.Validate()
		if err == nil {
			t.Errorf("%+v.Validate() = nil; want an error", tc.r)
			continue
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "resource: ") || !strings.Contains(msg, tc.field) {
			t.Errorf("%+v.Validate() = %q; want a resource: error naming %s", tc.r, msg, tc.field)
		}
	}
}

func TestID(t *testing.T) {
	for _, tc := range []struct {
		r    resource.Resource
		want string
	}{
		{resource.Resource{Name: "get_cart", Version: 1}, "get_cart@1"},
		{resource.Resource{Name: "get_cart"}, "get_cart@0"},
		{resource.Resource{Name: "search.docs", Version: 4294967295}, "search.docs@4294967295"},
	} {
		if got := tc.r.ID(); got != tc.want {
			t.Errorf("ID() = %q; want %q", got, tc.want)
		}
	}
}

func TestNegativeTTLFor(t *testing.T) {
	for _, tc := range []struct {
		neg, ttl, want time.Duration
	}{
		{0, time.Hour, 5 * time.Minute},                     // capped
		{0, 10 * time.Minute, time.Minute},                  // TTL/10
		{0, 5 * time.Second, time.Second},                   // floor
		{0, 500 * time.Millisecond, 500 * time.Millisecond}, // never above the TTL
		{0, 0, 0},
		{-1, time.Hour, 0},                  // disabled
		{time.Hour, time.Minute, time.Hour}, // explicit wins
	} {
		r := resource.Resource{Name: "x", NegativeTTL: tc.neg}
		if got := r.NegativeTTLFor(tc.ttl); got != tc.want {
			t.Errorf("NegativeTTL %v: NegativeTTLFor(%v) = %v; want %v", tc.neg, tc.ttl, got, tc.want)
		}
	}
}
