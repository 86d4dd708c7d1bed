package scope

import "errors"

// unreserved marks the bytes AppendEscaped copies as they are. Everything
// else, including '%' itself, is percent-encoded, which is what makes the
// encoding injective: a '%' in the output always starts an escape.
var unreserved = func() (t [256]bool) {
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "._~@+=-" {
		t[c] = true
	}
	return t
}()

const upperHex = "0123456789ABCDEF"

// AppendEscaped appends the key-safe form of id to dst and returns the
// extended slice. Bytes in A-Z a-z 0-9 and "._~@+=-" are copied; every other
// byte becomes '%' followed by two upper-case hex digits. The output never
// contains ':', '{', '}', '|', '/', a space or a non-ASCII byte, and every '%'
// in it starts an escape.
//
// The encoding works on bytes and accepts any string, valid ID or not. It
// allocates nothing when dst has room for the result (at most 3*len(id)
// bytes).
func AppendEscaped(dst []byte, id string) []byte {
	start := 0
	for i := 0; i < len(id); i++ {
		c := id[i]
		if unreserved[c] {
			continue
		}
		dst = append(dst, id[start:i]...)
		dst = append(dst, '%', upperHex[c>>4], upperHex[c&0xf])
		start = i + 1
	}
	return append(dst, id[start:]...)
}

var errMalformed = errors.New("scope: malformed escaped ID")

// Unescape inverts [AppendEscaped]: Unescape(string(AppendEscaped(nil, x)))
// returns x for every string x. It accepts only strings that AppendEscaped
// can produce, so it rejects bytes that should have been escaped, escapes of
// bytes that should not have been, lower-case hex digits and truncated
// escapes. It does not check that the result is a valid ID.
func Unescape(s string) (string, error) {
	n := 0 // number of escapes
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved[c] {
			continue
		}
		if c != '%' || i+2 >= len(s) {
			return "", errMalformed
		}
		hi, lo := unhex(s[i+1]), unhex(s[i+2])
		if hi < 0 || lo < 0 || unreserved[hi<<4|lo] {
			return "", errMalformed
		}
		n++
		i += 2
	}
	if n == 0 {
		return s, nil
	}
	b := make([]byte, 0, len(s)-2*n)
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '%' {
			b = append(b, c)
			continue
		}
		b = append(b, byte(unhex(s[i+1])<<4|unhex(s[i+2])))
		i += 2
	}
	return string(b), nil
}

// unhex returns the value of an upper-case hex digit, or -1.
func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}
