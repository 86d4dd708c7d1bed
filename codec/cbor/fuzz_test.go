package cbor_test

// FuzzUnmarshal: hostile bytes never panic, cost bounded memory, and what
// decodes encodes and decodes again to an equal value with the same bytes.
// FuzzRoundTrip: values built from the input come back equal. Their seed
// corpora (testdata/fuzz) run in every `go test`;
// `go test -run '^$' -fuzz FuzzUnmarshal ./codec/cbor` explores further.

import (
	"math"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/codec/cbor"
)

type fuzzTarget struct {
	Name  string            `json:"name"`
	N     int64             `json:"n"`
	U     uint64            `json:"u"`
	F     float64           `json:"f"`
	B     []byte            `json:"b"`
	At    time.Time         `json:"at"`
	Until *time.Time        `json:"until"`
	Any   any               `json:"any"`
	Tags  []string          `json:"tags"`
	Attrs map[string]int    `json:"attrs"`
	Kids  []*fuzzTarget     `json:"kids"`
	ByID  map[uint16]string `json:"by_id"`
}

// decodeStable decodes data into a new T; when it decodes, the value must
// encode, decode to a deeply equal value, and encode to the same bytes.
func decodeStable[T any](t *testing.T, data []byte) {
	var c cbor.Codec
	var v1 T
	if err := c.Unmarshal(data, &v1); err != nil {
		return
	}
	b1, err := c.Marshal(v1)
	if err != nil {
		t.Fatalf("%T decoded from %x does not encode: %v", v1, data, err)
	}
	var v2 T
	if err := c.Unmarshal(b1, &v2); err != nil {
		t.Fatalf("%T: its encoding %x does not decode: %v", v1, b1, err)
	}
	if !reflect.DeepEqual(v1, v2) {
		t.Fatalf("decode, encode, decode of %x: %#v, then %#v", data, v1, v2)
	}
	if b2, err := c.Marshal(v2); err != nil || string(b2) != string(b1) {
		t.Fatalf("decode, encode, decode of %x encodes to %x, then %x (%v)", data, b1, b2, err)
	}
}

func FuzzUnmarshal(f *testing.F) {
	var c cbor.Codec
	at := time.Date(2024, 2, 29, 12, 0, 0, 5, time.FixedZone("", -9000))
	for _, v := range []any{
		fuzzTarget{Name: "n", N: math.MinInt64, U: math.MaxUint64, F: -0.5, B: []byte{}, At: at, Until: &at,
			Any: map[string]any{"x": []any{1, "y", nil, at}}, Tags: []string{}, Attrs: map[string]int{"a": 1},
			Kids: []*fuzzTarget{{Name: "k"}, nil}, ByID: map[uint16]string{7: "s"}},
		map[string]any{"a": 1.5, "b": []byte("c")},
		[]any{int64(-1), uint64(1), "\xff", true, nil},
	} {
		b, err := c.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		decodeStable[any](t, data)
		decodeStable[fuzzTarget](t, data)
		decodeStable[[]string](t, data)
		decodeStable[map[string]time.Time](t, data)
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		// Decoding is bounded by the input: every length is checked
		// against it first. The allowance covers the decoded types'
		// element sizes and the library's caches.
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20+uint64(len(data))*512 {
			t.Fatalf("%d bytes of input allocated %d bytes", len(data), grew)
		}
	})
}

func FuzzRoundTrip(f *testing.F) {
	f.Add("name", int64(math.MinInt64), uint64(math.MaxUint64), 1.5, []byte{0}, int64(0), 19800, true)
	f.Add("\xff", int64(-1), uint64(0), math.Inf(1), []byte(nil), int64(253402300799), -34200, false)
	f.Fuzz(func(t *testing.T, s string, n int64, u uint64, fl float64, b []byte, sec int64, off int, empty bool) {
		at := time.Unix(sec%253402300799, int64(u%1e9)).In(time.FixedZone("Z", (off%86400)/60*60))
		v := fuzzTarget{Name: s, N: n, U: u, F: fl, B: b, At: at, Any: map[string]any{s: n, "u": u, "b": b}, ByID: map[uint16]string{uint16(u): s}}
		if empty {
			v.Tags, v.Attrs = []string{}, map[string]int{}
		}
		var c cbor.Codec
		data, err := c.Marshal(v)
		if err != nil {
			if math.IsNaN(fl) || at.Year() < 0 || at.Year() > 9999 {
				return // NaN and times RFC 3339 cannot write are refused
			}
			t.Fatalf("Marshal(%#v): %v", v, err)
		}
		var got fuzzTarget
		if err := c.Unmarshal(data, &got); err != nil {
			t.Fatalf("Unmarshal of %#v: %v", v, err)
		}
		if got.Name != v.Name || got.N != n || got.U != u || math.Float64bits(got.F) != math.Float64bits(fl) ||
			!reflect.DeepEqual(got.B, b) || !got.At.Equal(at) || !reflect.DeepEqual(got.Tags, v.Tags) || !reflect.DeepEqual(got.Attrs, v.Attrs) ||
			!reflect.DeepEqual(got.ByID, v.ByID) {
			t.Fatalf("%#v came back as %#v", v, got)
		}
		if _, o1 := got.At.Zone(); o1 != (off%86400)/60*60 {
			t.Fatalf("offset %d came back as %d", (off%86400)/60*60, o1)
		}
		decodeStable[fuzzTarget](t, data)
	})
}
