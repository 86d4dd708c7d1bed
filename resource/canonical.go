package resource

import (
	"bytes"
	"errors"
	"slices"
	"strconv"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// Limits bound the work of canonicalizing one set of arguments, so that
// model-supplied JSON cannot make key derivation slow or memory-hungry. The
// zero value of each field (or any value below zero) selects its default.
//
// There is no separate limit on the number of members or elements: MaxBytes
// already bounds it (each takes at least two bytes), and the work per member
// is O(log n) for sorting.
type Limits struct {
	// MaxDepth is how deeply arrays and objects may nest. A scalar has depth
	// 0, [] and {} have depth 1, [[]] has depth 2. Deeper input fails with
	// [ErrTooDeep] as soon as the parser reaches the excess level. Default
	// [DefaultMaxDepth]; values above [MaxDepthCap] are treated as
	// MaxDepthCap.
	MaxDepth int

	// MaxBytes is the largest accepted input, in bytes: the JSON text for
	// [HashJSON] and [AppendCanonicalJSON], which fail with [ErrTooLarge]
	// before parsing anything larger; and the canonical form for
	// [HashValue], which fails as soon as it has written more. Default
	// [DefaultMaxBytes].
	MaxBytes int
}

const (
	// DefaultMaxDepth is the default [Limits.MaxDepth].
	DefaultMaxDepth = 32
	// MaxDepthCap is the largest effective [Limits.MaxDepth]. It keeps the
	// recursive parser's stack small whatever the configuration.
	MaxDepthCap = 10000
	// DefaultMaxBytes is the default [Limits.MaxBytes]: 1 MiB.
	DefaultMaxBytes = 1 << 20
)

func (l Limits) depth() int {
	switch {
	case l.MaxDepth <= 0:
		return DefaultMaxDepth
	case l.MaxDepth > MaxDepthCap:
		return MaxDepthCap
	}
	return l.MaxDepth
}

func (l Limits) bytes() int {
	if l.MaxBytes <= 0 {
		return DefaultMaxBytes
	}
	return l.MaxBytes
}

var (
	// ErrTooDeep is wrapped by the error returned for input nested deeper
	// than [Limits.MaxDepth].
	ErrTooDeep = errors.New("resource: JSON nested too deeply")
	// ErrTooLarge is wrapped by the error returned for input longer than
	// [Limits.MaxBytes] and for numbers whose exponent is out of range.
	ErrTooLarge = errors.New("resource: JSON too large")
	// ErrInvalidJSON is wrapped by the error returned for input that is not
	// one valid JSON value, has an object with a duplicate key, or has a
	// string that is not valid UTF-8.
	ErrInvalidJSON = errors.New("resource: invalid JSON")
)

// jsonError adds detail to one of the sentinel errors. It never quotes the
// input, which is model-supplied and may be personal data.
type jsonError struct {
	kind error
	msg  string
	off  int // byte offset in the input, or -1
}

func (e *jsonError) Error() string {
	s := e.kind.Error() + ": " + e.msg
	if e.off >= 0 {
		s += " at offset " + strconv.Itoa(e.off)
	}
	return s
}

func (e *jsonError) Unwrap() error { return e.kind }

// state is the scratch space of one canonicalization or one HashValue
// encoding. It is pooled, so that the hot paths allocate nothing.
type state struct {
	in  []byte // JSON being canonicalized
	pos int    // read position in in
	out []byte // canonical output

	depth, maxDepth int
	maxBytes        int
	indir           int // pointer and interface hops on the current path (HashValue)
	// asValue is set while the value being encoded is addressable only
	// because ArgsEncoder copied it: json.Marshal would see a value there,
	// until a pointer is followed.
	asValue bool

	// Open objects push their members here while they are parsed and pop
	// them when they are sorted and written.
	keys []byte   // unescaped keys, the sort keys
	mems []member // spans of keys and of `"key":value` in out
	tmp  []byte   // copy of an object's body while it is reordered
}

type member struct {
	k0, k1 int // key in state.keys
	m0, m1 int // `"key":value` in state.out
}

var statePool = sync.Pool{New: func() any { return new(state) }}

func getState(lim Limits) *state {
	s := statePool.Get().(*state)
	s.init(lim)
	return s
}

func (s *state) init(lim Limits) {
	s.maxDepth, s.maxBytes = lim.depth(), lim.bytes()
	s.out = s.out[:0]
}

// putState returns s to the pool.
func putState(s *state) {
	s.reset()
	statePool.Put(s)
}

// reset readies s for its next use, dropping buffers that one unusual input
// made large so that a pool does not pin them.
func (s *state) reset() {
	const keep = 64 << 10
	if cap(s.out) > keep {
		s.out = nil
	}
	if cap(s.keys) > keep {
		s.keys = nil
	}
	if cap(s.tmp) > keep {
		s.tmp = nil
	}
	if cap(s.mems) > keep/32 {
		s.mems = nil
	}
	s.in, s.pos, s.depth, s.indir, s.asValue = nil, 0, 0, 0, false
	s.keys, s.mems = s.keys[:0], s.mems[:0]
}

// AppendCanonicalJSON appends the canonical form of the JSON value in data
// to dst and returns the extended slice. The canonical form is described in
// the package documentation; equal arguments, however they were spelled,
// have the same canonical form. On error it returns dst with its original
// length and an error wrapping [ErrInvalidJSON], [ErrTooDeep] or
// [ErrTooLarge].
//
// The output is at most six times as long as data: a number such as 1e20
// is written out in full. dst's spare capacity must not overlap data.
func AppendCanonicalJSON(dst, data []byte, lim Limits) ([]byte, error) {
	if len(data) <= lim.bytes() {
		if out, ok := appendFlat(dst, data); ok {
			return out, nil
		}
	}
	s := getState(lim)
	// Written to s's own buffer and then copied, so that dst (often on the
	// caller's stack) is never stored where it would escape.
	err := s.canonical(data)
	if err == nil {
		dst = append(dst, s.out...)
	}
	putState(s)
	return dst, err
}

// canonical writes the canonical form of the JSON text data to s.out at the
// current depth. It may be nested in a HashValue encoding.
func (s *state) canonical(data []byte) error {
	if len(data) > s.maxBytes {
		return &jsonError{ErrTooLarge, "input is " + strconv.Itoa(len(data)) + " bytes; the limit is " + strconv.Itoa(s.maxBytes), -1}
	}
	in, pos := s.in, s.pos
	s.in, s.pos = data, 0
	s.skipSpace()
	err := s.value()
	if err == nil {
		s.skipSpace()
		if s.pos < len(s.in) {
			err = s.syntax("unexpected data after the top-level value", s.pos)
		}
	}
	s.in, s.pos = in, pos
	return err
}

func (s *state) syntax(msg string, off int) error {
	return &jsonError{ErrInvalidJSON, msg, off}
}

func (s *state) skipSpace() {
	for s.pos < len(s.in) {
		switch s.in[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek returns the byte at the read position, or 0 at the end.
func (s *state) peek() byte {
	if s.pos < len(s.in) {
		return s.in[s.pos]
	}
	return 0
}

func (s *state) enter() error {
	s.depth++
	if s.depth > s.maxDepth {
		return &jsonError{ErrTooDeep, "more than " + strconv.Itoa(s.maxDepth) + " levels", s.pos}
	}
	return nil
}

func (s *state) value() error {
	if s.pos >= len(s.in) {
		return s.syntax("unexpected end of input", s.pos)
	}
	switch c := s.in[s.pos]; {
	case c == '{':
		return s.object()
	case c == '[':
		return s.array()
	case c == '"':
		var err error
		s.out, err = s.str(s.out, true)
		return err
	case c == '-' || '0' <= c && c <= '9':
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	}
	return s.syntax("unexpected character", s.pos)
}

func (s *state) literal(lit string) error {
	if !bytes.HasPrefix(s.in[s.pos:], []byte(lit)) {
		return s.syntax("invalid literal", s.pos)
	}
	s.pos += len(lit)
	s.out = append(s.out, lit...)
	return nil
}

func (s *state) array() error {
	if err := s.enter(); err != nil {
		return err
	}
	s.pos++
	s.out = append(s.out, '[')
	s.skipSpace()
	if s.peek() == ']' {
		s.pos++
		s.out = append(s.out, ']')
		s.depth--
		return nil
	}
	for {
		if err := s.value(); err != nil {
			return err
		}
		s.skipSpace()
		switch s.peek() {
		case ',':
			s.pos++
			s.out = append(s.out, ',')
			s.skipSpace()
		case ']':
			s.pos++
			s.out = append(s.out, ']')
			s.depth--
			return nil
		default:
			return s.syntax("expected ',' or ']' in array", s.pos)
		}
	}
}

func (s *state) object() error {
	if err := s.enter(); err != nil {
		return err
	}
	off := s.pos
	s.pos++
	start := len(s.out)
	s.out = append(s.out, '{')
	memBase, keyBase := len(s.mems), len(s.keys)
	s.skipSpace()
	if s.peek() == '}' {
		s.pos++
		s.out = append(s.out, '}')
		s.depth--
		return nil
	}
	for {
		if s.peek() != '"' {
			return s.syntax("expected a string key in object", s.pos)
		}
		k0 := len(s.keys)
		// Most keys are plain bytes: they are their own unescaped and
		// canonical forms.
		i := s.pos + 1
		for i < len(s.in) && plainByte[s.in[i]] {
			i++
		}
		plain := i < len(s.in) && s.in[i] == '"'
		if plain {
			s.keys = append(s.keys, s.in[s.pos+1:i]...)
			s.pos = i + 1
		} else {
			var err error
			if s.keys, err = s.str(s.keys, false); err != nil {
				return err
			}
		}
		k1 := len(s.keys)
		s.skipSpace()
		if s.peek() != ':' {
			return s.syntax("expected ':' after object key", s.pos)
		}
		s.pos++
		s.skipSpace()
		m0 := len(s.out)
		if plain {
			s.out = append(s.out, '"')
			s.out = append(s.out, s.keys[k0:k1]...)
			s.out = append(s.out, '"', ':')
		} else {
			s.out = appendQuoted(s.out, s.keys[k0:k1])
			s.out = append(s.out, ':')
		}
		if err := s.value(); err != nil {
			return err
		}
		s.mems = append(s.mems, member{k0, k1, m0, len(s.out)})
		s.skipSpace()
		switch s.peek() {
		case ',':
			s.pos++
			s.out = append(s.out, ',')
			s.skipSpace()
		case '}':
			s.pos++
			return s.closeObject(start, memBase, keyBase, off)
		default:
			return s.syntax("expected ',' or '}' in object", s.pos)
		}
	}
}

// closeObject finishes the object that starts at out[start] and whose
// members, separated by commas, follow it in out: it sorts them by key,
// rejects duplicate keys, writes the closing brace and pops the members.
// off is the object's offset in the input for errors, or -1.
func (s *state) closeObject(start, memBase, keyBase, off int) error {
	ms := s.mems[memBase:]
	sorted := true
	for i := 1; i < len(ms); i++ {
		c := bytes.Compare(s.key(ms[i-1]), s.key(ms[i]))
		if c == 0 {
			return s.duplicate(off)
		}
		if c > 0 {
			sorted = false
			break
		}
	}
	if !sorted {
		s.sortMembers(ms)
		for i := 1; i < len(ms); i++ {
			if bytes.Equal(s.key(ms[i-1]), s.key(ms[i])) {
				return s.duplicate(off)
			}
		}
		base := start + 1
		s.tmp = append(s.tmp[:0], s.out[base:]...)
		s.out = s.out[:base]
		for i, m := range ms {
			if i > 0 {
				s.out = append(s.out, ',')
			}
			s.out = append(s.out, s.tmp[m.m0-base:m.m1-base]...)
		}
	}
	s.out = append(s.out, '}')
	s.mems, s.keys = s.mems[:memBase], s.keys[:keyBase]
	s.depth--
	return nil
}

func (s *state) duplicate(off int) error {
	return &jsonError{ErrInvalidJSON, "duplicate key in object", off}
}

func (s *state) key(m member) []byte { return s.keys[m.k0:m.k1] }

func (s *state) sortMembers(ms []member) {
	if len(ms) <= 12 {
		for i := 1; i < len(ms); i++ {
			for j := i; j > 0 && bytes.Compare(s.key(ms[j-1]), s.key(ms[j])) > 0; j-- {
				ms[j-1], ms[j] = ms[j], ms[j-1]
			}
		}
		return
	}
	slices.SortFunc(ms, func(a, b member) int { return bytes.Compare(s.key(a), s.key(b)) })
}

// plainByte marks the bytes that stand for themselves both in JSON text and
// in the canonical form: printable ASCII other than '"' and '\'.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str parses the string at the read position and appends it to dst: in
// canonical form, quotes included, if canon is set; otherwise unescaped.
func (s *state) str(dst []byte, canon bool) ([]byte, error) {
	in := s.in
	i := s.pos + 1
	if canon {
		dst = append(dst, '"')
	}
	for {
		start := i
		for i < len(in) && plainByte[in[i]] {
			i++
		}
		dst = append(dst, in[start:i]...)
		if i >= len(in) {
			return dst, s.syntax("unterminated string", s.pos)
		}
		switch c := in[i]; {
		case c == '"':
			s.pos = i + 1
			if canon {
				dst = append(dst, '"')
			}
			return dst, nil
		case c == '\\':
			r, n, err := s.escape(i)
			if err != nil {
				return dst, err
			}
			i += n
			if canon {
				dst = appendEscapedRune(dst, r)
			} else {
				dst = utf8.AppendRune(dst, r)
			}
		case c < 0x20:
			return dst, s.syntax("control character in string", i)
		default:
			r, n := utf8.DecodeRune(in[i:])
			if r == utf8.RuneError && n == 1 {
				return dst, s.syntax("invalid UTF-8 in string", i)
			}
			dst = append(dst, in[i:i+n]...)
			i += n
		}
	}
}

// escape decodes the escape sequence at in[i] == '\\' and returns the rune
// and the number of bytes it took. A \u escape of a UTF-16 surrogate must be
// the high half of a pair immediately followed by the low half.
func (s *state) escape(i int) (rune, int, error) {
	in := s.in
	if i+1 >= len(in) {
		return 0, 0, s.syntax("unterminated string", i)
	}
	switch in[i+1] {
	case '"', '\\', '/':
		return rune(in[i+1]), 2, nil
	case 'b':
		return '\b', 2, nil
	case 'f':
		return '\f', 2, nil
	case 'n':
		return '\n', 2, nil
	case 'r':
		return '\r', 2, nil
	case 't':
		return '\t', 2, nil
	case 'u':
		r, ok := hex4(in, i+2)
		if !ok {
			return 0, 0, s.syntax(`invalid \u escape`, i)
		}
		if !utf16.IsSurrogate(r) {
			return r, 6, nil
		}
		if r < 0xdc00 && i+12 <= len(in) && in[i+6] == '\\' && in[i+7] == 'u' {
			if r2, ok := hex4(in, i+8); ok && 0xdc00 <= r2 && r2 <= 0xdfff {
				return utf16.DecodeRune(r, r2), 12, nil
			}
		}
		return 0, 0, s.syntax(`unpaired UTF-16 surrogate in \u escape (invalid UTF-8)`, i)
	}
	return 0, 0, s.syntax("invalid escape in string", i)
}

func hex4(in []byte, i int) (rune, bool) {
	if i+4 > len(in) {
		return 0, false
	}
	var r rune
	for _, c := range in[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

const lowerHex = "0123456789abcdef"

// appendEscapedRune appends r as it appears inside a canonical string: '"'
// and '\' escaped with a backslash, control characters as \b \t \n \f \r or
// \u00xx, everything else as its UTF-8 bytes.
func appendEscapedRune(dst []byte, r rune) []byte {
	switch {
	case r == '"' || r == '\\':
		return append(dst, '\\', byte(r))
	case r >= 0x20:
		return utf8.AppendRune(dst, r)
	}
	switch r {
	case '\b':
		return append(dst, '\\', 'b')
	case '\t':
		return append(dst, '\\', 't')
	case '\n':
		return append(dst, '\\', 'n')
	case '\f':
		return append(dst, '\\', 'f')
	case '\r':
		return append(dst, '\\', 'r')
	}
	return append(dst, '\\', 'u', '0', '0', lowerHex[r>>4], lowerHex[r&0xf])
}

// appendQuoted appends the canonical string for raw, which must be valid
// UTF-8.
func appendQuoted(dst, raw []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i, c := range raw {
		if c < 0x20 || c == '"' || c == '\\' {
			dst = append(dst, raw[start:i]...)
			dst = appendEscapedRune(dst, rune(c))
			start = i + 1
		}
	}
	dst = append(dst, raw[start:]...)
	return append(dst, '"')
}

// appendQuotedString appends the canonical string for a Go string,
// replacing each byte that is not part of valid UTF-8 with U+FFFD, as
// encoding/json does.
func appendQuotedString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = appendSanitized(dst, s, true)
	return append(dst, '"')
}

// appendSanitized appends s with each invalid UTF-8 byte replaced by
// U+FFFD, escaped as inside a canonical string if escape is set.
func appendSanitized(dst []byte, s string, escape bool) []byte {
	start, i := 0, 0
	for {
		for i < len(s) && plainByte[s[i]] {
			i++
		}
		if i == len(s) {
			return append(dst, s[start:]...)
		}
		if c := s[i]; c < utf8.RuneSelf {
			if escape {
				dst = append(dst, s[start:i]...)
				dst = appendEscapedRune(dst, rune(c))
				start = i + 1
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\uFFFD"...)
			i++
			start = i
			continue
		}
		i += n
	}
}
