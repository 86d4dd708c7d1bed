// Package scope says whose a cached tool result is: everyone's ([Global]),
// one user's ([User]) or one session's ([Session]).
//
// # The isolation promise
//
// The application puts the caller's IDs in the request context with
// [WithUser] and [WithSession]. A resource declares its [Kind]; the cache
// takes the matching ID from the context with [ID] and makes it part of the
// key. A per-user or per-session lookup whose ID is missing fails with
// [ErrMissing], and one whose ID is invalid fails with [ErrInvalid]: the tool
// is not called and nothing is cached. Neither ever falls back to a shared
// (global) entry, so one user can never be served another user's data or a
// result computed for nobody in particular.
//
// # What a valid ID is
//
// An ID is 1 to [MaxIDLen] bytes of valid UTF-8 containing no control
// characters (Unicode category Cc, such as NUL, newline or DEL), no white
// space of any kind (Unicode White_Space, including the ASCII space, tabs,
// no-break spaces and line separators) and no invisible format characters
// (Unicode category Cf, such as zero-width spaces, the byte order mark and
// bidirectional overrides). IDs are opaque: they are compared byte for byte,
// never case-folded or normalized.
//
// White space is refused, not trimmed, because "alice" and "alice " would
// otherwise be two different users that look the same in every log, and a
// stray space is almost always a bug in the code that extracted the ID. The
// same reasoning excludes invisible format characters.
//
// [WithUser] and [WithSession] validate the ID once, when it enters the
// context. An invalid ID is remembered as invalid rather than dropped, so
// that [ID] reports [ErrInvalid] (fail closed) and never treats the request
// as anonymous. Validation errors describe what is wrong and where, but never
// repeat the ID itself, so they are safe to log.
//
// # IDs in cache keys
//
// [AppendEscaped] is the form an ID takes inside a Redis key. Every byte
// outside A-Z a-z 0-9 and "._~@+=-" is percent-encoded, so an ID can never
// contain the key separator ':', the Redis Cluster hash-tag braces '{' and
// '}', or a space, whatever the user typed: no ID can forge or break out of
// its key segment or move its key to another cluster slot. The encoding is
// injective (two different IDs never share an escaped form) and [Unescape]
// inverts it exactly.
package scope
