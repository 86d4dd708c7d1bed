package resource

import "strconv"

// MaxExponent bounds the decimal exponent of a number in scientific
// notation (the e in d.ddd×10^e). Numbers beyond it fail with [ErrTooLarge].
// Canonical numbers that large are written in exponent form, so the bound
// is not about output size: it keeps exponent arithmetic exact in an int64
// however many digits the input spells the exponent with.
const MaxExponent = 999_999_999

// numParts is a JSON number split into its parts: the value is
// (-1 if neg) × int.frac × 10^exp.
type numParts struct {
	neg       bool
	int, frac []byte // digits only
	exp       int64
	expHuge   bool // the exponent had more significant digits than fit
}

// scanNumber parses the JSON number that starts at in[i] and returns it and
// the offset just past it, or a message if it is malformed.
func scanNumber(in []byte, i int) (numParts, int, string) {
	var p numParts
	if i < len(in) && in[i] == '-' {
		p.neg = true
		i++
	}
	start := i
	switch {
	case i < len(in) && in[i] == '0':
		i++
	case i < len(in) && '1' <= in[i] && in[i] <= '9':
		i = skipDigits(in, i+1)
	default:
		return p, i, "invalid number"
	}
	p.int = in[start:i]
	if i < len(in) && in[i] == '.' {
		j := skipDigits(in, i+1)
		if j == i+1 {
			return p, j, "number has no digits after '.'"
		}
		p.frac = in[i+1 : j]
		i = j
	}
	if i < len(in) && (in[i] == 'e' || in[i] == 'E') {
		i++
		expNeg := false
		if i < len(in) && (in[i] == '+' || in[i] == '-') {
			expNeg = in[i] == '-'
			i++
		}
		digits := i
		for i < len(in) && in[i] == '0' {
			i++
		}
		sig := i
		i = skipDigits(in, i)
		if i == digits {
			return p, i, "number has no digits in its exponent"
		}
		if i-sig > 18 {
			p.expHuge = true
		} else {
			for _, c := range in[sig:i] {
				p.exp = p.exp*10 + int64(c-'0')
			}
		}
		if expNeg {
			p.exp = -p.exp
		}
	}
	return p, i, ""
}

func skipDigits(in []byte, i int) int {
	for i < len(in) && '0' <= in[i] && in[i] <= '9' {
		i++
	}
	return i
}

func (s *state) number() error {
	// An integer of at most 15 digits, other than -0, is its own
	// canonical form.
	in, j := s.in, s.pos
	if in[j] == '-' {
		j++
	}
	if j < len(in) && ('1' <= in[j] && in[j] <= '9' || in[j] == '0' && j == s.pos) {
		k := j + 1
		for in[j] != '0' && k < len(in) && k-j < 15 && '0' <= in[k] && in[k] <= '9' {
			k++
		}
		if k == len(in) || !('0' <= in[k] && in[k] <= '9' || in[k] == '.' || in[k] == 'e' || in[k] == 'E') {
			s.out = append(s.out, in[s.pos:k]...)
			s.pos = k
			return nil
		}
	}
	start := s.pos
	p, end, msg := scanNumber(s.in, s.pos)
	if msg != "" {
		return s.syntax(msg, start)
	}
	s.pos = end
	var ok bool
	if s.out, ok = appendNumber(s.out, p); !ok {
		return &jsonError{ErrTooLarge, "number exponent out of range", start}
	}
	return nil
}

// digitAt returns the k'th digit of int followed by frac.
func (p *numParts) digitAt(k int) byte {
	if k < len(p.int) {
		return p.int[k]
	}
	return p.frac[k-len(p.int)]
}

// appendDigits appends digits [a, b) of int followed by frac.
func (p *numParts) appendDigits(dst []byte, a, b int) []byte {
	if n := len(p.int); a < n {
		dst = append(dst, p.int[a:min(b, n)]...)
		a = n
	}
	if a < b {
		dst = append(dst, p.frac[a-len(p.int):b-len(p.int)]...)
	}
	return dst
}

// appendNumber appends the canonical form of the number p, or reports false
// if its exponent is out of range.
//
// The value is reduced to its significant digits d1…dn (no leading or
// trailing zeros) and the exponent e of d1.d2…dn × 10^e, and then written as
// JavaScript (and encoding/json, for float64) would write a number with
// those digits: plainly when -7 < e < 21, in exponent form otherwise. Any
// zero is "0".
func appendNumber(dst []byte, p numParts) ([]byte, bool) {
	n := len(p.int) + len(p.frac)
	first := 0
	for first < n && p.digitAt(first) == '0' {
		first++
	}
	if first == n {
		return append(dst, '0'), true
	}
	if p.expHuge {
		return dst, false
	}
	last := n - 1
	for p.digitAt(last) == '0' {
		last--
	}
	e := p.exp + int64(len(p.int)-1-first)
	if e > MaxExponent || e < -MaxExponent {
		return dst, false
	}
	if p.neg {
		dst = append(dst, '-')
	}
	nd := int64(last - first + 1)
	switch {
	case 0 <= e && e < 21:
		if nd <= e+1 {
			dst = p.appendDigits(dst, first, last+1)
			for range e + 1 - nd {
				dst = append(dst, '0')
			}
		} else {
			point := first + int(e) + 1
			dst = p.appendDigits(dst, first, point)
			dst = append(dst, '.')
			dst = p.appendDigits(dst, point, last+1)
		}
	case -7 < e && e < 0:
		dst = append(dst, '0', '.')
		for range -e - 1 {
			dst = append(dst, '0')
		}
		dst = p.appendDigits(dst, first, last+1)
	default:
		dst = append(dst, p.digitAt(first))
		if nd > 1 {
			dst = append(dst, '.')
			dst = p.appendDigits(dst, first+1, last+1)
		}
		if e > 0 {
			dst = append(dst, 'e', '+')
		} else {
			dst = append(dst, 'e', '-')
			e = -e
		}
		dst = strconv.AppendInt(dst, e, 10)
	}
	return dst, true
}
