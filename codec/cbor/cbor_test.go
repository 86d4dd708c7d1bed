package cbor_test

import (
	"encoding/json"
	"math"
	"math/big"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/codec/cbor"
)

// roundTrip encodes v, decodes it, encodes the copy and decodes that, and
// fails t unless the two copies are deeply equal (and == when comparable,
// pointers aside) and encode to the same bytes. It returns the first copy.
func roundTrip[T any](t *testing.T, name string, v T) T {
	t.Helper()
	var c cbor.Codec
	b1, err := c.Marshal(v)
	if err != nil {
		t.Fatalf("%s: Marshal: %v", name, err)
	}
	var out1, out2 T
	if err := c.Unmarshal(b1, &out1); err != nil {
		t.Fatalf("%s: Unmarshal: %v", name, err)
	}
	b2, err := c.Marshal(out1)
	if err != nil {
		t.Fatalf("%s: Marshal of the copy: %v", name, err)
	}
	if err := c.Unmarshal(b2, &out2); err != nil {
		t.Fatalf("%s: Unmarshal of the copy: %v", name, err)
	}
	if b3, err := c.Marshal(out2); err != nil || string(b3) != string(b2) {
		t.Errorf("%s: two decodes encode to %x and %x (%v)", name, b2, b3, err)
	}
	if !reflect.DeepEqual(out1, out2) {
		t.Errorf("%s: two decodes differ: %#v, %#v", name, out1, out2)
	}
	if rv := reflect.ValueOf(out1); rv.IsValid() && rv.Kind() != reflect.Pointer && rv.Comparable() && any(out1) != any(out2) {
		t.Errorf("%s: two decodes are not ==: %#v, %#v", name, out1, out2)
	}
	return out1
}

// same is roundTrip, and fails t unless the copy is deeply equal to v.
func same[T any](t *testing.T, name string, v T) {
	t.Helper()
	if got := roundTrip(t, name, v); !reflect.DeepEqual(got, v) {
		t.Errorf("%s: came back as %#v, want %#v", name, got, v)
	}
}

type Base struct {
	ID string `json:"id"`
}

type record struct {
	Base
	Name  string            `cbor:"name"`
	Count int64             `json:"count"`
	Big   uint64            `json:"big"`
	Small int8              `json:"small"`
	F32   float32           `json:"f32"`
	F64   float64           `json:"f64"`
	Raw   []byte            `json:"raw"`
	Msg   json.RawMessage   `json:"msg"`
	Tags  []string          `json:"tags"`
	Attrs map[string]string `json:"attrs"`
	ByID  map[int64]*Base   `json:"by_id"`
	Key   map[[2]byte]bool  `json:"key"`
	Inner *record           `json:"inner"`
	Addr  netip.Addr        `json:"addr"`
	N     *big.Int          `json:"n"`
	D     time.Duration     `json:"d"`
}

type toArray struct {
	_ struct{} `cbor:",toarray"`
	A int
	B string
}

type keyed struct {
	A int    `cbor:"1,keyasint"`
	B string `cbor:"2,keyasint"`
}

func TestValuesComeBackDeeplyEqual(t *testing.T) {
	same(t, "int64 extremes", []int64{math.MinInt64, math.MaxInt64, 0, -1})
	same(t, "uint64 extremes", []uint64{0, math.MaxUint64, 1 << 63})
	same(t, "floats", []float64{math.Inf(1), math.Inf(-1), math.Copysign(0, -1), math.SmallestNonzeroFloat64, math.MaxFloat64, 0.1})
	same(t, "float32", []float32{math.MaxFloat32, 1.5, math.SmallestNonzeroFloat32})
	same(t, "invalid utf8", "a\xffb\xed\xa0\x80")
	same(t, "nil slice", []int(nil))
	same(t, "empty slice", []int{})
	same(t, "nil map", map[string]int(nil))
	same(t, "empty map", map[string]int{})
	same(t, "nil bytes", []byte(nil))
	same(t, "empty bytes", []byte{})
	same(t, "raw json kept byte for byte", json.RawMessage(`{ "a" : 1 }`))
	same(t, "toarray", toArray{A: 1, B: "b"})
	same(t, "keyasint", keyed{A: 1, B: "b"})
	same(t, "struct", record{
		Base: Base{ID: "7"}, Name: "n", Count: math.MinInt64, Big: math.MaxUint64, Small: -128,
		F32: 1.25, F64: -2.5e300, Raw: []byte{0, 1, 2}, Msg: json.RawMessage(`[1, 2]`), Tags: []string{},
		Attrs: map[string]string{"b": "2", "a": "1"}, ByID: map[int64]*Base{math.MinInt64: {ID: "x"}, 3: nil},
		Key: map[[2]byte]bool{{1, 2}: true}, Inner: &record{Name: "inner", Tags: []string{"x"}},
		Addr: netip.MustParseAddr("2001:db8::1"), N: new(big.Int).Lsh(big.NewInt(1), 100), D: time.Hour,
	})
}

// Values in an interface{} come back as CBOR's generic types, the same
// from every decode.
func TestInterfaceValuesComeBackAsGenericTypes(t *testing.T) {
	type holder struct{ V any }
	at := time.Date(2024, 5, 6, 7, 8, 9, 10, time.FixedZone("X", 5*3600+1800))
	got := roundTrip(t, "interface", holder{V: map[string]any{
		"neg": int64(-5), "pos": int64(5), "max": uint64(math.MaxUint64), "f": float32(1.5),
		"s": "x", "b": []byte("y"), "l": []int{1}, "st": Base{ID: "i"}, "t": at, "nil": nil,
	}})
	want := holder{V: map[string]any{
		"neg": int64(-5), "pos": uint64(5), "max": uint64(math.MaxUint64), "f": float64(1.5),
		"s": "x", "b": []byte("y"), "l": []any{uint64(1)}, "st": map[string]any{"id": "i"},
		"t": at.In(time.FixedZone("", 5*3600+1800)), "nil": nil,
	}}
	gt := got.V.(map[string]any)["t"].(time.Time)
	if !gt.Equal(at) || gt.Location().String() != "" {
		t.Errorf("a time in an interface came back as %v", gt)
	}
	delete(got.V.(map[string]any), "t")
	delete(want.V.(map[string]any), "t")
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v\nwant %#v", got, want)
	}
}

// A time keeps its instant and offset, loses its zone name and monotonic
// reading, and two decodes of it are ==.
func TestTimesKeepInstantAndOffset(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		ny = time.FixedZone("EST", -5*3600)
	}
	type event struct {
		At   time.Time
		Next *time.Time
		Log  map[string]time.Time
		List []time.Time
	}
	for _, tm := range []time.Time{
		time.Now(), time.Now().UTC(), time.Now().In(ny), time.Now().In(time.FixedZone("IST", 5*3600+1800)),
		time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.FixedZone("", -(23*3600+59*60))),
		time.Date(2024, 1, 1, 0, 0, 0, 0, time.FixedZone("", 0)),
	} {
		roundTrip(t, "a time alone", tm)
		got := roundTrip(t, "time", event{At: tm, Next: &tm, Log: map[string]time.Time{"a": tm}, List: []time.Time{tm}})
		_, off := tm.Zone()
		for _, g := range []time.Time{got.At, *got.Next, got.Log["a"], got.List[0]} {
			if _, goff := g.Zone(); !g.Equal(tm) || goff != off {
				t.Errorf("%v came back as %v", tm, g)
			}
			if off == 0 && g.Location() != time.UTC {
				t.Errorf("%v came back in %v, want UTC", tm, g.Location())
			}
		}
	}
	var zero *time.Time
	if got := roundTrip(t, "zero time behind a pointer", &time.Time{}); got != zero {
		t.Errorf("the zero time behind a pointer came back as %v, want nil (it is written as null)", got)
	}
}

// Marshal refuses what it cannot write faithfully, with an error that
// starts with the package name.
func TestMarshalRefusesWhatItCannotWrite(t *testing.T) {
	type node struct {
		Next *node
	}
	cyclic := &node{}
	cyclic.Next = cyclic
	deep := &node{}
	for range 2*cbor.MaxNestedLevels + 1 {
		deep = &node{Next: deep}
	}
	for name, v := range map[string]any{
		"NaN":            math.NaN(),
		"NaN in a slice": []any{1, math.NaN()},
		"offset seconds": time.Date(2024, 1, 1, 0, 0, 0, 0, time.FixedZone("LMT", 30)),
		"year 10000":     time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		"offset 24h":     time.Date(2024, 1, 1, 0, 0, 0, 0, time.FixedZone("", 24*3600)),
		"cycle":          cyclic,
		"too deep":       deep,
		"cycle in any":   map[string]any{"n": cyclic},
		"channel":        make(chan int),
		"complex":        complex(1, 2),
	} {
		if _, err := (cbor.Codec{}).Marshal(v); err == nil || !strings.HasPrefix(err.Error(), "cbor: ") {
			t.Errorf("%s: Marshal: %v; want an error starting with \"cbor: \"", name, err)
		}
	}
	shallow := &node{}
	for range cbor.MaxNestedLevels / 2 {
		shallow = &node{Next: shallow}
	}
	roundTrip(t, "nested within the limit", shallow)
}

// Unmarshal refuses bad bytes with an error that starts with the package
// name.
func TestUnmarshalRefusesBadBytes(t *testing.T) {
	var c cbor.Codec
	var v any
	for name, b := range map[string][]byte{
		"empty":           {},
		"truncated":       {0x82, 0x01},
		"trailing":        {0x01, 0x01},
		"duplicate key":   {0xa2, 0x61, 'a', 0x01, 0x61, 'a', 0x02},
		"indefinite":      {0x9f, 0x01, 0xff},
		"NaN":             {0xf9, 0x7e, 0x00},
		"too deep":        []byte(strings.Repeat("\x81", cbor.MaxNestedLevels+1) + "\x01"),
		"huge array head": {0x9b, 0, 0, 0, 1, 0, 0, 0, 0},
		"non-string key":  {0xa1, 0x01, 0x01},
	} {
		if err := c.Unmarshal(b, &v); err == nil || !strings.HasPrefix(err.Error(), "cbor: ") {
			t.Errorf("%s: Unmarshal: %v; want an error starting with \"cbor: \"", name, err)
		}
	}
	if err := c.Unmarshal([]byte{0x01}, nil); err == nil || !strings.HasPrefix(err.Error(), "cbor: ") {
		t.Errorf("Unmarshal into nil: %v", err)
	}
}
