// Package resource defines what a cached tool is — a [Resource]: its name,
// scope kind, lifetimes and version — and turns a tool call's arguments into
// a [Hash] that is part of the cache key.
//
// # Resources
//
// A Resource's name and version form its [Resource.ID], "get_cart@1", which
// starts every key of the resource; bumping Version after a schema change
// makes the old entries unreachable. Names are restricted (see
// [Resource.Validate]) so that they can be written into keys as they are:
// they cannot contain key separators, hash-tag braces or '@'.
//
// # Canonical arguments
//
// Models write tool arguments as JSON, and the same arguments can be written
// many ways. [HashJSON] and [AppendCanonicalJSON] first reduce the JSON to a
// canonical form, so that arguments that mean the same give the same key,
// whatever their key order, white space, escapes or number spelling. The
// canonical form of a value is:
//
//   - Objects: members sorted by key, comparing the bytes of the UTF-8 keys
//     after unescaping; '{', ':', ',' and '}' with no white space. An object
//     with two equal keys (after unescaping, so {"a":1,"\u0061":2} counts)
//     is rejected: there is no one right answer to what it means.
//   - Arrays: elements in order, separated by ',' with no white space.
//   - Strings: unescaped and escaped again minimally: '"' and '\' with a
//     backslash, U+0000 to U+001F as \b \t \n \f \r or \u00xx (lower-case
//     hex), every other character as its UTF-8 bytes (so "\u0041" is "A" and
//     "\u003c" is "<"). Strings that are not valid UTF-8, raw or through
//     \u escapes (an unpaired surrogate), are rejected.
//   - Numbers: compared as exact decimals, never through float64. The
//     digits are reduced to the significant ones d1…dn and an exponent e
//     such that the value is d1.d2…dn × 10^e; the number is then written in
//     plain notation when -7 < e < 21 (100, 1.5, 0.001) and as
//     d1.d2…dne±e otherwise (1e+21, 1.5e-7), as JavaScript writes numbers.
//     So 1, 1.0, 1e0 and 10E-1 are all 1; -0 and 0.0e5 are 0; and two
//     integers with different digits stay different however long they are
//     (12345678901234567891 ≠ 12345678901234567892). Unlike RFC 8785 (JCS),
//     which rounds every number to a float64 first, nothing is lost. The
//     exponent e must lie within ±[MaxExponent]; the output never spells out
//     more than 20 zeros, so 1e999999999 stays short.
//   - true, false and null as they are.
//
// Any JSON value may be the top-level value. Input that is not exactly one
// JSON value (trailing data, a byte order mark, comments, trailing commas)
// is rejected. [Limits] bound the nesting depth and the input size, and
// both are checked before the work they guard, so hostile input fails fast:
// a million nested '[' costs MaxDepth steps, and an oversized input is
// rejected before it is read.
//
// The canonical form is itself valid JSON that decodes to the same value,
// and canonicalizing it again changes nothing.
//
// # Typed arguments
//
// [HashValue] gives the same Hash as HashJSON(json.Marshal(v)) but is
// built for the lookup path: it walks the value by reflection with a cached
// plan per type and writes the canonical form directly, without allocating
// for ordinary argument structs. A typed tool keys its calls with an
// [ArgsEncoder], made once per argument type, which writes the same
// canonical form without converting the arguments to an interface (which
// would move them to the heap): a struct of scalar fields, and a scalar,
// is written straight from its memory, with no reflection at all. The
// cache keeps short canonical forms as they are and hashes long ones
// ([HashCanonical]).
package resource
