package resource_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/agentcache/agentcache-go/resource"
)

// jv is a JSON value model for the spelling property test. A number is
// ±digits × 10^exp with digits free of leading and trailing zeros ("" for
// zero).
type jv struct {
	kind   byte // 'n' null, 't' true, 'f' false, 's' string, 'd' number, 'a' array, 'o' object
	s      string
	neg    bool
	exp    int
	elems  []jv
	keys   []string // distinct
	values []jv
}

var spellingRunes = []rune{'a', 'b', 'Z', '0', ' ', '"', '\\', '/', '<', '&', 0, 0x1f, '\b', '\n', 0x7f,
	'é', 0x2028, 0xfffd, 0xffff, '😀', 0x10ffff, '中'}

func genValue(r *rand.Rand, depth int) jv {
	n := 7
	if depth <= 0 {
		n = 5
	}
	switch r.IntN(n) {
	case 0:
		return jv{kind: "ntf"[r.IntN(3)]}
	case 1, 2:
		var b strings.Builder
		for range r.IntN(6) {
			b.WriteRune(spellingRunes[r.IntN(len(spellingRunes))])
		}
		return jv{kind: 's', s: b.String()}
	case 3, 4:
		v := jv{kind: 'd', neg: r.IntN(2) == 0}
		if r.IntN(8) == 0 {
			return v // zero
		}
		d := []byte{byte('1' + r.IntN(9))}
		for range r.IntN(25) {
			d = append(d, byte('0'+r.IntN(10)))
		}
		for d[len(d)-1] == '0' {
			d = d[:len(d)-1]
		}
		v.s = string(d)
		v.exp = r.IntN(60) - 30
		if r.IntN(10) == 0 {
			v.exp = r.IntN(2*resource.MaxExponent) - resource.MaxExponent - len(d) + 1 + r.IntN(len(d))
			v.exp = max(min(v.exp, resource.MaxExponent-len(d)+1), -resource.MaxExponent)
		}
		return v
	case 5:
		v := jv{kind: 'a'}
		for range r.IntN(4) {
			v.elems = append(v.elems, genValue(r, depth-1))
		}
		return v
	default:
		v := jv{kind: 'o'}
		seen := map[string]bool{}
		for range r.IntN(5) {
			k := genValue(r, 0)
			if k.kind != 's' || seen[k.s] {
				continue
			}
			seen[k.s] = true
			v.keys = append(v.keys, k.s)
			v.values = append(v.values, genValue(r, depth-1))
		}
		return v
	}
}

// wantCanonical renders the canonical form from the rules in the package
// documentation, independently of the package's code.
func wantCanonical(v jv) string {
	switch v.kind {
	case 'n':
		return "null"
	case 't':
		return "true"
	case 'f':
		return "false"
	case 's':
		var b strings.Builder
		b.WriteByte('"')
		for _, c := range v.s {
			switch {
			case c == '"' || c == '\\':
				b.WriteString(`\` + string(c))
			case c == '\b':
				b.WriteString(`\b`)
			case c == '\t':
				b.WriteString(`\t`)
			case c == '\n':
				b.WriteString(`\n`)
			case c == '\f':
				b.WriteString(`\f`)
			case c == '\r':
				b.WriteString(`\r`)
			case c < 0x20:
				fmt.Fprintf(&b, `\u%04x`, c)
			default:
				b.WriteRune(c)
			}
		}
		b.WriteByte('"')
		return b.String()
	case 'd':
		if v.s == "" {
			return "0"
		}
		sign := ""
		if v.neg {
			sign = "-"
		}
		d, e := v.s, v.exp+len(v.s)-1 // d[0].d[1:] × 10^e
		switch {
		case e >= 0 && e < 21:
			if len(d) <= e+1 {
				return sign + d + strings.Repeat("0", e+1-len(d))
			}
			return sign + d[:e+1] + "." + d[e+1:]
		case e < 0 && e > -7:
			return sign + "0." + strings.Repeat("0", -e-1) + d
		}
		m := d[:1]
		if len(d) > 1 {
			m += "." + d[1:]
		}
		if e > 0 {
			return sign + m + "e+" + strconv.Itoa(e)
		}
		return sign + m + "e" + strconv.Itoa(e)
	case 'a':
		parts := make([]string, len(v.elems))
		for i, e := range v.elems {
			parts[i] = wantCanonical(e)
		}
		return "[" + strings.Join(parts, ",") + "]"
	default:
		idx := make([]int, len(v.keys))
		for i := range idx {
			idx[i] = i
		}
		slices.SortFunc(idx, func(a, b int) int { return strings.Compare(v.keys[a], v.keys[b]) })
		parts := make([]string, len(idx))
		for i, j := range idx {
			parts[i] = wantCanonical(jv{kind: 's', s: v.keys[j]}) + ":" + wantCanonical(v.values[j])
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
}

// spell writes v as some valid JSON text that means the same.
func spell(r *rand.Rand, v jv) string {
	ws := func() string { return []string{"", "", " ", "\n", "\t ", "\r\n  "}[r.IntN(6)] }
	hex4 := func(c rune) string {
		s := fmt.Sprintf("%04x", c)
		if r.IntN(2) == 0 {
			s = strings.ToUpper(s)
		}
		return `\u` + s
	}
	switch v.kind {
	case 'n':
		return "null"
	case 't':
		return "true"
	case 'f':
		return "false"
	case 's':
		var b strings.Builder
		b.WriteByte('"')
		for _, c := range v.s {
			short := map[rune]string{'"': `\"`, '\\': `\\`, '/': `\/`, '\b': `\b`, '\t': `\t`, '\n': `\n`, '\f': `\f`, '\r': `\r`}[c]
			switch {
			case short != "" && r.IntN(2) == 0:
				b.WriteString(short)
			case c < 0x20 || c == '"' || c == '\\' || r.IntN(3) == 0:
				if c > 0xffff {
					hi, lo := utf16.EncodeRune(c)
					b.WriteString(hex4(hi) + hex4(lo))
				} else {
					b.WriteString(hex4(c))
				}
			default:
				b.WriteRune(c)
			}
		}
		b.WriteByte('"')
		return b.String()
	case 'd':
		sign := ""
		if v.neg {
			sign = "-"
		}
		if v.s == "" {
			return sign + []string{"0", "0.0", "0e5", "0.000E-3", "0E+0"}[r.IntN(5)]
		}
		digits := v.s + strings.Repeat("0", r.IntN(3)) // trailing zeros
		x := v.exp - (len(digits) - len(v.s))          // value = digits × 10^x
		f := r.IntN(len(digits) + 3)                   // fraction length
		var m string
		switch {
		case f == 0:
			m = digits
		case f >= len(digits):
			m = "0." + strings.Repeat("0", f-len(digits)) + digits
		default:
			m = digits[:len(digits)-f] + "." + digits[len(digits)-f:]
		}
		w := x + f // written exponent
		if w == 0 && r.IntN(2) == 0 {
			return sign + m
		}
		e := []string{"e", "E"}[r.IntN(2)]
		es := strconv.Itoa(w)
		if w >= 0 && r.IntN(2) == 0 {
			es = "+" + es
		}
		if r.IntN(3) == 0 {
			es = strings.Replace(es, strconv.Itoa(max(w, -w)), "00"+strconv.Itoa(max(w, -w)), 1)
		}
		return sign + m + e + es
	case 'a':
		parts := make([]string, len(v.elems))
		for i, e := range v.elems {
			parts[i] = ws() + spell(r, e) + ws()
		}
		return "[" + ws() + strings.Join(parts, ",") + "]"
	default:
		order := r.Perm(len(v.keys))
		parts := make([]string, len(order))
		for i, j := range order {
			parts[i] = ws() + spell(r, jv{kind: 's', s: v.keys[j]}) + ws() + ":" + ws() + spell(r, v.values[j]) + ws()
		}
		return "{" + ws() + strings.Join(parts, ",") + "}"
	}
}

// Many random spellings of many random values all canonicalize to the form
// the documented rules give.
func TestCanonicalSpellings(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	n := 3000
	if testing.Short() {
		n = 300
	}
	for range n {
		v := genValue(r, 4)
		want := wantCanonical(v)
		wantHash, err := resource.HashJSON([]byte(want), resource.Limits{})
		if err != nil {
			t.Fatalf("HashJSON(%s): %v", want, err)
		}
		for range 4 {
			in := ws(r) + spell(r, v) + ws(r)
			got, err := resource.AppendCanonicalJSON(nil, []byte(in), resource.Limits{})
			if err != nil || string(got) != want {
				t.Fatalf("canonical(%s)\n= %s, %v\nwant %s", in, got, err, want)
			}
			if h, _ := resource.HashJSON([]byte(in), resource.Limits{}); h != wantHash {
				t.Fatalf("HashJSON(%s) differs from HashJSON(%s)", in, want)
			}
		}
	}
}

func ws(r *rand.Rand) string { return []string{"", " ", "\n"}[r.IntN(3)] }
