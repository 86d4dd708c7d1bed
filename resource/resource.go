package resource

import (
	"fmt"
	"strconv"
	"time"

	"github.com/agentcache/agentcache-go/scope"
)

// Resource describes one cached tool: what it is, whose its results are and
// how long they live. The zero TTL fields mean "use the cache's default";
// Validate reports fields that can never be right.
type Resource struct {
	// Name is what the tool is, e.g. "get_cart" or "search.docs": 1 to 64
	// bytes of ASCII letters, digits, '_', '.' and '-', starting with a letter. It is
	// written into cache keys as is, so it can contain neither key
	// separators nor hash-tag braces.
	Name string

	// Scope is whose the results are; see package scope. A per-user or
	// per-session resource is never served without that ID in the context.
	Scope scope.Kind

	// TTL is how long a result is served fresh. Zero means the cache's
	// default; negative is invalid.
	TTL time.Duration

	// NegativeTTL is how long a "not found" answer is remembered. Zero means
	// the default, which [Resource.NegativeTTLFor] computes from the TTL; a
	// negative value means not-found answers are not cached at all.
	NegativeTTL time.Duration

	// StaleWindow is how long after its TTL an entry may still be served,
	// marked stale, while it is refreshed. Zero means never; negative is
	// invalid.
	StaleWindow time.Duration

	// Version is part of every key. Bump it after a change to the tool's
	// arguments or result schema: entries written under the old version
	// become unreachable and age out by their TTL.
	Version uint32
}

// MaxNameLen is the longest valid [Resource] name in bytes.
const MaxNameLen = 64

// Bounds of the default negative TTL; see [Resource.NegativeTTLFor].
const (
	// MinDefaultNegativeTTL is the shortest default negative TTL.
	MinDefaultNegativeTTL = time.Second
	// MaxDefaultNegativeTTL is the longest default negative TTL.
	MaxDefaultNegativeTTL = 5 * time.Minute
)

// Validate reports the first field of r that is invalid. Its errors start
// with "resource:" and name the field.
func (r Resource) Validate() error {
	if err := validateName(r.Name); err != nil {
		return err
	}
	switch r.Scope {
	case scope.Global, scope.User, scope.Session:
	default:
		return fmt.Errorf("resource: %s: Scope %v is not a known scope kind", r.Name, r.Scope)
	}
	if r.TTL < 0 {
		return fmt.Errorf("resource: %s: TTL %v is negative (0 means the cache's default)", r.Name, r.TTL)
	}
	if r.StaleWindow < 0 {
		return fmt.Errorf("resource: %s: StaleWindow %v is negative (0 means no stale serving)", r.Name, r.StaleWindow)
	}
	// Every NegativeTTL is meaningful: negative disables negative caching.
	return nil
}

func validateName(name string) error {
	if name == "" {
		return fmt.Errorf("resource: Name is empty")
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("resource: Name is %d bytes long; at most %d are allowed", len(name), MaxNameLen)
	}
	letter := func(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
	if !letter(name[0]) {
		return fmt.Errorf("resource: Name %q must start with a letter", name)
	}
	for i := 1; i < len(name); i++ {
		c := name[i]
		if letter(c) || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-' {
			continue
		}
		return fmt.Errorf("resource: Name %q has %q at byte %d; only letters, digits, '_', '.' and '-' are allowed", name, c, i)
	}
	return nil
}

// ID returns the resource's identity in keys, metrics and logs: the name,
// '@', and the version in decimal, e.g. "get_cart@1". Different versions of
// a resource therefore never share an entry. ID does not validate r.
func (r Resource) ID() string {
	var buf [MaxNameLen + 11]byte
	b := append(buf[:0], r.Name...)
	b = append(b, '@')
	b = strconv.AppendUint(b, uint64(r.Version), 10)
	return string(b)
}

// NegativeTTLFor returns how long a "not found" answer for r is remembered
// when its results live for ttl (r.TTL, or the cache's default when r.TTL
// is zero):
//
//   - r.NegativeTTL if it is positive;
//   - 0, meaning "do not cache not-found answers", if it is negative;
//   - otherwise ttl/10, but at least [MinDefaultNegativeTTL] (1s) and at most
//     [MaxDefaultNegativeTTL] (5m), and never more than ttl itself (0 if ttl
//     is not positive).
//
// The default is a fraction of the TTL because a missing thing is often
// about to exist (an agent looks up an order it is about to create), so
// "not found" goes stale sooner than a found value. The one-second floor
// still absorbs a burst of identical misses, such as an agent retrying in a
// loop; the five-minute ceiling bounds how long a long-lived resource can
// hide something that was created without a matching invalidation. A
// not-found answer never outlives what a found one would.
func (r Resource) NegativeTTLFor(ttl time.Duration) time.Duration {
	switch {
	case r.NegativeTTL > 0:
		return r.NegativeTTL
	case r.NegativeTTL < 0 || ttl <= 0:
		return 0
	}
	d := min(max(ttl/10, MinDefaultNegativeTTL), MaxDefaultNegativeTTL)
	return min(d, ttl)
}
