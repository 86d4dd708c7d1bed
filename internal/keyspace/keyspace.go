// Package keyspace owns the layout of what agentcache keeps in L2: the keys
// it writes and the envelope its values travel in. The library builds keys
// and envelopes here, and the operator CLI parses them here, so the two can
// never disagree. Every key is relative to the store's prefix:
//
//	kv:{<key>}                                        key-value API entry
//	{<name@ver>:g:<hash>}                             global resource entry
//	{<name@ver>:<u|s>:<escaped id>}:<hash>            scoped resource entry
//	lk:<entry key>                                    fleet-lock lease
//	ep:g                                              global epoch
//	ep:r:<name@ver>                                   resource epoch
//	ep:s:<u|s>:<escaped id>                           scope epoch
//	{<name@ver>:<u|s>:<escaped id>}:ep                resource-in-scope epoch
//
// <hash> is the 22-character base64url argument hash, and IDs are escaped
// with scope.AppendEscaped. An entry has one key whatever its epochs: the
// epochs it was loaded under are mixed into its record's generation (see
// [Token] and package tier), so that a reader can learn the epochs and read
// the entry in the same round trip, and an invalidated entry is overwritten
// by its reload instead of lingering under an old key.
//
// The braces are a Redis Cluster hash tag: every entry of one resource in one
// scope lives in one slot (a global resource spreads by argument). Nothing a
// caller supplies can break out of its segment: resource names are
// validated, IDs escaped, arguments hashed, and the key-value key comes last
// after a fixed-length token. A lease key keeps its entry's hash tag.
//
// The CLI's tests populate Redis through the library and check that every
// key it wrote parses here, so a change of layout fails them.
package keyspace

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	stdhash "hash"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/agentcache/agentcache-go/internal/glob"

	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
	"github.com/agentcache/agentcache-go/tier"
)

// Type is what a key holds.
type Type uint8

// The types of key the library writes.
const (
	Unknown            Type = iota // not the library's
	Entry                          // a cached call of a resource
	KVEntry                        // an entry of the key-value API
	Lease                          // a fleet-lock lease on an entry
	EpochGlobal                    // ep:g
	EpochResource                  // ep:r:<name@ver>
	EpochScope                     // ep:s:<u|s>:<id>
	EpochResourceScope             // {<name@ver>:<u|s>:<id>}:ep
)

// IsEpoch reports whether t is one of the epoch types.
func (t Type) IsEpoch() bool { return t >= EpochGlobal }

// Key is a parsed key. Fields that do not apply to its Type are zero.
type Key struct {
	Type Type
	// Resource is "name@version" (Entry, EpochResource, EpochResourceScope,
	// and a Lease on an Entry).
	Resource string
	Name     string
	Version  uint32
	// Scope is the scope kind of an Entry (Global for a global resource),
	// an EpochScope or an EpochResourceScope.
	Scope scope.Kind
	// EscID is the escaped scope ID; "" for global entries.
	EscID string
	// Hash is the argument hash of an Entry.
	Hash string
	// KVKey is the application's key of a KVEntry.
	KVKey string
	// Leased is the key a Lease guards, relative to the prefix.
	Leased string
}

// Seg returns the scope segment, "u:<id>" or "s:<id>", or "" when unscoped.
func (k *Key) Seg() string {
	switch k.Scope {
	case scope.User:
		return "u:" + k.EscID
	case scope.Session:
		return "s:" + k.EscID
	}
	return ""
}

// ID returns the unescaped scope ID, or "" when unscoped.
func (k *Key) ID() string {
	if k.EscID == "" {
		return ""
	}
	id, err := scope.Unescape(k.EscID)
	if err != nil { // Parse accepts only IDs that unescape
		return k.EscID
	}
	return id
}

// EpochKeys returns the keys of the epochs an Entry or KVEntry's generation
// is mixed from, in the order [Token] takes them.
func (k *Key) EpochKeys() []string {
	switch {
	case k.Type == KVEntry:
		return []string{GlobalEpochKey}
	case k.Type != Entry:
		return nil
	case k.Scope == scope.Global:
		return []string{GlobalEpochKey, ResourceEpochKey(k.Resource)}
	}
	seg := k.Seg()
	return []string{GlobalEpochKey, ResourceEpochKey(k.Resource), ScopeEpochKey(seg), ResourceScopeEpochKey(k.Resource, seg)}
}

// GlobalEpochKey is the key of the epoch of the whole cache.
const GlobalEpochKey = "ep:g"

// ResourceEpochKey returns the key of the epoch of resource id (name@ver).
func ResourceEpochKey(id string) string { return "ep:r:" + id }

// ScopeEpochKey returns the key of the epoch of a scope segment ("u:<id>").
func ScopeEpochKey(seg string) string { return string(AppendScopeEpochKey(nil, seg)) }

// AppendScopeEpochKey appends ScopeEpochKey(seg) to dst.
func AppendScopeEpochKey(dst []byte, seg string) []byte {
	return append(append(dst, "ep:s:"...), seg...)
}

// ResourceScopeEpochKey returns the key of the epoch of resource id in the
// scope segment seg.
func ResourceScopeEpochKey(id, seg string) string {
	return string(AppendResourceScopeEpochKey(nil, id, seg))
}

// AppendResourceScopeEpochKey appends ResourceScopeEpochKey(id, seg) to dst.
func AppendResourceScopeEpochKey(dst []byte, id, seg string) []byte {
	dst = append(dst, '{')
	dst = append(dst, id...)
	dst = append(dst, ':')
	dst = append(dst, seg...)
	return append(dst, "}:ep"...)
}

// Segment returns the scope segment of a key for kind k and the raw ID id.
func Segment(k scope.Kind, id string) string {
	switch k {
	case scope.User:
		return string(scope.AppendEscaped([]byte("u:"), id))
	case scope.Session:
		return string(scope.AppendEscaped([]byte("s:"), id))
	}
	return ""
}

// AppendEntryKey appends the key of an entry: for the key-value API (id
// empty) tail is the application's key; for a resource id is name@version,
// seg the scope segment ("" for a global resource) and tail the argument
// hash.
func AppendEntryKey(dst []byte, id, seg string, tail string) []byte {
	switch {
	case id == "":
		// The braces make a hash tag, so that the entry's lease (which
		// keeps it) lives in its slot; a '}' in the key ends the tag
		// early, in the entry and its lease alike.
		dst = append(dst, "kv:{"...)
		dst = append(dst, tail...)
		dst = append(dst, '}')
	case seg == "":
		dst = append(dst, '{')
		dst = append(dst, id...)
		dst = append(dst, ":g:"...)
		dst = append(dst, tail...)
		dst = append(dst, '}')
	default:
		dst = append(dst, '{')
		dst = append(dst, id...)
		dst = append(dst, ':')
		dst = append(dst, seg...)
		dst = append(dst, "}:"...)
		dst = append(dst, tail...)
	}
	return dst
}

// LeaseKey returns the key of the fleet-lock lease on an entry key: the
// entry's key behind a prefix of its own, so it keeps the entry's hash tag
// (and slot) and can never name an entry.
func LeaseKey(entry string) string { return leasePrefix + entry }

// LeaseEntry is the entry key whose lease key is lease.
func LeaseEntry(lease string) string { return strings.TrimPrefix(lease, leasePrefix) }

const leasePrefix = "lk:"

// Token mixes epoch values into an entry's generation, as the library does:
// the global epoch, then (for resources) the resource's, then (for scoped
// resources) the scope's and the resource-in-scope's.
func Token(vals ...uint64) uint64 {
	h := uint64(0x9E3779B97F4A7C15)
	for _, v := range vals {
		h ^= v
		h *= 0xBF58476D1CE4E5B9
		h ^= h >> 31
	}
	if h == 0 { // 0 is no generation (a tombstone's)
		h = 1
	}
	return h
}

const hashLen = 22 // base64url of 16 bytes

// Parse parses a key relative to the prefix. It reports Unknown for
// anything the library would not write.
func Parse(key string) Key {
	switch {
	case key == GlobalEpochKey:
		return Key{Type: EpochGlobal}
	case strings.HasPrefix(key, "ep:r:"):
		k := Key{Type: EpochResource}
		if !k.setResource(key[len("ep:r:"):]) {
			return Key{}
		}
		return k
	case strings.HasPrefix(key, "ep:s:"):
		k := Key{Type: EpochScope}
		if !k.setSeg(key[len("ep:s:"):]) {
			return Key{}
		}
		return k
	case strings.HasPrefix(key, leasePrefix):
		inner := Parse(key[len(leasePrefix):])
		if inner.Type != Entry && inner.Type != KVEntry {
			return Key{}
		}
		inner.Leased = key[len(leasePrefix):]
		inner.Type = Lease
		return inner
	case strings.HasPrefix(key, "kv:{"):
		rest := key[len("kv:{"):]
		if len(rest) < 2 || rest[len(rest)-1] != '}' {
			return Key{}
		}
		return Key{Type: KVEntry, KVKey: rest[:len(rest)-1]}
	case strings.HasPrefix(key, "{"):
		return parseTagged(key)
	}
	return Key{}
}

// parseTagged parses the keys that start with a hash tag: entries of
// resources and resource-in-scope epochs.
func parseTagged(key string) Key {
	end := strings.IndexByte(key, '}')
	if end < 0 {
		return Key{}
	}
	tag, rest := key[1:end], key[end+1:]
	at := strings.IndexByte(tag, '@')
	colon := strings.IndexByte(tag, ':')
	if at < 0 || colon < at {
		return Key{}
	}
	var k Key
	if !k.setResource(tag[:colon]) {
		return Key{}
	}
	inTag := tag[colon+1:]
	if strings.HasPrefix(inTag, "g:") {
		// {<name@ver>:g:<hash>}
		h := inTag[2:]
		if !isHash(h) || rest != "" {
			return Key{}
		}
		k.Type, k.Scope, k.Hash = Entry, scope.Global, h
		return k
	}
	if !k.setSeg(inTag) {
		return Key{}
	}
	if rest == ":ep" {
		k.Type = EpochResourceScope
		return k
	}
	// {<name@ver>:<u|s>:<id>}:<hash>
	if len(rest) != 1+hashLen || rest[0] != ':' || !isHash(rest[1:]) {
		return Key{}
	}
	k.Type, k.Hash = Entry, rest[1:]
	return k
}

// setResource sets the resource fields from "name@ver".
func (k *Key) setResource(id string) bool {
	name, ver, ok := ParseResource(id)
	if !ok || !strings.Contains(id, "@") {
		return false
	}
	k.Resource, k.Name, k.Version = id, name, ver
	return true
}

// setSeg sets the scope fields from "u:<id>" or "s:<id>".
func (k *Key) setSeg(seg string) bool {
	if len(seg) < 3 || seg[1] != ':' {
		return false
	}
	switch seg[0] {
	case 'u':
		k.Scope = scope.User
	case 's':
		k.Scope = scope.Session
	default:
		return false
	}
	k.EscID = seg[2:]
	if _, err := scope.Unescape(k.EscID); err != nil {
		return false
	}
	return true
}

// ParseResource splits "name" or "name@version" into a valid resource name
// and version (0 when absent). A version is decimal without leading zeros,
// as resource.Resource.ID writes it.
func ParseResource(s string) (name string, version uint32, ok bool) {
	name, ver, hasVer := strings.Cut(s, "@")
	if (resource.Resource{Name: name}).Validate() != nil {
		return "", 0, false
	}
	if !hasVer {
		return name, 0, true
	}
	v, err := strconv.ParseUint(ver, 10, 32)
	if err != nil || strconv.FormatUint(v, 10) != ver {
		return "", 0, false
	}
	return name, uint32(v), true
}

func isHash(s string) bool {
	if len(s) != hashLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Glob escapes the characters that Redis's SCAN MATCH treats specially, so
// that the pattern matches s literally.
func Glob(s string) string { return glob.Escape(s) }

// Filter selects entries of resources. Zero fields match anything.
type Filter struct {
	Name    string // resource name
	Version uint32
	AnyVer  bool       // match every version of Name
	Scope   scope.Kind // with ID: the scope kind
	ID      string     // raw (unescaped) scope ID
}

// Pattern returns a SCAN MATCH pattern, relative to the prefix and already
// glob-escaped, that every entry f matches (and some other keys, which
// Match then rejects).
func (f Filter) Pattern() string {
	var b strings.Builder
	b.WriteByte('{')
	switch {
	case f.Name == "":
		b.WriteByte('*')
	case f.AnyVer:
		b.WriteString(Glob(f.Name))
		b.WriteString("@*")
	default:
		b.WriteString(Glob(f.Name + "@" + strconv.FormatUint(uint64(f.Version), 10)))
	}
	if f.ID == "" {
		if f.Name != "" && !f.AnyVer {
			b.WriteString(":*")
		}
		return b.String()
	}
	b.WriteByte(':')
	b.WriteString(Glob(Segment(f.Scope, f.ID)))
	b.WriteString("}:*")
	return b.String()
}

// HashTag returns the hash tag every entry f matches shares, if there is
// one (a resource version in one scope), so that a cluster needs to scan
// only the master of its slot.
func (f Filter) HashTag() (string, bool) {
	if f.Name == "" || f.AnyVer || f.ID == "" {
		return "", false
	}
	return "{" + f.Name + "@" + strconv.FormatUint(uint64(f.Version), 10) + ":" + Segment(f.Scope, f.ID) + "}", true
}

// Match reports whether the parsed key k is an entry f selects.
func (f Filter) Match(k *Key) bool {
	if k.Type != Entry {
		return false
	}
	if f.Name != "" && (k.Name != f.Name || !f.AnyVer && k.Version != f.Version) {
		return false
	}
	if f.ID != "" && (k.Scope != f.Scope || k.Seg() != Segment(f.Scope, f.ID)) {
		return false
	}
	return true
}

// The envelope every L2 value travels in is a record of package tier (its
// header orders writes against invalidations) with the cache's fields
// after it:
//
//	byte 0      magic 0xA5 (tier's record header)
//	byte 1      kind: 1 value, 2 "not found" marker, 3 tombstone
//	bytes 2-9   stamp: the store's clock, microseconds, when the load that
//	            produced it began (a tombstone: when it was made)
//	bytes 10-17 generation: the entry's epochs mixed by [Token] (0 for a
//	            tombstone)
//	bytes 18-25 fresh until, Unix milliseconds, big endian (0: none)
//	bytes 26-29 cost: how long the tool ran to produce it, microseconds,
//	            big endian, saturating (0: unknown)
//	bytes 30-37 origin: the record's stamp as its writer made it, before a
//	            store restamped it (a Set's, or a load's start), big endian
//	bytes 38-53 tag: binds the envelope to its key (see [Sealer])
//	bytes 54-   payload (the codec's bytes; empty for a marker, or the
//	            tool's "not found" message)
//
// A tombstone is the 18-byte header alone. The freshness time lets an
// instance that reads the entry give its L1 copy the same remaining life,
// and lets a stale window tell fresh from stale. The cost lets any instance
// that serves the entry say how much tool time it saved, even one that never
// ran the tool. Anything that does not parse is treated by the cache as a
// miss (and overwritten by the next write).
const (
	// HeaderLen is the length of the envelope's header.
	HeaderLen = tier.RecordHeaderLen + 20 + TagLen
	// TagLen is the length of the tag that binds an envelope to its key.
	TagLen = 16
)

// Envelope kinds.
const (
	KindValue     = byte(tier.KindValue)
	KindNotFound  = byte(tier.KindMarker)
	KindTombstone = byte(tier.KindTombstone)
)

// ErrEnvelope reports bytes that are not an agentcache value envelope.
var ErrEnvelope = errors.New("not an agentcache value envelope")

// Envelope is an opened L2 value.
type Envelope struct {
	Kind       byte          // KindValue, KindNotFound or KindTombstone
	Stamp      int64         // the record's stamp (see package tier)
	Gen        uint64        // the record's generation: its epochs' [Token]
	Origin     int64         // the stamp its writer gave it (a store may restamp a record)
	FreshUntil time.Time     // zero: no expiry recorded
	Cost       time.Duration // the tool run that produced it; 0: unknown
	Tag        [TagLen]byte  // binds it to its key (see Sealer); zero when only the first part of the header was read
	Payload    []byte        // the codec's bytes (empty for a marker, or when only the header was read)
}

// OpenEnvelope parses b, which may be just the header, without checking its
// tag: for tools that show what L2 holds. The cache opens envelopes with
// [Sealer.Open].
func OpenEnvelope(b []byte) (Envelope, error) {
	r, ok := tier.ParseRecord(b)
	if !ok {
		return Envelope{}, ErrEnvelope
	}
	kind, rest := r.Kind, r.Payload
	if kind == tier.KindFencedValue { // a value whose stamp is a fence (see package tier)
		kind = tier.KindValue
	}
	e := Envelope{Kind: byte(kind), Stamp: r.Stamp, Gen: r.Gen}
	if kind == tier.KindTombstone {
		return e, nil
	}
	if len(rest) < 20 {
		return Envelope{}, ErrEnvelope
	}
	if ms := int64(binary.BigEndian.Uint64(rest[:8])); ms != 0 {
		e.FreshUntil = time.UnixMilli(ms)
	}
	e.Cost = time.Duration(binary.BigEndian.Uint32(rest[8:12])) * time.Microsecond
	e.Origin = int64(binary.BigEndian.Uint64(rest[12:20]))
	if len(rest) < 20+TagLen {
		if len(rest) == 20 { // a header cut short by a reader of only its first part
			return e, nil
		}
		return Envelope{}, ErrEnvelope
	}
	copy(e.Tag[:], rest[20:20+TagLen])
	e.Payload = rest[20+TagLen:]
	return e, nil
}

// ErrUnbound reports an envelope whose tag does not match the key it was
// read from: written for another key (copied, or planted), or without the
// application's secret.
var ErrUnbound = errors.New("an L2 value not written for its key")

// A Sealer makes and checks the tags that bind envelopes to their keys.
//
// Without a secret, a tag is a hash of the key alone: it catches a value
// copied to another key (by an operator, a script or a bug), not a forgery
// by someone who can write Redis and knows this layout. With the
// application's secret, a tag is an HMAC-SHA256 of the key and of
// everything in the envelope its writer chose (kind, generation, expiry,
// cost, origin, payload; not the stamp, which a store rewrites): without
// the secret, nobody can make an envelope a reader accepts. Tombstones
// carry no tag: a forged one only makes a miss.
type Sealer struct {
	keyed bool
	pool  sync.Pool // of *tagger
}

// tagger is the scratch of one tag computation: the bytes hashed before the
// payload, and with a secret, the HMAC and its sum. Pooled, so that a tag
// check (one per L2 hit) allocates nothing.
type tagger struct {
	buf []byte
	mac stdhash.Hash // nil without a secret
	sum [sha256.Size]byte
}

// maxTaggerBuf bounds the scratch a pooled tagger keeps.
const maxTaggerBuf = 8 << 10

// NewSealer returns the Sealer for secret (nil or empty: unkeyed).
func NewSealer(secret []byte) *Sealer {
	s := &Sealer{keyed: len(secret) > 0}
	if !s.keyed {
		s.pool.New = func() any { return &tagger{buf: make([]byte, 0, 256)} }
		return s
	}
	// A subkey of its own, so that the secret's other uses never see
	// tags made with it.
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("agentcache entry tag v1"))
	sub := m.Sum(nil)
	s.pool.New = func() any { return &tagger{buf: make([]byte, 0, 256), mac: hmac.New(sha256.New, sub)} }
	return s
}

// Keyed reports whether s has a secret.
func (s *Sealer) Keyed() bool { return s.keyed }

// Append appends to dst the envelope of payload, of generation gen, bound
// to key.
func (s *Sealer) Append(dst []byte, key string, kind byte, stamp int64, gen uint64, freshUntil time.Time, cost time.Duration, payload []byte) []byte {
	var ms int64
	if !freshUntil.IsZero() {
		ms = freshUntil.UnixMilli()
	}
	us := min(max(cost.Microseconds(), 0), math.MaxUint32)
	start := len(dst)
	dst = tier.AppendRecord(dst, tier.Kind(kind), stamp, gen, nil)
	dst = binary.BigEndian.AppendUint64(dst, uint64(ms))
	dst = binary.BigEndian.AppendUint32(dst, uint32(us))
	dst = binary.BigEndian.AppendUint64(dst, uint64(stamp))
	var tag [TagLen]byte
	s.tag(&tag, key, kind, dst[start:], payload)
	dst = append(dst, tag[:]...)
	return append(dst, payload...)
}

// Open parses b, read from key, and checks its tag: [ErrEnvelope] if it is
// not an envelope, [ErrUnbound] if it was not written for key (with this
// Sealer's secret). A tombstone has no tag to check.
func (s *Sealer) Open(key string, b []byte) (Envelope, error) {
	e, err := OpenEnvelope(b)
	if err != nil || e.Kind == KindTombstone {
		return e, err
	}
	if len(b) < HeaderLen {
		return Envelope{}, ErrEnvelope
	}
	var tag [TagLen]byte
	s.tag(&tag, key, e.Kind, b[:HeaderLen-TagLen], e.Payload)
	if !hmac.Equal(tag[:], e.Tag[:]) {
		return Envelope{}, ErrUnbound
	}
	return e, nil
}

// tag computes the tag of an envelope for key whose header, before the
// tag, is head. kind is the writer's (a store may turn a value into a fenced
// value).
func (s *Sealer) tag(dst *[TagLen]byte, key string, kind byte, head, payload []byte) {
	t := s.pool.Get().(*tagger)
	b := binary.AppendUvarint(t.buf[:0], uint64(len(key)))
	b = append(b, key...)
	if s.keyed {
		// Everything the writer chose, in the header: bytes 10- (the
		// generation on); the stamp (2-9) is the store's to rewrite.
		b = append(b, kind)
		b = append(b, head[10:]...)
		t.mac.Reset()
		t.mac.Write(b)
		t.mac.Write(payload)
		copy(dst[:], t.mac.Sum(t.sum[:0]))
	} else {
		b = append(b, "agentcache key tag v1"...)
		t.sum = sha256.Sum256(b)
		copy(dst[:], t.sum[:])
	}
	if cap(b) <= maxTaggerBuf {
		t.buf = b[:0]
	}
	s.pool.Put(t)
}
