package resource

import (
	"bytes"
	"testing"
)

// general canonicalizes data by the general path alone.
func general(data []byte) ([]byte, error) {
	s := getState(Limits{})
	defer putState(s)
	if err := s.canonical(data); err != nil {
		return nil, err
	}
	return append([]byte(nil), s.out...), nil
}

// flatSeeds are inputs on both sides of every line appendFlat draws.
var flatSeeds = []string{
	`{}`, ` { } `, `{"id": 7, "locale": "en-US"}`, `{"b":1,"a":2}`, `{"a":1,"a":2}`,
	`{"a":"caf\u00e9"}`, `{"a":"café"}`, "{\"a\":\"\xff\"}", `{"a":-0}`, `{"a":0}`, `{"a":01}`,
	`{"a":123456789012345}`, `{"a":1234567890123456}`, `{"a":1.5}`, `{"a":1e3}`, `{"a":-12}`,
	`{"a":true,"b":false,"c":null}`, `{"a":tru}`, `{"a":[1]}`, `{"a":{"b":1}}`, `{"a\n":1}`,
	`{"a":1,}`, `{"a":1} x`, `{"a" 1}`, `[1]`, `"x"`, `{"a":"\u0000"}`, "{\"a\":\"\x01\"}",
	`{"h":1,"g":2,"f":3,"e":4,"d":5,"c":6,"b":7,"a":8}`, `{"i":0,"h":1,"g":2,"f":3,"e":4,"d":5,"c":6,"b":7,"a":8}`,
	`{"z":1,"y":2,"z":3}`, "\t{\"a\" :\r\n1 }\n", `{"a":1`, `{"a":`, `{"a"`, `{`, ``,
}

// FuzzFlatMatchesGeneral checks that the flat fast path, wherever it takes
// an input, writes what the general canonicalizer writes, and that it
// refuses every input the general path rejects.
func FuzzFlatMatchesGeneral(f *testing.F) {
	for _, s := range flatSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pre := []byte("pre")
		got, ok := appendFlat(pre, data)
		want, err := general(data)
		if !ok {
			if !bytes.Equal(got, pre) {
				t.Fatalf("appendFlat(%q) refused the input but changed dst to %q", data, got)
			}
			return
		}
		if err != nil {
			t.Fatalf("appendFlat took %q, which the general path rejects: %v", data, err)
		}
		if !bytes.Equal(got[len(pre):], want) {
			t.Fatalf("appendFlat(%q) = %q; the general path writes %q", data, got[len(pre):], want)
		}
	})
}

// TestFlatTakesToolArguments checks that the inputs the fast path exists
// for take it, so that FuzzFlatMatchesGeneral compares something.
func TestFlatTakesToolArguments(t *testing.T) {
	for _, s := range []string{`{}`, `{"id": 7, "locale": "en-US"}`, `{"b":1,"a":2}`, `{"a":"café"}`,
		`{"a":true,"b":false,"c":null}`, `{"h":1,"g":2,"f":3,"e":4,"d":5,"c":6,"b":7,"a":8}`} {
		if _, ok := appendFlat(nil, []byte(s)); !ok {
			t.Errorf("appendFlat refused %q", s)
		}
	}
	for _, s := range []string{`{"a":1,"a":2}`, `{"a":-0}`, `{"a":1.5}`, `{"a":[1]}`, `{"a":"\u00e9"}`, "{\"a\":\"\xff\"}", `[1]`} {
		if _, ok := appendFlat(nil, []byte(s)); ok {
			t.Errorf("appendFlat took %q, which needs the general path", s)
		}
	}
}

// TestFlatDoesNotAllocate checks the fast path's promise.
func TestFlatDoesNotAllocate(t *testing.T) {
	in := []byte(`{"locale": "en-US", "id": 7}`)
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { appendFlat(buf, in) }); n != 0 {
		t.Fatalf("appendFlat allocated %v times per run", n)
	}
}
