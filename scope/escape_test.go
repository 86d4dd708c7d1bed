package scope_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/agentcache/agentcache-go/scope"
)

func TestAppendEscaped(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"alice", "alice"},
		{"AZaz09._~@+=-", "AZaz09._~@+=-"},
		{"a:b", "a%3Ab"},
		{"{tag}", "%7Btag%7D"},
		{"100%", "100%25"},
		{"a b", "a%20b"},
		{"a|b/c", "a%7Cb%2Fc"},
		{"\x00\xff", "%00%FF"},
		{"é", "%C3%A9"},
		{"%3A", "%253A"}, // an ID that looks escaped stays distinct from ":"
	}
	for _, tc := range tests {
		if got := string(scope.AppendEscaped(nil, tc.in)); got != tc.want {
			t.Errorf("AppendEscaped(%q) = %q; want %q", tc.in, got, tc.want)
		}
		if got, err := scope.Unescape(tc.want); err != nil || got != tc.in {
			t.Errorf("Unescape(%q) = %q, %v; want %q", tc.want, got, err, tc.in)
		}
	}
	// It appends.
	if got := string(scope.AppendEscaped([]byte("k:"), "a:b")); got != "k:a%3Ab" {
		t.Errorf("AppendEscaped appends wrongly: %q", got)
	}
}

// Every string of up to 3 bytes over an alphabet rich in troublemakers
// escapes to a distinct output that unescapes back.
func TestEscapeInjective(t *testing.T) {
	alphabet := []string{"a", "A", "%", "2", "5", ":", "{", "\xff", "\x00", " "}
	seen := map[string]string{}
	var gen func(prefix string, n int)
	gen = func(prefix string, n int) {
		out := string(scope.AppendEscaped(nil, prefix))
		if prev, ok := seen[out]; ok && prev != prefix {
			t.Fatalf("AppendEscaped(%q) == AppendEscaped(%q) == %q", prev, prefix, out)
		}
		seen[out] = prefix
		if back, err := scope.Unescape(out); err != nil || back != prefix {
			t.Fatalf("Unescape(%q) = %q, %v; want %q", out, back, err, prefix)
		}
		if n == 0 {
			return
		}
		for _, c := range alphabet {
			gen(prefix+c, n-1)
		}
	}
	gen("", 3)
}

func TestUnescapeRejects(t *testing.T) {
	for _, s := range []string{
		"a:b",   // reserved byte left raw
		"a b",   // space left raw
		"é",     // non-ASCII left raw
		"%",     // truncated
		"%4",    // truncated
		"ab%4",  // truncated at the end
		"%3a",   // lower-case hex
		"%G0",   // not hex
		"%41",   // 'A' must not be escaped
		"%2D",   // '-' must not be escaped
		"%%25",  // bare '%'
		"a%20%", // trailing '%'
	} {
		if got, err := scope.Unescape(s); err == nil {
			t.Errorf("Unescape(%q) = %q, nil; want an error", s, got)
		} else if !strings.HasPrefix(err.Error(), "scope: ") {
			t.Errorf("Unescape(%q) error %q does not start with scope:", s, err)
		}
	}
}

func TestAppendEscapedDoesNotAllocate(t *testing.T) {
	id := "tenant:42/user {7}é%"
	buf := make([]byte, 0, 3*len(id))
	if n := testing.AllocsPerRun(100, func() { buf = scope.AppendEscaped(buf[:0], id) }); n != 0 {
		t.Errorf("AppendEscaped allocates %v times with room in dst", n)
	}
}

func FuzzEscape(f *testing.F) {
	for _, s := range []string{"", "alice", "a:b{c}%d e", "\x00\xff", "é🙂", "%41", "%%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, x string) {
		out := scope.AppendEscaped(nil, x)
		if i := bytes.IndexAny(out, ":{} |/\"\\"); i >= 0 {
			t.Fatalf("AppendEscaped(%q) = %q has %q at %d", x, out, out[i], i)
		}
		for i := 0; i < len(out); i++ {
			c := out[i]
			if c >= 0x80 || c < 0x21 {
				t.Fatalf("AppendEscaped(%q) = %q has byte %#x", x, out, c)
			}
			if c == '%' { // every '%' starts an escape of two upper-case hex digits
				if i+2 >= len(out) || !isUpperHex(out[i+1]) || !isUpperHex(out[i+2]) {
					t.Fatalf("AppendEscaped(%q) = %q has a bare %% at %d", x, out, i)
				}
				i += 2
			}
		}
		back, err := scope.Unescape(string(out))
		if err != nil || back != x {
			t.Fatalf("Unescape(AppendEscaped(%q)) = %q, %v", x, back, err)
		}
		// Unescape accepts only AppendEscaped's outputs, so the two are a
		// bijection between strings and well-formed escaped strings.
		if y, err := scope.Unescape(x); err == nil {
			if again := string(scope.AppendEscaped(nil, y)); again != x {
				t.Fatalf("Unescape(%q) = %q, which escapes to %q", x, y, again)
			}
		}
	})
}

func isUpperHex(c byte) bool { return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' }
