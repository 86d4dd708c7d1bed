package resource

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// The reflection encoder handles ordinary argument types itself and leaves
// only the cases it cannot reproduce exactly to encoding/json. These pins
// keep the common cases on the fast path.
func TestPlanKinds(t *testing.T) {
	type small struct {
		UserID string
		Limit  int
		Tags   []string
	}
	type Inner struct{ A, B int }
	type embedded struct {
		Inner
		C int `json:"c,string"`
	}
	type Other struct{ A int }
	type conflict struct {
		Inner
		Other
	}
	type quotedString struct {
		S string `json:"s,string"`
	}
	type withTime struct{ T time.Time }
	type ptrM struct{ json.RawMessage }

	tests := []struct {
		t    reflect.Type
		want planKind
	}{
		{reflect.TypeFor[small](), kStruct},
		{reflect.TypeFor[*small](), kPtr},
		{reflect.TypeFor[embedded](), kStruct},
		{reflect.TypeFor[withTime](), kStruct}, // only the field is delegated
		{reflect.TypeFor[map[string]any](), kMap},
		{reflect.TypeFor[map[int]string](), kMap},
		{reflect.TypeFor[[]any](), kSlice},
		{reflect.TypeFor[[]byte](), kBytes},
		{reflect.TypeFor[[4]byte](), kArray},
		{reflect.TypeFor[json.Number](), kNumber},
		{reflect.TypeFor[json.RawMessage](), kRaw},
		{reflect.TypeFor[time.Duration](), kInt},
		{reflect.TypeFor[conflict](), kMarshal},
		{reflect.TypeFor[quotedString](), kMarshal},
		{reflect.TypeFor[ptrM](), kAddrMarshal}, // promoted MarshalJSON
		{reflect.TypeFor[time.Time](), kAddrMarshal},
		{reflect.TypeFor[*time.Time](), kMarshal},
		{reflect.TypeFor[map[float64]int](), kUnsupported},
		{reflect.TypeFor[chan int](), kUnsupported},
	}
	for _, tc := range tests {
		if got := planFor(tc.t).kind; got != tc.want {
			t.Errorf("plan for %v: kind %d; want %d", tc.t, got, tc.want)
		}
	}
	p := planFor(reflect.TypeFor[embedded]())
	var names []string
	for _, f := range p.fields {
		names = append(names, string(f.name))
	}
	if want := []string{`"A":`, `"B":`, `"c":`}; !reflect.DeepEqual(names, want) {
		t.Errorf("embedded fields %q; want %q", names, want)
	}
}
