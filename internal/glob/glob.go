// Package glob escapes strings for Redis's glob-style patterns (SCAN MATCH,
// KEYS). It imports nothing of this module, so the tier packages can use it.
package glob

import "strings"

// Escape escapes the characters that Redis's glob matching treats
// specially, so that the pattern matches s literally.
func Escape(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
