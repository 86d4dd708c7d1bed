package scope

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// Kind is whose a resource's results are.
type Kind uint8

const (
	// Global results are shared by every caller.
	Global Kind = iota
	// User results belong to the user named by [WithUser].
	User
	// Session results belong to the session named by [WithSession].
	Session
)

// String returns "global", "user" or "session", or "Kind(N)" for a value
// that is none of them.
func (k Kind) String() string {
	switch k {
	case Global:
		return "global"
	case User:
		return "user"
	case Session:
		return "session"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// ParseKind returns the Kind whose [Kind.String] is s. It accepts exactly
// "global", "user" and "session".
func ParseKind(s string) (Kind, error) {
	switch s {
	case "global":
		return Global, nil
	case "user":
		return User, nil
	case "session":
		return Session, nil
	}
	return 0, errors.New("scope: unknown kind " + strconv.Quote(s) + ` (want "global", "user" or "session")`)
}

// MaxIDLen is the longest valid ID in bytes.
const MaxIDLen = 256

var (
	// ErrMissing is wrapped by the error [ID] returns when a per-user or
	// per-session lookup finds no ID in the context.
	ErrMissing = errors.New("scope: missing ID")

	// ErrInvalid is wrapped by the errors [Validate] returns, and by the
	// error [ID] returns when the context holds an ID that failed
	// validation in [WithUser] or [WithSession].
	ErrInvalid = errors.New("scope: invalid ID")
)

// missingError names the kind whose ID is missing. The two possible values
// are built once, so reporting a missing ID does not allocate either.
type missingError struct{ kind Kind }

func (e *missingError) Error() string {
	return "scope: no " + e.kind.String() + " ID in context (set it with scope.With" + title(e.kind) + ")"
}

func (e *missingError) Unwrap() error { return ErrMissing }

var (
	errMissingUser    error = &missingError{User}
	errMissingSession error = &missingError{Session}
)

func title(k Kind) string {
	if k == Session {
		return "Session"
	}
	return "User"
}

// invalidError says why an ID is invalid without quoting the ID, which may
// be personal data.
type invalidError struct {
	kind   Kind // Global when the kind is not known (Validate)
	reason string
}

func (e *invalidError) Error() string {
	if e.kind == Global {
		return "scope: invalid ID: " + e.reason
	}
	return "scope: invalid " + e.kind.String() + " ID: " + e.reason
}

func (e *invalidError) Unwrap() error { return ErrInvalid }

// Validate reports whether id is a valid ID (see the package documentation).
// The error wraps [ErrInvalid]; it says what is wrong and at which byte, but
// does not contain id.
func Validate(id string) error {
	if r := invalidReason(id); r != "" {
		return &invalidError{reason: r}
	}
	return nil
}

// invalidReason returns why id is invalid, or "" if it is valid.
func invalidReason(id string) string {
	if id == "" {
		return "empty"
	}
	if len(id) > MaxIDLen {
		return "longer than " + strconv.Itoa(MaxIDLen) + " bytes (" + strconv.Itoa(len(id)) + ")"
	}
	for i := 0; i < len(id); {
		c := id[i]
		if c < utf8.RuneSelf {
			// ASCII: only the printable, non-space range is allowed.
			if c <= ' ' || c == 0x7f {
				if c == ' ' {
					return "white space U+0020 at byte " + strconv.Itoa(i)
				}
				return "control character " + uplus(rune(c)) + " at byte " + strconv.Itoa(i)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(id[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			return "not valid UTF-8 at byte " + strconv.Itoa(i)
		case unicode.Is(unicode.Cc, r):
			return "control character " + uplus(r) + " at byte " + strconv.Itoa(i)
		case unicode.IsSpace(r):
			return "white space " + uplus(r) + " at byte " + strconv.Itoa(i)
		case unicode.Is(unicode.Cf, r):
			return "invisible format character " + uplus(r) + " at byte " + strconv.Itoa(i)
		}
		i += size
	}
	return ""
}

func uplus(r rune) string { return fmt.Sprintf("U+%04X", r) }

// Context keys. They are zero-size, so converting them to an interface for
// ctx.Value does not allocate.
type (
	userKey    struct{}
	sessionKey struct{}
)

// entry is what the context holds for one kind: a pointer, so that ctx.Value
// returns it without boxing and ID does not allocate. Exactly one of id and
// err is set.
type entry struct {
	id  string
	err error
}

func newEntry(k Kind, id string) *entry {
	if r := invalidReason(id); r != "" {
		return &entry{err: &invalidError{kind: k, reason: r}}
	}
	return &entry{id: id}
}

// WithUser returns a copy of ctx that carries the user ID id. The ID is
// validated here, once; if it is invalid the context remembers that, and
// [ID] for [User] returns an error wrapping [ErrInvalid] rather than treating
// the user as missing. A later WithUser on the derived context replaces the
// ID, valid or not.
func WithUser(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, userKey{}, newEntry(User, id))
}

// WithSession returns a copy of ctx that carries the session ID id. It
// validates like [WithUser].
func WithSession(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, sessionKey{}, newEntry(Session, id))
}

// UserFrom returns the user ID in ctx. It reports false both when there is
// none and when the one set was invalid; use [ID] to tell them apart, and
// always use [ID] to build keys.
func UserFrom(ctx context.Context) (string, bool) {
	e, _ := ctx.Value(userKey{}).(*entry)
	if e == nil || e.err != nil {
		return "", false
	}
	return e.id, true
}

// SessionFrom returns the session ID in ctx, like [UserFrom].
func SessionFrom(ctx context.Context) (string, bool) {
	e, _ := ctx.Value(sessionKey{}).(*entry)
	if e == nil || e.err != nil {
		return "", false
	}
	return e.id, true
}

// ID returns the ID that scopes a resource of kind k in ctx.
//
// For [Global] it returns "" and no error. For [User] and [Session] it
// returns the ID set by [WithUser] or [WithSession]; an error wrapping
// [ErrMissing] (and naming the kind) if none was set; or an error wrapping
// [ErrInvalid] if the one set was invalid. Callers must not cache anything
// when ID fails.
//
// ID does not allocate, whether it succeeds or reports a missing or invalid
// ID.
func ID(ctx context.Context, k Kind) (string, error) {
	var e *entry
	switch k {
	case Global:
		return "", nil
	case User:
		if e, _ = ctx.Value(userKey{}).(*entry); e == nil {
			return "", errMissingUser
		}
	case Session:
		if e, _ = ctx.Value(sessionKey{}).(*entry); e == nil {
			return "", errMissingSession
		}
	default:
		return "", errors.New("scope: unknown kind " + k.String())
	}
	return e.id, e.err
}
