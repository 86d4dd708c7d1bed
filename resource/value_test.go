package resource_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/agentcache/agentcache-go/resource"
)

// Argument types of the kind typed tools use, plus every encoding/json
// feature HashValue must reproduce.
type (
	smallArgs struct {
		UserID string
		Limit  int
		Tags   []string
	}

	basics struct {
		S   string
		I   int
		I8  int8
		I16 int16
		I32 int32
		I64 int64
		U   uint
		U8  uint8
		U16 uint16
		U32 uint32
		U64 uint64
		UP  uintptr
		F32 float32
		F64 float64
		B   bool
		PI  *int
		PS  *string
		PPS **string
	}

	tagged struct {
		A      string            `json:"a"`
		B      int               `json:"b,omitempty"`
		C      []string          `json:"c,omitempty"`
		D      map[string]int    `json:"d,omitzero"`
		E      *basics           `json:",omitempty"`
		Skip   int               `json:"-"`
		Dash   int               `json:"-,"`
		Quoted int64             `json:"q,string"`
		QBool  bool              `json:"qb,string"`
		QUint  uint16            `json:"qu,string,omitempty"`
		Weird  string            `json:"a-b.c$d% e"`
		BadTag int               `json:"a\"b"` // invalid: falls back to the field name
		Uni    string            `json:"ünï"`
		Zero   [2]int            `json:"z,omitzero"`
		Empty  struct{}          `json:"empty,omitempty"`
		Arr    [3]byte           `json:"arr"`
		Bytes  []byte            `json:"bytes"`
		BS     []byte            `json:"bs,omitempty"`
		Any    any               `json:"any"`
		AnyOE  any               `json:"anyoe,omitempty"`
		M      map[string]any    `json:"m"`
		MS     map[string]string `json:"ms"`
		MI     map[int]string    `json:"mi"`
		MU     map[uint8]bool    `json:"mu"`
		MK     map[keyString]int `json:"mk"`
		Nested [][]float64       `json:"nested"`
		PArr   *[2]string        `json:"parr"`
		Iface  fmt.Stringer      `json:"iface"`
		unexp  int
		unexp2 string
	}

	Inner struct {
		X int
		Y string `json:"y"`
	}
	inner2 struct {
		Z  bool
		ZZ int `json:"zz,omitempty"`
	}
	innerInt int
	Deeper   struct {
		Inner
		D float64
	}
	embeds struct {
		Inner
		*inner2
		innerInt
		Deeper `json:"deeper"`
		W      int
	}
	embedsPtr struct {
		*Inner
		W string
	}
	// Field names that collide: encoding/json resolves them by Go's
	// embedding rules; HashValue hands such structs to encoding/json.
	Other     struct{ X, Q int }
	conflicts struct {
		Inner
		Other
		Y int
	}
	conflictsTagged struct {
		Inner
		X string `json:"X"`
	}

	// Marshalers.
	valMarshaler struct{ V int }
	ptrMarshaler struct{ V int }
	valText      struct{ V string }
	ptrText      struct{ V string }
	keyText      int
	keyString    string
	withMarshal  struct {
		VM   valMarshaler
		PM   ptrMarshaler
		PPM  *ptrMarshaler
		VT   valText
		PT   ptrText
		T    time.Time
		TP   *time.Time
		Dur  time.Duration
		KT   map[keyText]int
		Num  json.Number
		Raw  json.RawMessage
		RawP *json.RawMessage
		Mar  json.Marshaler
		PMs  []ptrMarshaler
		PMm  map[string]ptrMarshaler
		Embt struct{ time.Time } // promotes MarshalJSON
	}

	// encoding/json's string option on strings and floats, and omitzero
	// with an IsZero method: HashValue hands these to encoding/json.
	quotedOdd struct {
		S  string   `json:"s,string"`
		F  float64  `json:"f,string"`
		PI *int     `json:"pi,string"`
		Z  zeroable `json:"z,omitzero"`
	}
	zeroable struct{ N int }
	zeroTime struct {
		T time.Time `json:",omitzero"`
		N int       `json:"n,omitzero"`
	}

	tree struct {
		Name string
		Kids []*tree          `json:",omitempty"`
		Meta map[string]any   `json:"meta,omitempty"`
		Up   *tree            `json:"-"`
		Refs map[string]*tree `json:"refs,omitempty"`
	}

	named    []int
	namedM   map[string]named
	floaty   struct{ A, B, C float64 }
	float32s struct{ A, B float32 }
)

func (m valMarshaler) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf(` { "v" : %d , "html" : "<&>", "n": 1.50 } `, m.V)), nil
}
func (m *ptrMarshaler) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf(`["ptr",%d]`, m.V)), nil
}
func (t valText) MarshalText() ([]byte, error)  { return []byte("text:" + t.V), nil }
func (t *ptrText) MarshalText() ([]byte, error) { return []byte("ptext:" + t.V), nil }
func (k keyText) MarshalText() ([]byte, error)  { return []byte("k" + strconv.Itoa(int(k))), nil }
func (k keyString) MarshalText() ([]byte, error) {
	return []byte("ignored for string keys"), nil
}
func (z zeroable) IsZero() bool   { return z.N < 10 }
func (i innerInt) String() string { return "x" }

// sampleTypes are the types the property test fills with random values.
var sampleTypes = []reflect.Type{
	reflect.TypeFor[smallArgs](),
	reflect.TypeFor[basics](),
	reflect.TypeFor[tagged](),
	reflect.TypeFor[embeds](),
	reflect.TypeFor[embedsPtr](),
	reflect.TypeFor[conflicts](),
	reflect.TypeFor[conflictsTagged](),
	reflect.TypeFor[withMarshal](),
	reflect.TypeFor[quotedOdd](),
	reflect.TypeFor[zeroTime](),
	reflect.TypeFor[tree](),
	reflect.TypeFor[named](),
	reflect.TypeFor[namedM](),
	reflect.TypeFor[floaty](),
	reflect.TypeFor[float32s](),
	reflect.TypeFor[map[string]any](),
	reflect.TypeFor[[]any](),
	reflect.TypeFor[map[int64]*basics](),
	reflect.TypeFor[map[string][]string](),
	reflect.TypeFor[[]map[string]int](),
	reflect.TypeFor[*smallArgs](),
	reflect.TypeFor[string](),
	reflect.TypeFor[float64](),
	reflect.TypeFor[any](),
}

// filler makes random values of any type, biased towards the values where
// encodings go wrong.
type filler struct{ r *rand.Rand }

var interestingFloats = []float64{
	0, math.Copysign(0, -1), 1, -1, 0.1, 1.5, 100, 1e20, 1e21, -1e21, 1e22,
	math.Nextafter(1e21, 0), math.Nextafter(1e21, 2e21),
	1e-6, 1e-7, -1e-7, math.Nextafter(1e-6, 0), math.Nextafter(1e-6, 1),
	123456789.125, 1.0 / 3, 2.0 / 3, math.MaxFloat64, -math.MaxFloat64,
	math.SmallestNonzeroFloat64, 5e-324, 9007199254740993, 1 << 53, 1e15, 1e16, 1e17,
	0.000001234, 12345678901234567890, math.Pi * 1e10,
}

var interestingStrings = []string{
	"", "a", "alice", "<script>&amp;</script>", "\u2028\u2029", "\xff", "a\xffb\xfe",
	"é", "e\u0301", "\"quoted\\", "\x00\x01\x1f\x7f", "\t\n\r\b\f", "😀", "\ufffd",
	"key:with{braces}", "/", "\u0085", strings.Repeat("x", 100),
}

func (f filler) float(bits int) float64 {
	var x float64
	switch f.r.IntN(4) {
	case 0:
		x = interestingFloats[f.r.IntN(len(interestingFloats))]
	case 1:
		x = f.r.NormFloat64() * math.Pow(10, float64(f.r.IntN(60)-30))
	case 2:
		x = math.Float64frombits(f.r.Uint64())
	default:
		x = float64(f.r.IntN(2000) - 1000)
	}
	if bits == 32 {
		x = float64(float32(x))
	}
	if math.IsInf(x, 0) || math.IsNaN(x) {
		return 0.5
	}
	return x
}

func (f filler) string() string {
	if f.r.IntN(2) == 0 {
		return interestingStrings[f.r.IntN(len(interestingStrings))]
	}
	b := make([]byte, f.r.IntN(12))
	for i := range b {
		b[i] = byte(f.r.IntN(256))
		if f.r.IntN(3) > 0 {
			b[i] = byte(' ' + f.r.IntN(95))
		}
	}
	return string(b)
}

func (f filler) int() int64 {
	switch f.r.IntN(4) {
	case 0:
		return []int64{0, 1, -1, math.MaxInt64, math.MinInt64, 1e15, -1e18}[f.r.IntN(7)]
	case 1:
		return int64(f.r.Uint64())
	default:
		return int64(f.r.IntN(200) - 100)
	}
}

// jsonish returns a random value of the kind json.Unmarshal produces, or
// sometimes a random value of a sample type.
func (f filler) jsonish(depth int) any {
	n := 8
	if depth <= 0 {
		n = 5
	}
	switch f.r.IntN(n) {
	case 0:
		return nil
	case 1:
		return f.float(64)
	case 2:
		return f.string()
	case 3:
		return f.r.IntN(2) == 0
	case 4:
		return json.Number([]string{"0", "-0", "1.0", "1e21", "12345678901234567891", "0.000001", "1E-7", "", "-12.50e+3"}[f.r.IntN(9)])
	case 5:
		a := make([]any, f.r.IntN(4))
		for i := range a {
			a[i] = f.jsonish(depth - 1)
		}
		return a
	case 6:
		m := map[string]any{}
		for range f.r.IntN(4) {
			m[f.string()] = f.jsonish(depth - 1)
		}
		return m
	default:
		t := sampleTypes[f.r.IntN(len(sampleTypes))]
		v := reflect.New(t)
		f.fill(v.Elem(), depth-1)
		if f.r.IntN(2) == 0 {
			return v.Interface() // a pointer
		}
		return v.Elem().Interface()
	}
}

var (
	timeType      = reflect.TypeFor[time.Time]()
	marshalerType = reflect.TypeFor[json.Marshaler]()
	stringerType  = reflect.TypeFor[fmt.Stringer]()
)

func (f filler) fill(v reflect.Value, depth int) {
	if !v.CanSet() {
		return
	}
	t := v.Type()
	switch {
	case t == timeType:
		v.Set(reflect.ValueOf(time.Unix(f.r.Int64N(4e9), f.r.Int64N(1e9)).UTC()))
		return
	case t == marshalerType:
		if f.r.IntN(3) > 0 {
			v.Set(reflect.ValueOf(valMarshaler{V: f.r.IntN(9)}))
		}
		return
	case t == stringerType:
		if f.r.IntN(2) == 0 {
			v.Set(reflect.ValueOf(innerInt(3)))
		}
		return
	case t == reflect.TypeFor[json.RawMessage]():
		raws := []string{"", `null`, ` {"b" : [1.0, "\u0041"], "a":null} `, `12345678901234567891`}
		if s := raws[f.r.IntN(len(raws))]; s != "" {
			v.SetBytes([]byte(s))
		}
		return
	case t == reflect.TypeFor[json.Number]():
		v.Set(reflect.ValueOf(f.jsonishNumber()))
		return
	}
	switch t.Kind() {
	case reflect.Bool:
		v.SetBool(f.r.IntN(2) == 0)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(f.int()) // truncated to the type's size
		if v.OverflowInt(f.int()) {
			v.SetInt(int64(int8(f.int())))
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		x := uint64(f.int())
		if v.OverflowUint(x) {
			x = uint64(uint8(x))
		}
		v.SetUint(x)
	case reflect.Float32:
		v.SetFloat(f.float(32))
	case reflect.Float64:
		v.SetFloat(f.float(64))
	case reflect.String:
		v.SetString(f.string())
	case reflect.Interface:
		if t.NumMethod() == 0 {
			if x := f.jsonish(depth); x != nil {
				v.Set(reflect.ValueOf(x))
			}
		}
	case reflect.Pointer:
		if depth > 0 && f.r.IntN(3) > 0 {
			p := reflect.New(t.Elem())
			f.fill(p.Elem(), depth-1)
			v.Set(p)
		}
	case reflect.Slice:
		switch f.r.IntN(4) {
		case 0: // nil
		case 1:
			v.Set(reflect.MakeSlice(t, 0, 0))
		default:
			n := f.r.IntN(4)
			if depth <= 0 {
				n = 0
			}
			s := reflect.MakeSlice(t, n, n)
			for i := range n {
				f.fill(s.Index(i), depth-1)
			}
			v.Set(s)
		}
	case reflect.Array:
		for i := range v.Len() {
			f.fill(v.Index(i), depth-1)
		}
	case reflect.Map:
		if f.r.IntN(4) == 0 {
			return // nil
		}
		m := reflect.MakeMap(t)
		n := f.r.IntN(4)
		if depth <= 0 {
			n = 0
		}
		for range n {
			k := reflect.New(t.Key()).Elem()
			f.fill(k, depth-1)
			e := reflect.New(t.Elem()).Elem()
			f.fill(e, depth-1)
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	case reflect.Struct:
		for i := range v.NumField() {
			if f.r.IntN(5) > 0 {
				f.fill(v.Field(i), depth-1)
			}
		}
	}
}

func (f filler) jsonishNumber() json.Number {
	return json.Number([]string{"0", "-0", "1.0", "1e21", "12345678901234567891", "0.000001", "1E-7", "", "-12.50e+3"}[f.r.IntN(9)])
}

// checkHashValue asserts HashValue(v) == HashJSON(json.Marshal(v)).
func checkHashValue(t *testing.T, v any) {
	t.Helper()
	b, merr := json.Marshal(v)
	got, gerr := resource.HashValue(v, resource.Limits{})
	if merr != nil {
		if gerr == nil {
			t.Fatalf("json.Marshal(%#v) failed (%v) but HashValue succeeded", v, merr)
		}
		return
	}
	// HashValue refuses strings that are not valid UTF-8, which
	// json.Marshal would silently repair (making different values share a
	// key). Types that marshal themselves are still hashed through
	// encoding/json, so a value with bad UTF-8 may also hash like it.
	if gerr != nil && errors.Is(gerr, resource.ErrInvalidJSON) && strings.Contains(gerr.Error(), "UTF-8") {
		if !hasInvalidUTF8(reflect.ValueOf(v), 0) {
			t.Fatalf("HashValue(%#v) refused valid UTF-8: %v", v, gerr)
		}
		return
	}
	want, werr := resource.HashJSON(b, resource.Limits{})
	if (werr == nil) != (gerr == nil) || got != want {
		canon, _ := resource.AppendCanonicalJSON(nil, b, resource.Limits{})
		t.Fatalf("HashValue(%#v) = %v, %v\nHashJSON(%s) = %v, %v\ncanonical: %s", v, got, gerr, b, want, werr, canon)
	}
	// A typed tool's ArgsEncoder encodes an addressable copy of the
	// arguments; it must still see them as json.Marshal sees the value.
	if v != nil {
		if args, aerr := resource.HashAsArgs(v); (aerr == nil) != (gerr == nil) || args != got {
			t.Fatalf("ArgsEncoder(%#v) = %v, %v; HashValue = %v, %v", v, args, aerr, got, gerr)
		}
	}
}

// The property test must exercise the reflection encoder, not only the
// encoding/json fallback.
func TestSampleTypesTakeTheFastPath(t *testing.T) {
	fallback := map[reflect.Type]bool{
		reflect.TypeFor[conflicts]():       true,
		reflect.TypeFor[conflictsTagged](): true,
		reflect.TypeFor[quotedOdd]():       true,
		reflect.TypeFor[zeroTime]():        true,
	}
	for _, typ := range sampleTypes {
		if got := resource.UsesEncodingJSON(typ); got != fallback[typ] {
			t.Errorf("%v: uses encoding/json = %v; want %v", typ, got, fallback[typ])
		}
	}
}

func TestHashValueMatchesJSON(t *testing.T) {
	n := 1500
	if testing.Short() || raceEnabled {
		n = 200
	}
	f := filler{rand.New(rand.NewPCG(1, 2))}
	for _, typ := range sampleTypes {
		t.Run(typ.String(), func(t *testing.T) {
			for range n {
				p := reflect.New(typ)
				f.fill(p.Elem(), 4)
				checkHashValue(t, p.Elem().Interface()) // not addressable
				checkHashValue(t, p.Interface())        // addressable through the pointer
			}
		})
	}
}

func TestHashValueCases(t *testing.T) {
	one := 1
	s := "s"
	ps := &s
	cyclic := &tree{Name: "loop"}
	cyclic.Kids = []*tree{cyclic}
	var selfAny any
	selfAny = &selfAny
	var long any = []any{"end"}
	for range 3000 { // a long, acyclic chain of pointers and interfaces
		prev := long
		long = &prev
	}
	type ptrChain struct{ P ****int }
	i1 := &one
	i2 := &i1
	i3 := &i2
	cases := []any{
		nil,
		smallArgs{},
		smallArgs{UserID: "u-1", Limit: 10, Tags: []string{"a", "<b>"}},
		&smallArgs{Tags: []string{}},
		basics{PI: &one, PS: ps, PPS: &ps, F32: 1e21, F64: 1e-7},
		basics{F64: math.Copysign(0, -1), F32: float32(math.Nextafter32(1e21, 0))},
		ptrChain{P: &i3},
		[]any{1, "x", nil, true, 1.5, map[string]any{"b": 1, "a": []any{}}},
		map[string]any{"\xff": 1, "\xfe": 2}, // keys collide once invalid UTF-8 is replaced: both fail
		map[string]int{"\xff": 1},
		map[keyString]int{"a": 1},
		map[keyText]int{1: 1, 2: 2},
		map[int]int{-1: 1, 10: 2, 2: 3},
		map[float64]int{1: 1},              // unsupported key type
		map[[2]int]int{},                   // unsupported even when empty
		struct{ C chan int }{},             // unsupported type
		struct{ F func() }{F: nil},         // unsupported even when nil
		struct{ P *chan int }{},            // a nil pointer to one is fine
		struct{ X complex128 }{},           // unsupported
		math.NaN(),                         // unsupported value
		[]float64{math.Inf(1)},             // unsupported value
		json.Number("1e2"),                 //
		json.Number("bad"),                 // invalid
		json.Number("1e1000000000"),        // out of range for HashJSON too
		json.RawMessage(`{"b":1,"a":2}`),   //
		json.RawMessage(`{"a":1,"a":2}`),   // duplicate: both fail
		json.RawMessage(nil),               //
		json.RawMessage(`{`),               // invalid
		withMarshal{},                      //
		&withMarshal{PPM: &ptrMarshaler{}}, //
		cyclic,                             // a cycle: json.Marshal fails, so must HashValue
		selfAny,                            //
		long,                               // deeper than 1000 pointers, but not a cycle
		[]byte(nil), []byte{}, []byte("hello"),
		[]named{nil, {}, {1}},
		struct {
			A int `json:"b"`
			B int `json:"a"`
		}{1, 2},
		struct{ embeds }{},
		struct {
			*Inner
			Q string
		}{},
		&struct{ Inner }{Inner{X: 5}},
		conflicts{Inner: Inner{X: 1}, Other: Other{X: 2, Q: 3}, Y: 4},
		quotedOdd{S: "<a>", F: 1e21, PI: &one, Z: zeroable{N: 5}},
		quotedOdd{Z: zeroable{N: 50}},
	}
	for i, v := range cases {
		t.Run(strconv.Itoa(i), func(t *testing.T) { checkHashValue(t, v) })
	}
}

// Values that differ only in ways JSON does not see hash the same, and
// values json.Marshal spells differently from canonical JSON match their
// canonical spelling.
func TestHashValueAgreesWithHandWrittenJSON(t *testing.T) {
	type args struct {
		City  string  `json:"city"`
		Days  int     `json:"days"`
		Units *string `json:"units,omitempty"`
		Temp  float64 `json:"temp"`
	}
	cases := []struct {
		v    any
		json string
	}{
		{args{City: "Paris", Days: 3, Temp: 1e21}, `{"temp":1E21,"days":3.0,"city":"Paris"}`},
		{args{City: "<&>", Temp: 0.000001}, `{"city":"\u003c\u0026\u003e","days":0,"temp":1e-6}`},
		{map[string]any{"b": []any{1.0, "x"}, "a": nil}, ` { "a" : null , "b" : [ 1 , "\u0078" ] } `},
		{map[int]bool{2: true, 10: false}, `{"10":false,"2":true}`},
	}
	for _, tc := range cases {
		got, err := resource.HashValue(tc.v, resource.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		want, err := resource.HashJSON([]byte(tc.json), resource.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("HashValue(%#v) != HashJSON(%s)", tc.v, tc.json)
		}
	}
}

func TestHashValueLimits(t *testing.T) {
	type node struct{ Next *node }
	n := &node{}
	for range 40 {
		n = &node{Next: n}
	}
	if _, err := resource.HashValue(n, resource.Limits{}); !errors.Is(err, resource.ErrTooDeep) {
		t.Errorf("41 nested structs: %v; want ErrTooDeep", err)
	}
	if _, err := resource.HashValue(n, resource.Limits{MaxDepth: 64}); err != nil {
		t.Errorf("41 nested structs with MaxDepth 64: %v", err)
	}
	big := smallArgs{UserID: strings.Repeat("x", 2<<20)}
	if _, err := resource.HashValue(big, resource.Limits{}); !errors.Is(err, resource.ErrTooLarge) {
		t.Errorf("2 MB string: %v; want ErrTooLarge", err)
	}
	// A deeply nested value behind a json.Marshaler is limited too.
	deep := json.RawMessage(strings.Repeat("[", 100) + strings.Repeat("]", 100))
	if _, err := resource.HashValue(struct{ R json.RawMessage }{deep}, resource.Limits{}); !errors.Is(err, resource.ErrTooDeep) {
		t.Errorf("deep RawMessage: %v; want ErrTooDeep", err)
	}
	if _, err := resource.HashValue(math.Inf(-1), resource.Limits{}); err == nil || !strings.HasPrefix(err.Error(), "resource: ") {
		t.Errorf("HashValue(-Inf) error = %v; want a resource: error", err)
	}
}

func TestHashValueConcurrent(t *testing.T) {
	// Plans are built on first use; race them.
	type fresh1 struct{ A, B []fresh1 }
	type fresh2 struct {
		X map[string]fresh1
		Y *fresh2
	}
	done := make(chan bool)
	for g := range 8 {
		go func() {
			defer func() { done <- true }()
			for i := range 200 {
				var v any = fresh2{X: map[string]fresh1{"k": {A: []fresh1{{}}}}, Y: &fresh2{}}
				if (g+i)%2 == 0 {
					v = []fresh1{{B: []fresh1{{}}}}
				}
				b, _ := json.Marshal(v)
				want, _ := resource.HashJSON(b, resource.Limits{})
				if got, err := resource.HashValue(v, resource.Limits{}); err != nil || got != want {
					t.Errorf("HashValue = %v, %v; want %v", got, err, want)
					return
				}
			}
		}()
	}
	for range 8 {
		<-done
	}
}

func TestHashValueDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	values := map[string]any{
		"small struct":  smallArgs{UserID: "user-42", Limit: 10, Tags: []string{"news", "<b>"}},
		"small pointer": &smallArgs{UserID: "user-42", Limit: 10, Tags: []string{"news"}},
		"medium":        mediumValue(),
		"map":           map[string]any{"user": "u", "limit": 10.0, "tags": []any{"a", "b"}},
	}
	for name, v := range values {
		resource.HashValue(v, resource.Limits{}) // build the plan, warm the pool
		if n := testing.AllocsPerRun(100, func() { _, _ = resource.HashValue(v, resource.Limits{}) }); n != 0 {
			t.Errorf("%s: HashValue allocates %v times per call; want 0", name, n)
		}
	}
}

// hasInvalidUTF8 reports whether a string that is not valid UTF-8 is
// reachable in v as encoding/json walks it (exported fields, map keys and
// values, elements, pointers and interfaces).
func hasInvalidUTF8(v reflect.Value, depth int) bool {
	if depth > 100 || !v.IsValid() {
		return false
	}
	switch v.Kind() {
	case reflect.String:
		return !utf8.ValidString(v.String())
	case reflect.Pointer, reflect.Interface:
		return !v.IsNil() && hasInvalidUTF8(v.Elem(), depth+1)
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			if hasInvalidUTF8(v.Index(i), depth+1) {
				return true
			}
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			if hasInvalidUTF8(it.Key(), depth+1) || hasInvalidUTF8(it.Value(), depth+1) {
				return true
			}
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() || v.Type().Field(i).Anonymous {
				if hasInvalidUTF8(v.Field(i), depth+1) {
					return true
				}
			}
		}
	}
	return false
}

func TestHashValueRefusesInvalidUTF8(t *testing.T) {
	for _, v := range []any{"id-\xff", map[string]int{"\xfe": 1}, []string{"ok", "\xc3"}, struct{ Q string }{"\xff"}} {
		if _, err := resource.HashValue(v, resource.Limits{}); !errors.Is(err, resource.ErrInvalidJSON) {
			t.Errorf("HashValue(%#v) = %v; want ErrInvalidJSON", v, err)
		}
	}
	a, _ := resource.HashValue("id-\u00e9", resource.Limits{})
	b, _ := resource.HashValue("id-\u00ea", resource.Limits{})
	if a == b {
		t.Fatal("distinct valid strings share a hash")
	}
}

func TestHashValueRefusesHugeMapsQuickly(t *testing.T) {
	m := make(map[string]int, 300_000)
	for i := range 300_000 {
		m[strconv.Itoa(i)] = i
	}
	start := time.Now()
	_, err := resource.HashValue(m, resource.Limits{MaxBytes: 1 << 20})
	if !errors.Is(err, resource.ErrTooLarge) {
		t.Fatalf("HashValue(300k-member map) = %v; want ErrTooLarge", err)
	}
	t.Logf("refused in %v", time.Since(start))
}

// binaryID is an ID whose text form is its raw bytes.
type binaryID []byte

func (b binaryID) MarshalText() ([]byte, error) { return b, nil }

// TestHashValueRefusesInvalidTextFromMarshalText: encoding/json replaces
// each byte of invalid UTF-8 that MarshalText returns with U+FFFD, so binary
// IDs that differ only in such bytes would share one key and one cached
// answer. HashValue refuses them, as it refuses invalid UTF-8 strings; valid
// text hashes as encoding/json encodes it.
func TestHashValueRefusesInvalidTextFromMarshalText(t *testing.T) {
	type args struct {
		ID binaryID `json:"id"`
	}
	for _, v := range []any{binaryID("\xff\x01"), binaryID("\xfe\x01"), args{ID: binaryID("a\xffb")}, &args{ID: binaryID("\xc0\x80")}} {
		if _, err := resource.HashValue(v, resource.Limits{}); !errors.Is(err, resource.ErrInvalidJSON) || !strings.Contains(err.Error(), "MarshalText") {
			t.Errorf("HashValue(%#v) = %v; want ErrInvalidJSON naming MarshalText", v, err)
		}
	}
	got, err := resource.HashValue(args{ID: binaryID("ok-42")}, resource.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want, err := resource.HashJSON([]byte(`{"id":"ok-42"}`), resource.Limits{})
	if err != nil || got != want {
		t.Fatalf("HashValue of valid text = %v (%v), want the hash of its JSON %v", got, err, want)
	}
}

func TestArgsEncoderDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	small := smallArgs{UserID: "user-42", Limit: 10, Tags: []string{"news", "<b>"}}
	medium := mediumValue()
	se, me := resource.NewArgsEncoder[smallArgs](), resource.NewArgsEncoder[mediumArgs]()
	buf := make([]byte, 0, 1024)
	for name, run := range map[string]func(){
		"small struct": func() { _, _ = se.Append(buf[:0], &small, resource.Limits{}) },
		"medium":       func() { _, _ = me.Append(buf[:0], &medium, resource.Limits{}) },
	} {
		run() // warm the pools
		if n := testing.AllocsPerRun(100, run); n != 0 {
			t.Errorf("%s: ArgsEncoder.Append allocates %v times per call; want 0", name, n)
		}
	}
	got, err := se.Append(nil, &small, resource.Limits{})
	want, werr := resource.HashValue(small, resource.Limits{})
	if err != nil || werr != nil || resource.HashCanonical(got) != want {
		t.Fatalf("ArgsEncoder.Append = %s, %v; its hash differs from HashValue's (%v)", got, err, werr)
	}
}

// flatArgs is a struct of direct fields only: ArgsEncoder writes it from
// the field offsets, without reflection.
type flatArgs struct {
	S    string `json:"s"`
	Name named8 `json:"name,omitempty"`
	I8   int8   `json:"i8,omitempty"`
	I16  int16
	I32  int32 `json:"a_i32"`
	I64  int64 `json:",omitzero"`
	I    int
	U8   uint8 `json:"u8,omitempty"`
	U16  uint16
	U32  uint32
	U64  uint64 `json:"z"`
	U    uint
	Up   uintptr
	B    bool `json:"b,omitempty"`
	B2   bool
	Str  myString `json:"str"`
}

type named8 string

type myString string

func TestArgsEncoderFlatMatchesHashValue(t *testing.T) {
	e := resource.NewArgsEncoder[flatArgs]()
	if !e.Flat() {
		t.Fatal("flatArgs is not encoded from its offsets")
	}
	f := filler{rand.New(rand.NewPCG(3, 4))}
	for i := range 2000 {
		var v flatArgs
		if i > 0 { // the zero value first: every omitempty field left out
			f.fill(reflect.ValueOf(&v).Elem(), 2)
		}
		got, err := e.Append([]byte("head"), &v, resource.Limits{})
		want, werr := resource.HashValue(v, resource.Limits{})
		if (err == nil) != (werr == nil) {
			t.Fatalf("%#v: Append error %v; HashValue error %v", v, err, werr)
		}
		if err != nil {
			if string(got) != "head" {
				t.Fatalf("Append failed but changed dst: %q", got)
			}
			continue
		}
		if !bytes.HasPrefix(got, []byte("head")) || resource.HashCanonical(got[4:]) != want {
			b, _ := json.Marshal(v)
			t.Fatalf("Append(%s) = %s; its hash is not HashValue's", b, got)
		}
	}
	long := flatArgs{S: strings.Repeat("x", 100)}
	if _, err := e.Append(nil, &long, resource.Limits{MaxBytes: 64}); !errors.Is(err, resource.ErrTooLarge) {
		t.Fatalf("a flat value over MaxBytes: %v; want ErrTooLarge", err)
	}
	bad := flatArgs{S: "\xff"}
	if _, err := e.Append(nil, &bad, resource.Limits{}); !errors.Is(err, resource.ErrInvalidJSON) {
		t.Fatalf("invalid UTF-8 in a flat value: %v; want ErrInvalidJSON", err)
	}
}

// A scalar argument (an ID) is written from its address, as HashValue
// encodes it.
func TestArgsEncoderScalarsMatchHashValue(t *testing.T) {
	check := func(t *testing.T, got []byte, err error, v any) {
		t.Helper()
		want, werr := resource.HashValue(v, resource.Limits{})
		if (err == nil) != (werr == nil) || err == nil && resource.HashCanonical(got) != want {
			t.Fatalf("%#v: Append = %s, %v; HashValue error %v", v, got, err, werr)
		}
	}
	for _, v := range []int{0, -1, 42, math.MaxInt64, math.MinInt64} {
		got, err := resource.NewArgsEncoder[int]().Append(nil, &v, resource.Limits{})
		check(t, got, err, v)
	}
	for _, v := range []uint8{0, 255} {
		got, err := resource.NewArgsEncoder[uint8]().Append(nil, &v, resource.Limits{})
		check(t, got, err, v)
	}
	for _, v := range []string{"", "user-42", "<&>\"\\\n", "é", "\xff"} {
		got, err := resource.NewArgsEncoder[string]().Append(nil, &v, resource.Limits{})
		check(t, got, err, v)
	}
	for _, v := range []myString{"", "x"} {
		got, err := resource.NewArgsEncoder[myString]().Append(nil, &v, resource.Limits{})
		check(t, got, err, v)
	}
	b := true
	got, err := resource.NewArgsEncoder[bool]().Append(nil, &b, resource.Limits{})
	check(t, got, err, b)
	long := strings.Repeat("x", 100)
	if _, err := resource.NewArgsEncoder[string]().Append(nil, &long, resource.Limits{MaxBytes: 50}); !errors.Is(err, resource.ErrTooLarge) {
		t.Fatalf("a string over MaxBytes: %v; want ErrTooLarge", err)
	}
}

// JSON text as arguments (json.RawMessage) is canonicalized as it is, and
// keyed as HashValue keys it: any spelling of one value gives one key, and
// text that is not one JSON value (empty or nil included) is refused.
func TestArgsEncoderRawMessageMatchesHashValue(t *testing.T) {
	e := resource.NewArgsEncoder[json.RawMessage]()
	for _, v := range []json.RawMessage{json.RawMessage(`{"b": 1, "a": [true, null]}`), json.RawMessage(`{"a":[true,null],"b":1.0}`),
		json.RawMessage(` "x" `), json.RawMessage(`12e1`), json.RawMessage(`{"\u0061":"é"}`)} {
		got, err := e.Append(nil, &v, resource.Limits{})
		want, werr := resource.HashValue(v, resource.Limits{})
		if err != nil || werr != nil || resource.HashCanonical(got) != want {
			t.Fatalf("%q: Append = %s, %v; HashValue = %v, %v", v, got, err, want, werr)
		}
	}
	for _, v := range []json.RawMessage{nil, {}, json.RawMessage(`{"a":1,"a":2}`), json.RawMessage(`{`), json.RawMessage(`1 2`)} {
		if got, err := e.Append([]byte("pre"), &v, resource.Limits{}); !errors.Is(err, resource.ErrInvalidJSON) || string(got) != "pre" {
			t.Fatalf("%q: Append = %q, %v; want dst unchanged and ErrInvalidJSON", v, got, err)
		}
	}
}
