package resource_test

import (
	"encoding/json"
	"testing"

	"github.com/agentcache/agentcache-go/resource"
)

type mediumArgs struct {
	Query    string            `json:"query"`
	UserID   string            `json:"user_id"`
	Limit    int               `json:"limit"`
	Offset   int               `json:"offset,omitempty"`
	Sort     string            `json:"sort,omitempty"`
	Filters  map[string]string `json:"filters"`
	Tags     []string          `json:"tags"`
	Location *location         `json:"location,omitempty"`
	Fields   []string          `json:"fields"`
	Exact    bool              `json:"exact"`
}

type location struct {
	Lat     float64 `json:"lat"`
	Lon     float64 `json:"lon"`
	RadiusM int     `json:"radius_m"`
}

func mediumValue() mediumArgs {
	return mediumArgs{
		Query:    "cheap flights from Paris to <Tokyo> in spring & summer",
		UserID:   "user-1234567890",
		Limit:    25,
		Sort:     "price_asc",
		Filters:  map[string]string{"airline": "any", "cabin": "economy", "stops": "1", "currency": "EUR"},
		Tags:     []string{"travel", "flights", "budget", "asia"},
		Location: &location{Lat: 48.8566, Lon: 2.3522, RadiusM: 50000},
		Fields:   []string{"price", "duration", "airline", "departure", "arrival", "stops"},
	}
}

var (
	smallJSON  = []byte(`{"user_id":"user-42","limit":10,"tags":["news","sports"]}`)
	mediumJSON = func() []byte {
		b, err := json.MarshalIndent(mediumValue(), "", "  ")
		if err != nil {
			panic(err)
		}
		return b
	}()
)

func BenchmarkHashJSON(b *testing.B) {
	for _, bc := range []struct {
		name string
		in   []byte
	}{{"small", smallJSON}, {"medium", mediumJSON}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.in)))
			for b.Loop() {
				if _, err := resource.HashJSON(bc.in, resource.Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkHashValue(b *testing.B) {
	type small struct {
		UserID string
		Limit  int
		Tags   []string
	}
	for _, bc := range []struct {
		name string
		v    any
	}{
		{"small", small{UserID: "user-42", Limit: 10, Tags: []string{"news", "sports"}}},
		{"medium", mediumValue()},
		{"map", map[string]any{"user_id": "user-42", "limit": 10.0, "tags": []any{"news", "sports"}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := resource.HashValue(bc.v, resource.Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// What a typed wrapper pays when it boxes its argument struct per call.
	b.Run("small/boxed", func(b *testing.B) {
		b.ReportAllocs()
		a := small{UserID: "user-42", Limit: 10, Tags: []string{"news", "sports"}}
		for b.Loop() {
			if _, err := resource.HashValue(a, resource.Limits{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The baseline HashValue replaces.
	b.Run("medium/json.Marshal+HashJSON", func(b *testing.B) {
		b.ReportAllocs()
		v := mediumValue()
		for b.Loop() {
			data, err := json.Marshal(v)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := resource.HashJSON(data, resource.Limits{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkAppendCanonicalJSON(b *testing.B) {
	dst := make([]byte, 0, 1024)
	b.ReportAllocs()
	b.SetBytes(int64(len(mediumJSON)))
	for b.Loop() {
		var err error
		if dst, err = resource.AppendCanonicalJSON(dst[:0], mediumJSON, resource.Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkArgsEncoder is what a typed tool pays to key a call: the
// canonical form of its arguments, without boxing them, and without the
// hash (an L1 key holds short forms as they are).
func BenchmarkArgsEncoder(b *testing.B) {
	type small struct {
		ID     int    `json:"id"`
		Locale string `json:"locale"`
	}
	args := small{ID: 42, Locale: "en-US"}
	enc := resource.NewArgsEncoder[small]()
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = enc.Append(buf[:0], &args, resource.Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}
