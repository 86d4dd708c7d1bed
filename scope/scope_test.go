package scope_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/agentcache/agentcache-go/scope"
)

func TestKindString(t *testing.T) {
	for _, k := range []scope.Kind{scope.Global, scope.User, scope.Session} {
		got, err := scope.ParseKind(k.String())
		if err != nil || got != k {
			t.Errorf("ParseKind(%q) = %v, %v; want %v", k.String(), got, err, k)
		}
	}
	if s := scope.Kind(7).String(); s != "Kind(7)" {
		t.Errorf("Kind(7).String() = %q", s)
	}
	for _, s := range []string{"", "User", "GLOBAL", "tenant", "Kind(7)"} {
		if _, err := scope.ParseKind(s); err == nil || !strings.HasPrefix(err.Error(), "scope: ") {
			t.Errorf("ParseKind(%q) error = %v; want a scope: error", s, err)
		}
	}
}

func TestValidate(t *testing.T) {
	valid := []string{
		"alice",
		"u_123",
		"alice@example.com",
		"tenant/42:user{7}%", // separators are fine in an ID: keys escape them
		"Zoë",
		"用户-42",
		"🙂",
		strings.Repeat("x", scope.MaxIDLen),
		strings.Repeat("é", scope.MaxIDLen/2),
	}
	for _, id := range valid {
		if err := scope.Validate(id); err != nil {
			t.Errorf("Validate(%q) = %v; want nil", id, err)
		}
	}
	invalid := []struct{ id, why string }{
		{"", "empty"},
		{strings.Repeat("x", scope.MaxIDLen+1), "longer than 256"},
		{strings.Repeat("é", scope.MaxIDLen/2) + "x", "longer than 256"},
		{"a b", "white space U+0020 at byte 1"},
		{" alice", "white space"},
		{"alice ", "white space"},
		{"a\tb", "control character U+0009"},
		{"a\nb", "control character U+000A"},
		{"a\x00b", "control character U+0000"},
		{"a\x7fb", "control character U+007F"},
		{"a\u0085b", "control character U+0085"},
		{"a\u00a0b", "white space U+00A0"},
		{"a\u2028b", "white space U+2028"},
		{"a\u3000b", "white space U+3000"},
		{"a\u200bb", "format character U+200B"},
		{"\ufeffalice", "format character U+FEFF"},
		{"a\u202eb", "format character U+202E"},
		{"a\xffb", "not valid UTF-8 at byte 1"},
		{"a\xed\xa0\x80", "not valid UTF-8"}, // an encoded surrogate
		{"a\xc0\xaf", "not valid UTF-8"},     // overlong '/'
		{"é"[:1], "not valid UTF-8"},
	}
	for _, tc := range invalid {
		err := scope.Validate(tc.id)
		if !errors.Is(err, scope.ErrInvalid) {
			t.Errorf("Validate(%q) = %v; want ErrInvalid", tc.id, err)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "scope: invalid ID: ") || !strings.Contains(msg, tc.why) {
			t.Errorf("Validate(%q) = %q; want a message containing %q", tc.id, msg, tc.why)
		}
	}
}

// Errors must not echo the ID: it may be personal data and errors end up in logs.
func TestErrorsDoNotContainID(t *testing.T) {
	secret := "secret-person@example.com"
	for _, id := range []string{secret + " ", "\x00" + secret, secret + "\xff"} {
		ctx := scope.WithUser(context.Background(), id)
		_, err := scope.ID(ctx, scope.User)
		if err == nil || strings.Contains(err.Error(), "secret") {
			t.Errorf("ID error for %q = %v; want an error that does not quote the ID", id, err)
		}
	}
}

func TestID(t *testing.T) {
	bg := context.Background()
	ctx := scope.WithSession(scope.WithUser(bg, "alice"), "s-1")

	tests := []struct {
		name    string
		ctx     context.Context
		kind    scope.Kind
		want    string
		wantErr error
		errHas  string
	}{
		{"global without IDs", bg, scope.Global, "", nil, ""},
		{"global ignores IDs", ctx, scope.Global, "", nil, ""},
		{"user", ctx, scope.User, "alice", nil, ""},
		{"session", ctx, scope.Session, "s-1", nil, ""},
		{"missing user", bg, scope.User, "", scope.ErrMissing, "no user ID"},
		{"missing session", scope.WithUser(bg, "alice"), scope.Session, "", scope.ErrMissing, "no session ID"},
		{"missing user with session", scope.WithSession(bg, "s-1"), scope.User, "", scope.ErrMissing, "no user ID"},
		{"empty user is invalid, not missing", scope.WithUser(bg, ""), scope.User, "", scope.ErrInvalid, "invalid user ID: empty"},
		{"bad session", scope.WithSession(bg, "a b"), scope.Session, "", scope.ErrInvalid, "invalid session ID"},
		{"invalid replaces valid", scope.WithUser(ctx, "\x00"), scope.User, "", scope.ErrInvalid, "control character"},
		{"valid replaces invalid", scope.WithUser(scope.WithUser(bg, "\x00"), "bob"), scope.User, "bob", nil, ""},
		{"invalid user leaves session alone", scope.WithUser(ctx, ""), scope.Session, "s-1", nil, ""},
		{"unknown kind", ctx, scope.Kind(9), "", nil, "unknown kind"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := scope.ID(tc.ctx, tc.kind)
			if got != tc.want {
				t.Errorf("ID = %q; want %q", got, tc.want)
			}
			switch {
			case tc.errHas == "" && err != nil:
				t.Errorf("err = %v; want nil", err)
			case tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas) || !strings.HasPrefix(err.Error(), "scope: ")):
				t.Errorf("err = %v; want a scope: error containing %q", err, tc.errHas)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Errorf("err = %v; want it to wrap %v", err, tc.wantErr)
			}
			// Fail closed: an invalid ID is never also "missing" (which a
			// careless caller might treat as anonymous) and vice versa.
			if errors.Is(err, scope.ErrInvalid) && errors.Is(err, scope.ErrMissing) {
				t.Errorf("err = %v wraps both ErrInvalid and ErrMissing", err)
			}
		})
	}
}

func TestFrom(t *testing.T) {
	bg := context.Background()
	if id, ok := scope.UserFrom(bg); ok || id != "" {
		t.Errorf("UserFrom(empty) = %q, %v", id, ok)
	}
	if id, ok := scope.UserFrom(scope.WithUser(bg, "alice")); !ok || id != "alice" {
		t.Errorf("UserFrom = %q, %v", id, ok)
	}
	if id, ok := scope.UserFrom(scope.WithUser(bg, "a b")); ok || id != "" {
		t.Errorf("UserFrom(invalid) = %q, %v; want \"\", false", id, ok)
	}
	if id, ok := scope.SessionFrom(scope.WithSession(bg, "s")); !ok || id != "s" {
		t.Errorf("SessionFrom = %q, %v", id, ok)
	}
	if _, ok := scope.SessionFrom(scope.WithUser(bg, "s")); ok {
		t.Error("SessionFrom found a user ID")
	}
	if id, ok := scope.SessionFrom(scope.WithSession(bg, "")); ok || id != "" {
		t.Errorf("SessionFrom(invalid) = %q, %v", id, ok)
	}
}

func TestIDDoesNotAllocate(t *testing.T) {
	ctx := scope.WithSession(scope.WithUser(context.Background(), "alice"), "s-1")
	ctx = context.WithValue(ctx, struct{ k int }{1}, "unrelated") // a deeper chain
	for _, k := range []scope.Kind{scope.Global, scope.User, scope.Session} {
		if n := testing.AllocsPerRun(100, func() { _, _ = scope.ID(ctx, k) }); n != 0 {
			t.Errorf("ID(%v) allocates %v times; want 0", k, n)
		}
	}
	bg := context.Background()
	if n := testing.AllocsPerRun(100, func() { _, _ = scope.ID(bg, scope.User) }); n != 0 {
		t.Errorf("ID(missing) allocates %v times; want 0", n)
	}
}

func BenchmarkID(b *testing.B) {
	ctx := scope.WithSession(scope.WithUser(context.Background(), "user-1234567890"), "session-42")
	ctx, cancel := context.WithCancel(ctx) // a typical request context has more layers
	defer cancel()
	for _, k := range []scope.Kind{scope.User, scope.Session} {
		b.Run(k.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := scope.ID(ctx, k); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkWithUser(b *testing.B) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = scope.WithUser(ctx, "user-1234567890")
	}
}
