package resource_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/agentcache/agentcache-go/resource"
)

// The seed corpus is in testdata/fuzz/FuzzCanonicalJSON and runs with every
// go test; go test -fuzz=FuzzCanonicalJSON explores further.
func FuzzCanonicalJSON(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		lim := resource.Limits{MaxDepth: 64, MaxBytes: 1 << 16}
		out, err := resource.AppendCanonicalJSON(nil, data, lim)
		if err != nil {
			if !errors.Is(err, resource.ErrInvalidJSON) && !errors.Is(err, resource.ErrTooDeep) && !errors.Is(err, resource.ErrTooLarge) {
				t.Fatalf("error %v wraps none of the sentinels", err)
			}
			if !strings.HasPrefix(err.Error(), "resource: ") {
				t.Fatalf("error %q does not start with resource:", err)
			}
			if errors.Is(err, resource.ErrInvalidJSON) && json.Valid(data) && !hasBadUnicode(data) && !hasDuplicateKeys(t, data) {
				t.Fatalf("canonicalizing valid JSON %q without duplicate keys failed: %v", data, err)
			}
			if _, herr := resource.HashJSON(data, lim); herr == nil {
				t.Fatalf("HashJSON accepted %q, which AppendCanonicalJSON rejected", data)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		if hasBadUnicode(data) {
			t.Fatalf("accepted invalid UTF-8 in %q", data)
		}
		if !json.Valid(out) {
			t.Fatalf("canonical form %q of %q is not valid JSON", out, data)
		}
		again, err := resource.AppendCanonicalJSON(nil, out, lim)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("canonical form %q is not a fixed point: %q, %v", out, again, err)
		}
		want, err := decode(data)
		if err != nil {
			t.Fatalf("decode input: %v", err)
		}
		got, err := decode(out)
		if err != nil {
			t.Fatalf("decode canonical form: %v", err)
		}
		if !sameValue(want, got) {
			t.Fatalf("canonical form %q of %q decodes to a different value", out, data)
		}
		h1, err1 := resource.HashJSON(data, lim)
		h2, err2 := resource.HashJSON(out, lim)
		if err1 != nil || err2 != nil || h1 != h2 {
			t.Fatalf("HashJSON(input) = %v, %v; HashJSON(canonical) = %v, %v", h1, err1, h2, err2)
		}
		// The decoded value (maps, slices, json.Number) hashes the same
		// through HashValue, which is HashJSON(json.Marshal(v)).
		// (HashValue bounds the canonical form, which may be the longer.)
		if h3, err3 := resource.HashValue(want, lim); len(out) <= lim.MaxBytes && (err3 != nil || h3 != h1) {
			t.Fatalf("HashValue(decoded %q) = %v, %v; want %v", data, h3, err3, h1)
		}
	})
}

func decode(data []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("trailing data")
	}
	return v, nil
}

// sameValue compares decoded JSON, numbers by exact decimal value.
func sameValue(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, av := range a {
			bv, ok := b[k]
			if !ok || !sameValue(av, bv) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !sameValue(a[i], b[i]) {
				return false
			}
		}
		return true
	case json.Number:
		b, ok := b.(json.Number)
		return ok && decimalEqual(string(a), string(b))
	default:
		return a == b
	}
}

// decimalEqual compares two JSON numbers exactly. It is written separately
// from the package's normalization so that it can check it.
func decimalEqual(a, b string) bool {
	na, da, ea := splitDecimal(a)
	nb, db, eb := splitDecimal(b)
	if da == "" || db == "" { // zero
		return da == db
	}
	return na == nb && da == db && ea.Cmp(eb) == 0
}

// splitDecimal returns sign, significant digits and the exponent of the
// last significant digit: value = ±digits × 10^exp.
func splitDecimal(s string) (neg bool, digits string, exp *big.Int) {
	neg = strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	exp = new(big.Int)
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		exp.SetString(strings.TrimPrefix(s[i+1:], "+"), 10)
		s = s[:i]
	}
	if i := strings.IndexByte(s, '.'); i >= 0 {
		exp.Sub(exp, big.NewInt(int64(len(s)-i-1)))
		s = s[:i] + s[i+1:]
	}
	s = strings.TrimLeft(s, "0")
	trimmed := strings.TrimRight(s, "0")
	exp.Add(exp, big.NewInt(int64(len(s)-len(trimmed))))
	return neg, trimmed, exp
}

// hasBadUnicode reports whether JSON text that json.Valid accepts has
// invalid UTF-8, raw or as an unpaired surrogate escape.
func hasBadUnicode(data []byte) bool {
	if !utf8.Valid(data) {
		return true
	}
	inString := false
	for i := 0; i < len(data); i++ {
		c := data[i]
		if !inString {
			inString = c == '"'
			continue
		}
		switch c {
		case '"':
			inString = false
		case '\\':
			if data[i+1] != 'u' {
				i++
				continue
			}
			r := hexValue(data[i+2 : i+6])
			i += 5
			switch {
			case r >= 0xdc00 && r <= 0xdfff:
				return true
			case r >= 0xd800 && r <= 0xdbff:
				if i+6 >= len(data) || data[i+1] != '\\' || data[i+2] != 'u' {
					return true
				}
				if r2 := hexValue(data[i+3 : i+7]); r2 < 0xdc00 || r2 > 0xdfff {
					return true
				}
				i += 6
			}
		}
	}
	return false
}

func hexValue(b []byte) int {
	n := 0
	for _, c := range b {
		n <<= 4
		switch {
		case c >= '0' && c <= '9':
			n |= int(c - '0')
		case c >= 'a' && c <= 'f':
			n |= int(c-'a') + 10
		case c >= 'A' && c <= 'F':
			n |= int(c-'A') + 10
		}
	}
	return n
}

// hasDuplicateKeys reports whether valid JSON has an object with two equal
// keys, using encoding/json's tokenizer as an independent parser.
func hasDuplicateKeys(t *testing.T, data []byte) bool {
	d := json.NewDecoder(bytes.NewReader(data))
	type frame struct {
		object   bool
		wantsKey bool
		keys     map[string]bool
	}
	var stack []*frame
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return false
		}
		if err != nil {
			t.Fatalf("tokenizing valid JSON: %v", err)
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if delim, ok := tok.(json.Delim); ok && (delim == '}' || delim == ']') {
			stack = stack[:len(stack)-1]
			if len(stack) > 0 && stack[len(stack)-1].object {
				stack[len(stack)-1].wantsKey = true
			}
			continue
		}
		if top != nil && top.object && top.wantsKey {
			k := tok.(string)
			if top.keys[k] {
				return true
			}
			top.keys[k] = true
			top.wantsKey = false
			continue
		}
		if delim, ok := tok.(json.Delim); ok {
			stack = append(stack, &frame{object: delim == '{', wantsKey: delim == '{', keys: map[string]bool{}})
			continue
		}
		if top != nil && top.object {
			top.wantsKey = true
		}
	}
}
