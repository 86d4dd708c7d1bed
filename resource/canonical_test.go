package resource_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/agentcache/agentcache-go/resource"
)

func canon(t *testing.T, in string) (string, error) {
	t.Helper()
	out, err := resource.AppendCanonicalJSON(nil, []byte(in), resource.Limits{})
	return string(out), err
}

func TestCanonicalForm(t *testing.T) {
	tests := []struct{ in, want string }{
		// Scalars at the top level.
		{`null`, `null`},
		{` true `, `true`},
		{"\t\r\nfalse\n", `false`},
		{`"x"`, `"x"`},
		{`0`, `0`},

		// Objects: sorted by unescaped key bytes, no white space.
		{`{}`, `{}`},
		{`{ }`, `{}`},
		{`{"b":1,"a":2}`, `{"a":2,"b":1}`},
		{`{"a":1,"A":2,"_":3,"0":4}`, `{"0":4,"A":2,"_":3,"a":1}`},
		{`{"ab":1,"a":2,"a!":3,"a ":4}`, `{"a":2,"a ":4,"a!":3,"ab":1}`},  // a prefix sorts first
		{`{"é":1,"z":2,"\u00e9\u0301":3}`, `{"z":2,"é":1,"é́":3}`},        // UTF-8 bytes, no normalization
		{`{"\ud83d\ude00":1,"\uffff":2}`, `{"` + "\uffff" + `":2,"😀":1}`}, // bytes, not UTF-16 order
		{`{"b":{"d":[3,{"f":1,"e":2}],"c":null},"a":[]}`, `{"a":[],"b":{"c":null,"d":[3,{"e":2,"f":1}]}}`},
		{`{"\"":1,"\\":2,"\n":3}`, `{"\n":3,"\"":1,"\\":2}`},

		// Arrays keep their order.
		{`[ 3 , 1 , 2 ]`, `[3,1,2]`},
		{`[[],[[]],{}]`, `[[],[[]],{}]`},

		// Strings: unescaped, then minimally escaped.
		{`"\u0041\u0062"`, `"Ab"`},
		{`"\u003c\u003e\u0026"`, `"<>&"`},
		{`"\/"`, `"/"`},
		{`"\"\\"`, `"\"\\"`},
		{`"\b\f\n\r\t"`, `"\b\f\n\r\t"`},
		{`"\u0008\u000C\u000a\u000D\u0009"`, `"\b\f\n\r\t"`},
		{`"\u0000\u001F\u007f"`, `"\u0000\u001f` + "\x7f" + `"`},
		{`"\u2028\u2029"`, "\"\u2028\u2029\""},
		{`"\uD83D\uDE00"`, `"😀"`},
		{`"\ud83d\ude00"`, `"😀"`},
		{`"😀"`, `"😀"`},
		{`"\uFFFD"`, "\"\uFFFD\""},

		// Numbers: exact decimals.
		{`1`, `1`},
		{`1.0`, `1`},
		{`1e0`, `1`},
		{`10E-1`, `1`},
		{`0.1e1`, `1`},
		{`100e-2`, `1`},
		{`-0`, `0`},
		{`-0.0e-5`, `0`},
		{`0e999999999999999999999`, `0`},
		{`-1`, `-1`},
		{`1.50`, `1.5`},
		{`123.4500`, `123.45`},
		{`1e2`, `100`},
		{`1E+2`, `100`},
		{`0.00001`, `0.00001`},
		{`1e-6`, `0.000001`},
		{`1e-7`, `1e-7`},
		{`0.0000001`, `1e-7`},
		{`1.5e-7`, `1.5e-7`},
		{`-1.5e-7`, `-1.5e-7`},
		{`1e20`, `100000000000000000000`},
		{`1e21`, `1e+21`},
		{`123456789012345678901`, `123456789012345678901`},
		{`1234567890123456789012`, `1.234567890123456789012e+21`},
		{`12345678901234567891`, `12345678901234567891`},
		{`3.14159265358979323846264338327950288`, `3.14159265358979323846264338327950288`},
		{`0.1`, `0.1`},
		{`1e400`, `1e+400`},
		{`-1e-400`, `-1e-400`},
		{`1e999999999`, `1e+999999999`},
		{`1e-999999999`, `1e-999999999`},
		{`10e999999998`, `1e+999999999`},
		{`0.001e1000000002`, `1e+999999999`},
		{`1e00000000000000000000000000001`, `10`},
		{`[1,-1,0.5,-0.5]`, `[1,-1,0.5,-0.5]`},
	}
	for _, tc := range tests {
		got, err := canon(t, tc.in)
		if err != nil || got != tc.want {
			t.Errorf("canonical(%s) = %s, %v; want %s", tc.in, got, err, tc.want)
			continue
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("canonical(%s) = %s is not valid JSON", tc.in, got)
		}
		// The canonical form is a fixed point.
		if again, err := canon(t, got); err != nil || again != got {
			t.Errorf("canonical(%s) = %s, %v; want it unchanged", got, again, err)
		}
	}
}

// Spellings that must give one key.
func TestCanonicalInvariance(t *testing.T) {
	groups := [][]string{
		{
			`{"user":"alice","limit":10,"tags":["a","b"],"filter":{"from":"2024-01-01","to":null}}`,
			`{"tags":["a","b"],"filter":{"to":null,"from":"2024-01-01"},"limit":10,"user":"alice"}`,
			"{\n  \"limit\": 1e1,\n  \"user\": \"\\u0061lice\",\n  \"filter\": { \"to\" : null , \"from\" : \"2024\\u002d01\\u002D01\" },\n  \"tags\": [ \"a\" , \"\\u0062\" ]\n}\n",
			`{"filter":{"from":"2024-01-01","to":null},"limit":10.000,"tags":["\u0061","b"],"user":"alice"}`,
			`{"filter":{"from":"2024\/01\/01","to":null}}`[:0] + `{"limit":100E-1,"user":"alice","tags":["a","b"],"filter":{"from":"2024-01-01","to":null}}`,
		},
		{`"<a href=\"x\">&amp;</a>"`, `"\u003ca href=\"x\"\u003e\u0026amp;\u003c/a\u003e"`, `"\u003Ca href=\u0022x\u0022>&amp;<\/a>"`},
		{`[1, 1.0, 1e0, 10E-1, 0.1e+1, 100e-2]`, `[1,1,1,1,1,1]`},
		{`-0`, `0`, `0.0`, `-0e10`, `0E-10`},
		{`0.000001`, `1e-6`, `1E-6`, `10e-7`, `0.0000010`},
		{`1e21`, `1000000000000000000000`, `1.0e21`, `0.1e22`},
	}
	for _, g := range groups {
		want, err := canon(t, g[0])
		if err != nil {
			t.Fatalf("canonical(%s): %v", g[0], err)
		}
		h0, _ := resource.HashJSON([]byte(g[0]), resource.Limits{})
		for _, in := range g[1:] {
			got, err := canon(t, in)
			if err != nil || got != want {
				t.Errorf("canonical(%s) = %s, %v; want %s", in, got, err, want)
			}
			if h, _ := resource.HashJSON([]byte(in), resource.Limits{}); h != h0 {
				t.Errorf("HashJSON(%s) = %v; want %v", in, h, h0)
			}
		}
	}
}

// Different values never share a canonical form (and so a key).
func TestCanonicalDistinct(t *testing.T) {
	values := []string{
		`12345678901234567891`, `12345678901234567892`,
		`9007199254740993`, `9007199254740992`, // equal as float64
		`0.1`, `0.10000000000000001`, // equal as float64
		`1e400`, `1e401`, `-1e400`,
		`1`, `"1"`, `true`, `"true"`, `null`, `"null"`, `[]`, `{}`, `[1]`, `[[1]]`,
		`{"a":1}`, `{"a":"1"}`, `{"a":[1]}`, `{"a ":1}`, `{"A":1}`, `{"a":1,"b":null}`,
		`"a"`, `"a "`, `"A"`, `"\u0000"`, `""`, `"\\u0000"`,
		`"é"`, `"e\u0301"`, // NFC and NFD differ: no Unicode normalization
		`[1,2]`, `[2,1]`,
	}
	seen := map[string]string{}
	for _, in := range values {
		got, err := canon(t, in)
		if err != nil {
			t.Fatalf("canonical(%s): %v", in, err)
		}
		if prev, dup := seen[got]; dup {
			t.Errorf("%s and %s have the same canonical form %s", prev, in, got)
		}
		seen[got] = in
	}
	a, _ := resource.HashJSON([]byte(`{"id":12345678901234567891}`), resource.Limits{})
	b, _ := resource.HashJSON([]byte(`{"id":12345678901234567892}`), resource.Limits{})
	if a == b {
		t.Error("two big integers that round to the same float64 hash the same")
	}
}

func TestCanonicalInvalid(t *testing.T) {
	tests := []struct {
		in   string
		want error
	}{
		{``, resource.ErrInvalidJSON},
		{` `, resource.ErrInvalidJSON},
		{`{`, resource.ErrInvalidJSON},
		{`{"a"}`, resource.ErrInvalidJSON},
		{`{"a":}`, resource.ErrInvalidJSON},
		{`{"a":1,}`, resource.ErrInvalidJSON},
		{`{a:1}`, resource.ErrInvalidJSON},
		{`{'a':1}`, resource.ErrInvalidJSON},
		{`[1,]`, resource.ErrInvalidJSON},
		{`[1 2]`, resource.ErrInvalidJSON},
		{`[`, resource.ErrInvalidJSON},
		{`]`, resource.ErrInvalidJSON},
		{`1 2`, resource.ErrInvalidJSON},
		{`{}x`, resource.ErrInvalidJSON},
		{`nul`, resource.ErrInvalidJSON},
		{`True`, resource.ErrInvalidJSON},
		{`NaN`, resource.ErrInvalidJSON},
		{`Infinity`, resource.ErrInvalidJSON},
		{`+1`, resource.ErrInvalidJSON},
		{`01`, resource.ErrInvalidJSON},
		{`-`, resource.ErrInvalidJSON},
		{`1.`, resource.ErrInvalidJSON},
		{`.5`, resource.ErrInvalidJSON},
		{`1e`, resource.ErrInvalidJSON},
		{`1e+`, resource.ErrInvalidJSON},
		{`0x10`, resource.ErrInvalidJSON},
		{`"abc`, resource.ErrInvalidJSON},
		{`"a` + "\n" + `b"`, resource.ErrInvalidJSON},
		{`"\x"`, resource.ErrInvalidJSON},
		{`"\u12"`, resource.ErrInvalidJSON},
		{`"\u12G4"`, resource.ErrInvalidJSON},
		{`"\`, resource.ErrInvalidJSON},
		{"\ufeff{}", resource.ErrInvalidJSON}, // byte order mark
		{`// c` + "\n1", resource.ErrInvalidJSON},
		// Duplicate keys, also when they differ only in spelling.
		{`{"a":1,"a":2}`, resource.ErrInvalidJSON},
		{`{"a":1,"b":2,"a":1}`, resource.ErrInvalidJSON},
		{`{"a":1,"\u0061":2}`, resource.ErrInvalidJSON},
		{`{"b":1,"a":{"x":1,"x":1}}`, resource.ErrInvalidJSON},
		// Invalid UTF-8, raw and through escapes.
		{"\"\xff\"", resource.ErrInvalidJSON},
		{"\"a\xc3\"", resource.ErrInvalidJSON},
		{"\"\xed\xa0\x80\"", resource.ErrInvalidJSON}, // encoded surrogate
		{"\"\xc0\xaf\"", resource.ErrInvalidJSON},     // overlong
		{"{\"\xff\":1}", resource.ErrInvalidJSON},
		{`"\ud800"`, resource.ErrInvalidJSON},
		{`"\udc00"`, resource.ErrInvalidJSON},
		{`"\ud800x"`, resource.ErrInvalidJSON},
		{`"\ud800\u0041"`, resource.ErrInvalidJSON},
		{`"\ude00\ud83d"`, resource.ErrInvalidJSON},
		{`"\ud83d\ud83d"`, resource.ErrInvalidJSON},
		{`{"\ud800":1}`, resource.ErrInvalidJSON},
		// Exponents out of range.
		{`1e1000000000`, resource.ErrTooLarge},
		{`-1e-1000000000`, resource.ErrTooLarge},
		{`1e99999999999999999999999999999`, resource.ErrTooLarge},
		{`0.1e1000000001`, resource.ErrTooLarge},
	}
	for _, tc := range tests {
		dst := []byte("prefix")
		out, err := resource.AppendCanonicalJSON(dst, []byte(tc.in), resource.Limits{})
		if !errors.Is(err, tc.want) {
			t.Errorf("canonical(%q) error = %v; want %v", tc.in, err, tc.want)
			continue
		}
		if !strings.HasPrefix(err.Error(), "resource: ") {
			t.Errorf("canonical(%q) error %q does not start with resource:", tc.in, err)
		}
		if string(out) != "prefix" {
			t.Errorf("canonical(%q) returned %q with its error; want dst unchanged", tc.in, out)
		}
		if _, herr := resource.HashJSON([]byte(tc.in), resource.Limits{}); !errors.Is(herr, tc.want) {
			t.Errorf("HashJSON(%q) error = %v; want %v", tc.in, herr, tc.want)
		}
	}
}

// Errors must not repeat argument content: it may be personal data.
func TestCanonicalErrorsDoNotQuoteInput(t *testing.T) {
	for _, in := range []string{`{"secret":1,"secret":2}`, `{"secret":"\ud800"}`, `["secret",]`} {
		_, err := canon(t, in)
		if err == nil || strings.Contains(err.Error(), "secret") {
			t.Errorf("canonical(%s) error = %v", in, err)
		}
	}
}

func TestAppendCanonicalJSONAppends(t *testing.T) {
	out, err := resource.AppendCanonicalJSON([]byte("k:"), []byte(`{"b":1,"a":2}`), resource.Limits{})
	if err != nil || string(out) != `k:{"a":2,"b":1}` {
		t.Errorf("got %q, %v", out, err)
	}
}

func TestLimits(t *testing.T) {
	deep := func(n int) []byte { return bytes.Repeat([]byte("["), n) }
	nested := func(n int) []byte {
		return append(bytes.Repeat([]byte("["), n), bytes.Repeat([]byte("]"), n)...)
	}

	t.Run("default depth", func(t *testing.T) {
		if _, err := resource.HashJSON(nested(resource.DefaultMaxDepth), resource.Limits{}); err != nil {
			t.Errorf("depth %d: %v", resource.DefaultMaxDepth, err)
		}
		if _, err := resource.HashJSON(nested(resource.DefaultMaxDepth+1), resource.Limits{}); !errors.Is(err, resource.ErrTooDeep) {
			t.Errorf("depth %d: %v; want ErrTooDeep", resource.DefaultMaxDepth+1, err)
		}
		obj := strings.Repeat(`{"a":`, 33) + "1" + strings.Repeat("}", 33)
		if _, err := resource.HashJSON([]byte(obj), resource.Limits{}); !errors.Is(err, resource.ErrTooDeep) {
			t.Errorf("33 nested objects: %v; want ErrTooDeep", err)
		}
	})
	t.Run("custom depth", func(t *testing.T) {
		lim := resource.Limits{MaxDepth: 2}
		if _, err := resource.HashJSON([]byte(`[{"a":[]}]`), lim); !errors.Is(err, resource.ErrTooDeep) {
			t.Errorf("got %v; want ErrTooDeep", err)
		}
		if _, err := resource.HashJSON([]byte(`[{"a":1}]`), lim); err != nil {
			t.Errorf("got %v", err)
		}
		lim = resource.Limits{MaxDepth: 1 << 30} // capped
		if _, err := resource.HashJSON(nested(resource.MaxDepthCap+1), lim); !errors.Is(err, resource.ErrTooDeep) {
			t.Errorf("above MaxDepthCap: %v; want ErrTooDeep", err)
		}
		if _, err := resource.HashJSON(nested(resource.MaxDepthCap), lim); err != nil {
			t.Errorf("at MaxDepthCap: %v", err)
		}
	})
	t.Run("a million brackets", func(t *testing.T) {
		in := deep(1_000_000)
		_, err := resource.HashJSON(in, resource.Limits{})
		if !errors.Is(err, resource.ErrTooDeep) {
			t.Fatalf("got %v; want ErrTooDeep", err)
		}
		// Even with the highest limit the parser stops at the cap.
		_, err = resource.HashJSON(in, resource.Limits{MaxDepth: 1 << 30, MaxBytes: 1 << 30})
		if !errors.Is(err, resource.ErrTooDeep) {
			t.Fatalf("got %v; want ErrTooDeep", err)
		}
	})
	t.Run("size", func(t *testing.T) {
		big := make([]byte, 10<<20) // 10 MB of a valid string
		big[0], big[len(big)-1] = '"', '"'
		for i := 1; i < len(big)-1; i++ {
			big[i] = 'a'
		}
		if _, err := resource.HashJSON(big, resource.Limits{}); !errors.Is(err, resource.ErrTooLarge) {
			t.Errorf("10 MB: %v; want ErrTooLarge", err)
		}
		// The size is checked before parsing: 10 MB that are not JSON at
		// all are refused for their size, not for their syntax.
		junk := bytes.Repeat([]byte{'}'}, 10<<20)
		if _, err := resource.HashJSON(junk, resource.Limits{}); !errors.Is(err, resource.ErrTooLarge) {
			t.Errorf("10 MB of junk: %v; want ErrTooLarge, found before any parsing", err)
		}
		if _, err := resource.HashJSON(big, resource.Limits{MaxBytes: 11 << 20}); err != nil {
			t.Errorf("10 MB with an 11 MB limit: %v", err)
		}
		exact := []byte(`"` + strings.Repeat("a", resource.DefaultMaxBytes-2) + `"`)
		if _, err := resource.HashJSON(exact, resource.Limits{}); err != nil {
			t.Errorf("exactly 1 MiB: %v", err)
		}
		if _, err := resource.HashJSON([]byte(`[1, 2]`), resource.Limits{MaxBytes: 5}); !errors.Is(err, resource.ErrTooLarge) {
			t.Errorf("6 bytes with a 5-byte limit: %v; want ErrTooLarge", err)
		}
	})
	t.Run("huge exponent", func(t *testing.T) {
		if _, err := resource.HashJSON([]byte(`[1e999999999,-1.5e-999999999]`), resource.Limits{}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestHashString(t *testing.T) {
	h, err := resource.HashJSON([]byte(`{"b":1,"a":2}`), resource.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	s := h.String()
	if len(s) != resource.HashTextLen || strings.ContainsAny(s, "+/=:{} ") {
		t.Errorf("String() = %q; want 22 base64url characters", s)
	}
	if got := string(h.AppendTo([]byte("k:"))); got != "k:"+s {
		t.Errorf("AppendTo = %q", got)
	}
	var zero resource.Hash
	if zero.String() != "AAAAAAAAAAAAAAAAAAAAAA" {
		t.Errorf("zero Hash = %q", zero.String())
	}
}

func TestHashJSONDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	in := []byte(`{"user_id":"u-42","query":"weather in <Paris>","limit":10,"tags":["a","b"],"filter":{"to":null,"from":1.50}}`)
	resource.HashJSON(in, resource.Limits{}) // warm the pool
	if n := testing.AllocsPerRun(100, func() { _, _ = resource.HashJSON(in, resource.Limits{}) }); n != 0 {
		t.Errorf("HashJSON allocates %v times per call; want 0", n)
	}
	dst := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { _, _ = resource.AppendCanonicalJSON(dst[:0], in, resource.Limits{}) }); n != 0 {
		t.Errorf("AppendCanonicalJSON allocates %v times per call with room in dst; want 0", n)
	}
	// Numbers are canonicalised as text: a huge exponent costs no
	// arbitrary-precision arithmetic.
	huge := []byte(`[1e999999999,-1.5e-999999999]`)
	if n := testing.AllocsPerRun(100, func() { _, _ = resource.HashJSON(huge, resource.Limits{}) }); n != 0 {
		t.Errorf("HashJSON of huge exponents allocates %v times per call; want 0", n)
	}
}

// The Hash is the first 16 bytes of the SHA-256 of the canonical form.
func TestHashDefinition(t *testing.T) {
	in := []byte(` {"b" : [1.0, "\u0041"], "a" : null} `)
	h, err := resource.HashJSON(in, resource.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(`{"a":null,"b":[1,"A"]}`))
	if !bytes.Equal(h[:], sum[:16]) {
		t.Errorf("HashJSON = %x; want %x", h, sum[:16])
	}
}
