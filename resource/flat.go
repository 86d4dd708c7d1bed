package resource

import (
	"bytes"
	"unicode/utf8"
)

// maxFlatMembers is the most members appendFlat sorts on its stack; an
// object with more takes the general path.
const maxFlatMembers = 8

// flatMember is one member of a flat object: its key (unquoted) and its
// value, as offsets into the input.
type flatMember struct{ k0, k1, v0, v1 int32 }

// appendFlat appends the canonical form of data to dst when data is the
// shape most tool arguments take: one object of at most maxFlatMembers
// members with distinct keys of plain bytes (see plainByte), whose values
// are strings without escapes, integers that are their own canonical form
// (see state.number), true, false or null, with any white space. It reports
// false, with dst as it was, for anything else, which the general
// canonicalizer then takes, errors included. It keeps no state and
// allocates only if dst must grow: its output is the general path's (a
// property FuzzFlatMatchesGeneral checks).
func appendFlat(dst, data []byte) ([]byte, bool) {
	var ms [maxFlatMembers]flatMember
	n := 0
	i := flatSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return dst, false
	}
	i = flatSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		if flatSpace(data, i+1) != len(data) {
			return dst, false
		}
		return append(dst, '{', '}'), true
	}
	for {
		if n == maxFlatMembers || i >= len(data) || data[i] != '"' {
			return dst, false
		}
		k0 := i + 1
		i = k0
		for i < len(data) && plainByte[data[i]] {
			i++
		}
		if i >= len(data) || data[i] != '"' {
			return dst, false
		}
		k1 := i
		i = flatSpace(data, i+1)
		if i >= len(data) || data[i] != ':' {
			return dst, false
		}
		i = flatSpace(data, i+1)
		v0 := i
		if i = flatScalar(data, i); i < 0 {
			return dst, false
		}
		ms[n] = flatMember{int32(k0), int32(k1), int32(v0), int32(i)}
		n++
		i = flatSpace(data, i)
		if i >= len(data) {
			return dst, false
		}
		if data[i] == '}' {
			break
		}
		if data[i] != ',' {
			return dst, false
		}
		i = flatSpace(data, i+1)
	}
	if flatSpace(data, i+1) != len(data) {
		return dst, false
	}
	cmp := func(x, y flatMember) int { return bytes.Compare(data[x.k0:x.k1], data[y.k0:y.k1]) }
	for a := 1; a < n; a++ {
		for b := a; b > 0 && cmp(ms[b-1], ms[b]) > 0; b-- {
			ms[b-1], ms[b] = ms[b], ms[b-1]
		}
	}
	for a := 1; a < n; a++ {
		if cmp(ms[a-1], ms[a]) == 0 {
			return dst, false // the general path reports the duplicate
		}
	}
	dst = append(dst, '{')
	for a, m := range ms[:n] {
		if a > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, data[m.k0-1:m.k1+1]...)
		dst = append(dst, ':')
		dst = append(dst, data[m.v0:m.v1]...)
	}
	return append(dst, '}'), true
}

// flatSpace returns the offset of the first byte at or after i in data
// that is not JSON white space.
func flatSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// flatScalar returns the offset just past the value at data[i] when it is
// one appendFlat copies as it is, or -1.
func flatScalar(data []byte, i int) int {
	if i >= len(data) {
		return -1
	}
	switch c := data[i]; {
	case c == '"':
		j := i + 1
		wide := false
		for j < len(data) {
			b := data[j]
			if plainByte[b] {
				j++
				continue
			}
			if b >= utf8.RuneSelf {
				wide = true
				j++
				continue
			}
			break
		}
		if j >= len(data) || data[j] != '"' || wide && !utf8.Valid(data[i+1:j]) {
			return -1
		}
		return j + 1
	case c == '-' || '0' <= c && c <= '9':
		j := i
		if c == '-' {
			j++
		}
		d := j
		if j >= len(data) || data[j] < '0' || data[j] > '9' {
			return -1
		}
		if data[j] == '0' {
			if c == '-' {
				return -1 // -0 is canonically 0
			}
			j++
		} else {
			for j < len(data) && '0' <= data[j] && data[j] <= '9' {
				j++
			}
		}
		if j-d > 15 || j < len(data) && (data[j] == '.' || data[j] == 'e' || data[j] == 'E' || '0' <= data[j] && data[j] <= '9') {
			return -1
		}
		return j
	case c == 't':
		return flatLiteral(data, i, "true")
	case c == 'f':
		return flatLiteral(data, i, "false")
	case c == 'n':
		return flatLiteral(data, i, "null")
	}
	return -1
}

func flatLiteral(data []byte, i int, lit string) int {
	if len(data)-i < len(lit) || string(data[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}
