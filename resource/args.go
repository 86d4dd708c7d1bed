package resource

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"sync"
	"unsafe"
)

// ArgsEncoder writes the canonical form of arguments of one type A, as
// [HashValue] hashes them, with the type's plan looked up once, when the
// encoder is made, and without converting the arguments to an interface
// (which moves them to the heap). A typed tool makes one when it is wrapped
// and uses it on every call. It is safe for concurrent use.
type ArgsEncoder[A any] struct {
	p *plan
	// flat is set when A is a struct of direct fields only (see
	// fieldPl.direct): its canonical form is written from the caller's
	// value, with neither reflection nor a copy.
	flat bool
	// scalar, when A is a bool, an integer or a string (without a
	// marshaler), writes it from its address as a field without a name.
	scalar *fieldPl
	// raw is set when A is json.RawMessage: the arguments are JSON text,
	// canonicalized as they are.
	raw bool
	// scratch holds *argsScratch[A]: the arguments are copied into one
	// and encoded from there, so that the caller's value is never given
	// to reflection (it stays on the caller's stack).
	scratch sync.Pool
}

type argsScratch[A any] struct {
	s  state
	cp A
}

// NewArgsEncoder returns the encoder of arguments of type A.
func NewArgsEncoder[A any]() *ArgsEncoder[A] {
	t := reflect.TypeFor[A]()
	e := &ArgsEncoder[A]{p: planFor(t), raw: t == rawMessageType}
	switch e.p.kind {
	case kBool, kInt, kUint, kString:
		e.scalar = &fieldPl{plan: e.p, size: uint8(t.Size()), direct: true}
	}
	e.flat = e.p.kind == kStruct
	for i := range e.p.fields {
		e.flat = e.flat && e.p.fields[i].direct
	}
	return e
}

// Append appends the canonical form of json.Marshal(*args) to dst and
// returns the extended slice, with the rules and errors of [HashValue]:
// HashCanonical of what it appends is HashValue(*args). A json.RawMessage
// is JSON text, canonicalized by [AppendCanonicalJSON]; an empty one is an
// error. On error dst is
// returned unchanged. For a struct of strings, numbers, bools, slices and
// maps of them it does not allocate (beyond growing dst).
func (e *ArgsEncoder[A]) Append(dst []byte, args *A, lim Limits) ([]byte, error) {
	if e.raw {
		// JSON text, which must be one JSON value: unlike json.Marshal
		// (and HashValue), which write a nil json.RawMessage as null, an
		// empty or nil text is refused, as AppendCanonicalJSON and
		// HashJSON refuse it.
		return AppendCanonicalJSON(dst, *(*json.RawMessage)(unsafe.Pointer(args)), lim)
	}
	if e.flat {
		return e.appendFlat(dst, args, lim)
	}
	if e.scalar != nil {
		start, first := len(dst), true
		dst, err := appendDirect(dst, unsafe.Pointer(args), e.scalar, &first)
		if err == nil && len(dst)-start > lim.bytes() {
			err = tooLarge(lim.bytes())
		}
		if err != nil {
			return dst[:start], err
		}
		return dst, nil
	}
	sc, _ := e.scratch.Get().(*argsScratch[A])
	if sc == nil {
		sc = new(argsScratch[A])
	}
	sc.cp = *args
	s := &sc.s
	s.init(lim)
	err := s.encodeCopy(reflect.ValueOf(&sc.cp).Elem(), e.p)
	if err == nil {
		dst = append(dst, s.out...)
	}
	var zero A
	sc.cp = zero
	s.reset()
	e.scratch.Put(sc)
	return dst, encodeError(err)
}

// appendFlat is Append for a flat A: a struct at depth 1, whose fields are
// read from their offsets.
func (e *ArgsEncoder[A]) appendFlat(dst []byte, args *A, lim Limits) ([]byte, error) {
	start, max := len(dst), lim.bytes()
	dst = append(dst, '{')
	first := true
	var err error
	for i := range e.p.fields {
		f := &e.p.fields[i]
		if dst, err = appendDirect(dst, unsafe.Add(unsafe.Pointer(args), f.offset), f, &first); err == nil && len(dst)-start > max {
			err = tooLarge(max)
		}
		if err != nil {
			return dst[:start], err
		}
	}
	return append(dst, '}'), nil
}

func tooLarge(max int) error {
	return &jsonError{ErrTooLarge, "canonical form exceeds " + strconv.Itoa(max) + " bytes", -1}
}

// encodeCopy encodes v, an addressable copy of the caller's value, as
// json.Marshal encodes the value itself, which is not addressable.
func (s *state) encodeCopy(v reflect.Value, p *plan) error {
	s.asValue = true
	err := s.encode(v, p)
	s.asValue = false
	if err == errWhole {
		err = s.whole(v.Interface())
	}
	return err
}

// AppendValue appends the canonical form of json.Marshal(v) to dst and
// returns the extended slice: HashCanonical of what it appends is
// HashValue(v). On error dst is returned unchanged.
func AppendValue(dst []byte, v any, lim Limits) ([]byte, error) {
	s := getState(lim)
	err := s.encodeValue(v)
	if err == errWhole {
		err = s.whole(v)
	}
	return s.finish(dst, err)
}

// HashCanonical returns the Hash of a canonical form, as
// [AppendCanonicalJSON], [AppendValue] and [ArgsEncoder.Append] write it:
// HashJSON(data) is HashCanonical(AppendCanonicalJSON(nil, data)).
func HashCanonical(canonical []byte) Hash {
	full := sha256.Sum256(canonical)
	return Hash(full[:16])
}

// whole encodes v with encoding/json and canonicalizes the result, after
// the reflection encoder met something it cannot reproduce exactly.
func (s *state) whole(v any) error {
	s.out, s.depth, s.indir = s.out[:0], 0, 0
	s.keys, s.mems = s.keys[:0], s.mems[:0]
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.canonical(b)
}

// finish appends the encoding to dst, returns s to the pool and words an
// encoding error.
func (s *state) finish(dst []byte, err error) ([]byte, error) {
	if err == nil {
		dst = append(dst, s.out...)
	}
	putState(s)
	return dst, encodeError(err)
}

// encodeError words an error of the reflection encoder: the canonical
// form's own errors as they are, encoding/json's as arguments it cannot
// encode.
func encodeError(err error) error {
	if err == nil {
		return nil
	}
	if je := (*jsonError)(nil); !errors.As(err, &je) {
		return fmt.Errorf("resource: cannot encode arguments: %w", err)
	}
	return err
}
