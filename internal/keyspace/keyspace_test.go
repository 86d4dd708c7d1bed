package keyspace

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/scope"
	"github.com/agentcache/agentcache-go/tier"
)

// hash is an argument hash; tok is the 16-hex-digit epoch token keys
// carried before generations moved into the records, so that keys of the
// old layout can be checked to be Unknown.
const (
	hash = "AbCdEfGhIjKlMnOpQrSt-_"
	tok  = "00000000000000ff"
)

func TestParse(t *testing.T) {
	cases := []struct {
		key  string
		want Key
	}{
		{"ep:g", Key{Type: EpochGlobal}},
		{"ep:r:get_cart@1", Key{Type: EpochResource, Resource: "get_cart@1", Name: "get_cart", Version: 1}},
		{"ep:s:u:team%3A%7Ba%7D", Key{Type: EpochScope, Scope: scope.User, EscID: "team%3A%7Ba%7D"}},
		{"ep:s:s:abc", Key{Type: EpochScope, Scope: scope.Session, EscID: "abc"}},
		{"{get_cart@1:u:bob}:ep", Key{Type: EpochResourceScope, Resource: "get_cart@1", Name: "get_cart", Version: 1, Scope: scope.User, EscID: "bob"}},
		{"{w.x-y@42:g:" + hash + "}", Key{Type: Entry, Resource: "w.x-y@42", Name: "w.x-y", Version: 42, Scope: scope.Global, Hash: hash}},
		{"{get_cart@1:u:bob}:" + hash, Key{Type: Entry, Resource: "get_cart@1", Name: "get_cart", Version: 1, Scope: scope.User, EscID: "bob", Hash: hash}},
		{"{n@0:s:s%2F1}:" + hash, Key{Type: Entry, Resource: "n@0", Name: "n", Version: 0, Scope: scope.Session, EscID: "s%2F1", Hash: hash}},
		{"kv:{any:key{}}", Key{Type: KVEntry, KVKey: "any:key{}"}},
		{"kv:{a}b}", Key{Type: KVEntry, KVKey: "a}b"}},
		{"kv:{k}", Key{Type: KVEntry, KVKey: "k"}},
		{"lk:kv:{k}", Key{Type: Lease, KVKey: "k", Leased: "kv:{k}"}},
		{"lk:{get_cart@1:u:bob}:" + hash, Key{Type: Lease, Resource: "get_cart@1", Name: "get_cart", Version: 1, Scope: scope.User, EscID: "bob", Hash: hash, Leased: "{get_cart@1:u:bob}:" + hash}},
		{"lk:{w.x-y@42:g:" + hash + "}", Key{Type: Lease, Resource: "w.x-y@42", Name: "w.x-y", Version: 42, Scope: scope.Global, Hash: hash, Leased: "{w.x-y@42:g:" + hash + "}"}},
	}
	for _, tc := range cases {
		if got := Parse(tc.key); got != tc.want {
			t.Errorf("Parse(%q) = %+v, want %+v", tc.key, got, tc.want)
		}
	}
	for _, bad := range []string{
		"", "ep:", "ep:gg", "ep:r:", "ep:r:get_cart", "ep:r:get_cart@01", "ep:r:1abc@1", "ep:r:a@4294967296",
		"ep:s:x:abc", "ep:s:u:", "ep:s:u:a%3a", "ep:s:u:a:b", "ep:s:u:%41",
		"{get_cart@1:u:bob}", "{get_cart@1:u:bob}:ep:", "{get_cart@1:x:bob}:ep", "{get_cart:u:bob}:ep",
		"{get_cart@1:g:" + hash + "}:" + hash, "{get_cart@1:g:" + hash + "}:", "{get_cart@1:g:short}", "{get_cart@1:g:" + hash + "x}",
		"{get_cart@1:u:bob}:", "{get_cart@1:u:bob}:short", "{get_cart@1:u:bob}:" + hash[:21] + "+",
		"{get_cart@1:u:bob}:" + hash + "x", "{get_cart@1:u:bo b}:" + hash, "{get_cart:u:bob}:" + hash,
		// Entries of the old layout, with the epoch token in the key.
		"{get_cart@1:g:" + hash + "}:" + tok, "{get_cart@1:u:bob}:" + tok + ":" + hash,
		"lk:{get_cart@1:u:bob}:" + tok + ":" + hash,
		"kv:{", "kv:{}", "kv:{k", "kv:k", "kv:k}", "lk:", "lk:ep:g", "lk:kv:{}", "lk:lk:kv:{k}", "other",
	} {
		if got := Parse(bad); got.Type != Unknown {
			t.Errorf("Parse(%q) = %+v, want Unknown", bad, got)
		}
	}
}

// TestKeysRoundTrip parses every type of key as the library builds it.
func TestKeysRoundTrip(t *testing.T) {
	seg := Segment(scope.User, "team:{a}")
	entries := []struct {
		id, seg, tail string
		want          Key
	}{
		{"", "", "any:key{}", Key{Type: KVEntry, KVKey: "any:key{}"}},
		{"", "", "k}", Key{Type: KVEntry, KVKey: "k}"}},
		{"w.x-y@42", "", hash, Key{Type: Entry, Resource: "w.x-y@42", Name: "w.x-y", Version: 42, Scope: scope.Global, Hash: hash}},
		{"get_cart@1", seg, hash, Key{Type: Entry, Resource: "get_cart@1", Name: "get_cart", Version: 1, Scope: scope.User, EscID: "team%3A%7Ba%7D", Hash: hash}},
		{"n@0", Segment(scope.Session, "s/1"), hash, Key{Type: Entry, Resource: "n@0", Name: "n", Scope: scope.Session, EscID: "s%2F1", Hash: hash}},
	}
	for _, e := range entries {
		key := string(AppendEntryKey([]byte("junk"), e.id, e.seg, e.tail)[len("junk"):])
		if got := Parse(key); got != e.want {
			t.Errorf("Parse(AppendEntryKey(%q, %q, %q)) = Parse(%q) = %+v, want %+v", e.id, e.seg, e.tail, key, got, e.want)
		}
		lease := LeaseKey(key)
		want := e.want
		want.Type, want.Leased = Lease, key
		if got := Parse(lease); got != want {
			t.Errorf("Parse(%q) = %+v, want %+v", lease, got, want)
		}
		if LeaseEntry(lease) != key {
			t.Errorf("LeaseEntry(%q) = %q, want %q", lease, LeaseEntry(lease), key)
		}
	}
	epochs := []struct {
		key  string
		want Key
	}{
		{GlobalEpochKey, Key{Type: EpochGlobal}},
		{ResourceEpochKey("get_cart@1"), Key{Type: EpochResource, Resource: "get_cart@1", Name: "get_cart", Version: 1}},
		{ScopeEpochKey(seg), Key{Type: EpochScope, Scope: scope.User, EscID: "team%3A%7Ba%7D"}},
		{ResourceScopeEpochKey("get_cart@1", seg), Key{Type: EpochResourceScope, Resource: "get_cart@1", Name: "get_cart", Version: 1, Scope: scope.User, EscID: "team%3A%7Ba%7D"}},
	}
	for _, e := range epochs {
		if got := Parse(e.key); got != e.want {
			t.Errorf("Parse(%q) = %+v, want %+v", e.key, got, e.want)
		}
	}
}

func TestIDsRoundTrip(t *testing.T) {
	// "\u212aelvin" starts with the Kelvin sign, which Unicode case folding
	// takes for 'k': it must keep a segment of its own.
	ids := []string{"alice", "team:{a}", "a}b{c", "x%41", "ünïcode", "*?[]\\", "a@b.c", "\u212aelvin", "kelvin", "Kelvin"}
	segs := map[string]string{}
	for _, id := range ids {
		seg := Segment(scope.User, id)
		if other, dup := segs[seg]; dup {
			t.Errorf("IDs %q and %q share the segment %q", other, id, seg)
		}
		segs[seg] = id
		k := Parse("{r@1:" + seg + "}:" + hash)
		if k.Type != Entry || k.ID() != id || k.Seg() != seg {
			t.Errorf("ID %q: seg %q parsed as %+v (ID %q)", id, seg, k, k.ID())
		}
		if e := Parse(ScopeEpochKey(seg)); e.Type != EpochScope || e.ID() != id {
			t.Errorf("ID %q: scope epoch parsed as %+v", id, e)
		}
	}
}

func TestEpochKeys(t *testing.T) {
	k := Parse("{r@1:u:bob}:" + hash)
	want := []string{"ep:g", "ep:r:r@1", "ep:s:u:bob", "{r@1:u:bob}:ep"}
	if got := k.EpochKeys(); len(got) != 4 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] || got[3] != want[3] {
		t.Errorf("scoped: %q", got)
	}
	g := Parse("{r@1:g:" + hash + "}")
	if got := g.EpochKeys(); len(got) != 2 || got[0] != "ep:g" || got[1] != "ep:r:r@1" {
		t.Errorf("global: %q", got)
	}
	kv := Parse("kv:{k}")
	if got := kv.EpochKeys(); len(got) != 1 || got[0] != "ep:g" {
		t.Errorf("kv: %q", got)
	}
	if got := Parse("ep:g"); got.EpochKeys() != nil {
		t.Errorf("an epoch key has epoch keys: %q", got.EpochKeys())
	}
}

func TestToken(t *testing.T) {
	if Token(1, 2) == Token(2, 1) || Token(1) == Token(1, 0) {
		t.Error("Token must depend on order and count")
	}
	if Token(7, 8, 9) != Token(7, 8, 9) {
		t.Error("Token is not deterministic")
	}
	// 0 is a tombstone's generation: no epochs may mix to it. Mixing in
	// the state reached so far makes the unguarded mix 0 (the xor gives 0,
	// and the multiply and the xor-shift keep it), so these are the values
	// that would.
	if Token(7, 8, 9) != unguardedMix(7, 8, 9) || Token() != unguardedMix() {
		t.Fatal("unguardedMix is not Token's mix any more")
	}
	zero := [][]uint64{{Token()}, {1, Token(1)}, {5, 6, 7, Token(5, 6, 7)}}
	for _, vals := range zero {
		if unguardedMix(vals...) != 0 {
			t.Fatalf("%v does not mix to 0 unguarded: the test no longer exercises the guard", vals)
		}
	}
	for _, vals := range append(zero, nil, []uint64{0}, []uint64{0, 0, 0, 0}, []uint64{math.MaxUint64}) {
		if got := Token(vals...); got == 0 {
			t.Errorf("Token(%v) = 0", vals)
		}
	}
}

// unguardedMix is Token without its guard against 0.
func unguardedMix(vals ...uint64) uint64 {
	h := uint64(0x9E3779B97F4A7C15)
	for _, v := range vals {
		h ^= v
		h *= 0xBF58476D1CE4E5B9
		h ^= h >> 31
	}
	return h
}

func TestGlob(t *testing.T) {
	if got, want := Glob(`a*b?c[d]e\f`), `a\*b\?c\[d\]e\\f`; got != want {
		t.Errorf("Glob = %q, want %q", got, want)
	}
	if Glob("plain:") != "plain:" {
		t.Error("Glob changed a plain string")
	}
}

func TestFilter(t *testing.T) {
	cases := []struct {
		f       Filter
		pattern string
		tag     string
	}{
		{Filter{Name: "get_cart", Version: 1}, "{get_cart@1:*", ""},
		{Filter{Name: "get_cart", AnyVer: true}, "{get_cart@*", ""},
		{Filter{Scope: scope.User, ID: "team:{a}"}, "{*:u:team%3A%7Ba%7D}:*", ""},
		{Filter{Name: "get_cart", Version: 1, Scope: scope.User, ID: "bob"}, "{get_cart@1:u:bob}:*", "{get_cart@1:u:bob}"},
		{Filter{Name: "n", AnyVer: true, Scope: scope.Session, ID: "s"}, "{n@*:s:s}:*", ""},
	}
	for _, tc := range cases {
		if got := tc.f.Pattern(); got != tc.pattern {
			t.Errorf("%+v: pattern %q, want %q", tc.f, got, tc.pattern)
		}
		if got, _ := tc.f.HashTag(); got != tc.tag {
			t.Errorf("%+v: tag %q, want %q", tc.f, got, tc.tag)
		}
	}
	team := Parse("{get_cart@1:u:team}:" + hash)
	teamA := Parse("{get_cart@1:u:team%3A%7Ba%7D}:" + hash)
	f := Filter{Scope: scope.User, ID: "team:{a}"}
	if f.Match(&team) || !f.Match(&teamA) {
		t.Error("a filter for user team:{a} must match only that user")
	}
	v2 := Parse("{get_cart@2:u:team}:" + hash)
	if (Filter{Name: "get_cart", Version: 1}).Match(&v2) || !(Filter{Name: "get_cart", AnyVer: true}).Match(&v2) {
		t.Error("version filtering")
	}
	ep := Parse("{get_cart@1:u:team}:ep")
	if (Filter{Name: "get_cart", Version: 1}).Match(&ep) {
		t.Error("a filter matched an epoch key")
	}
}

func TestOpenEnvelope(t *testing.T) {
	fresh := time.UnixMilli(1_700_000_000_000)
	gen := Token(1, 2, 3, 4)
	b := testSealer.Append(nil, "k", KindNotFound, 42, gen, fresh, 1500*time.Microsecond, nil)
	e, err := OpenEnvelope(b)
	if err != nil || e.Kind != KindNotFound || e.Stamp != 42 || e.Gen != gen || !e.FreshUntil.Equal(fresh) || e.Cost != 1500*time.Microsecond || len(e.Payload) != 0 {
		t.Errorf("marker: %+v, %v", e, err)
	}
	if len(b) != HeaderLen {
		t.Errorf("a marker is %d bytes, want the %d-byte header", len(b), HeaderLen)
	}
	b = testSealer.Append(nil, "k", KindValue, 1<<52, math.MaxUint64, time.Time{}, 100*time.Hour, []byte(`{"a":1}`))
	e, err = OpenEnvelope(b)
	if err != nil || e.Kind != KindValue || e.Stamp != 1<<52 || e.Gen != math.MaxUint64 || e.Origin != 1<<52 || string(e.Payload) != `{"a":1}` || !e.FreshUntil.IsZero() {
		t.Errorf("value: %+v, %v", e, err)
	}
	// A fenced value, as a store writes it, opens as a value of the same
	// generation.
	fenced, err := OpenEnvelope(tier.Rewrite(b, tier.KindFencedValue, 9))
	if err != nil || fenced.Kind != KindValue || fenced.Stamp != 9 || fenced.Gen != math.MaxUint64 || fenced.Origin != 1<<52 || string(fenced.Payload) != `{"a":1}` {
		t.Errorf("fenced value: %+v, %v", fenced, err)
	}
	tomb, err := OpenEnvelope(tier.AppendRecord(nil, tier.KindTombstone, 7, 0, nil))
	if err != nil || tomb.Kind != KindTombstone || tomb.Stamp != 7 || tomb.Gen != 0 {
		t.Errorf("tombstone: %+v, %v", tomb, err)
	}
	if max := time.Duration(math.MaxUint32) * time.Microsecond; e.Cost != max {
		t.Errorf("a cost beyond the field saturates: got %v, want %v", e.Cost, max)
	}
	for _, bad := range [][]byte{nil, b[:HeaderLen-1], append([]byte{0xAB}, b[1:]...), append([]byte{0xA5, 9}, b[2:]...), b[:tier.RecordHeaderLen+3]} {
		if _, err := OpenEnvelope(bad); err == nil {
			t.Errorf("OpenEnvelope(%x) accepted", bad)
		}
	}
}

// TestEnvelopeGeneration checks that the generation survives the envelope
// whatever it is, sits where the operator CLI reads it (bytes 10-17, big
// endian: GETRANGE key 10 17) and is the tier record's generation.
func TestEnvelopeGeneration(t *testing.T) {
	gens := []uint64{1, 0xff, 1 << 63, math.MaxUint64, Token(), Token(0), Token(3, 1, 4, 1), 0x0102030405060708}
	for _, kind := range []byte{KindValue, KindNotFound} {
		for _, gen := range gens {
			b := testSealer.Append([]byte("junk"), "k", kind, 1234, gen, time.UnixMilli(99), time.Second, []byte("payload"))[len("junk"):]
			e, err := OpenEnvelope(b)
			if err != nil || e.Gen != gen || e.Kind != kind || e.Stamp != 1234 || e.Origin != 1234 || string(e.Payload) != "payload" {
				t.Errorf("kind %d gen %#x: %+v, %v", kind, gen, e, err)
			}
			if got := binary.BigEndian.Uint64(b[10:18]); got != gen {
				t.Errorf("kind %d gen %#x: bytes 10-17 hold %#x", kind, gen, got)
			}
			if r, ok := tier.ParseRecord(b); !ok || r.Gen != gen || r.Stamp != 1234 {
				t.Errorf("kind %d gen %#x: tier record %+v, %v", kind, gen, r, ok)
			}
			// Only the header, as a reader that skips the payload gets it.
			if h, err := OpenEnvelope(b[:HeaderLen]); err != nil || h.Gen != gen || len(h.Payload) != 0 {
				t.Errorf("kind %d gen %#x: header alone: %+v, %v", kind, gen, h, err)
			}
			// A store's restamp keeps the generation.
			if f, err := OpenEnvelope(tier.Restamp(b, 5678)); err != nil || f.Gen != gen || f.Stamp != 5678 {
				t.Errorf("kind %d gen %#x: restamped: %+v, %v", kind, gen, f, err)
			}
		}
	}
}

var testSealer = NewSealer(nil)

// TestSealerBindsEnvelopesToKeys: an envelope opens only under the key it
// was written for; with a secret, also only unchanged and only with that
// secret. A store's restamp (or fencing) of the record keeps it valid.
func TestSealerBindsEnvelopesToKeys(t *testing.T) {
	secret := []byte("0123456789abcdef0123")
	keyed, other, plain := NewSealer(secret), NewSealer([]byte("another secret of 16+")), NewSealer(nil)
	fresh := time.UnixMilli(1_700_000_000_000)
	for _, s := range []*Sealer{plain, keyed} {
		for _, kind := range []byte{KindValue, KindNotFound} {
			b := s.Append(nil, "{r@0:u:alice}:h", kind, 7, 42, fresh, time.Second, []byte(`{"cart":["a"]}`))
			if _, err := s.Open("{r@0:u:alice}:h", b); err != nil {
				t.Fatalf("keyed=%v kind %d: own key: %v", s.Keyed(), kind, err)
			}
			if _, err := s.Open("{r@0:u:bob}:h", b); !errors.Is(err, ErrUnbound) {
				t.Errorf("keyed=%v kind %d: opened under another user's key: %v", s.Keyed(), kind, err)
			}
			if _, err := s.Open("{r@0:u:alice}:h", tier.Restamp(b, 99)); err != nil {
				t.Errorf("keyed=%v: a restamped record: %v", s.Keyed(), err)
			}
			if kind == KindValue {
				if _, err := s.Open("{r@0:u:alice}:h", tier.Rewrite(b, tier.KindFencedValue, 9)); err != nil {
					t.Errorf("keyed=%v: a fenced record: %v", s.Keyed(), err)
				}
			}
		}
	}
	b := keyed.Append(nil, "k", KindValue, 7, 42, fresh, time.Second, []byte(`"v"`))
	for name, bad := range map[string][]byte{
		"payload":     append(append([]byte{}, b[:len(b)-2]...), 'w', '"'),
		"fresh until": setByte(b, 20, b[20]+1),
		"generation":  setByte(b, 12, b[12]+1),
		"kind":        setByte(b, 1, KindNotFound),
	} {
		if _, err := keyed.Open("k", bad); !errors.Is(err, ErrUnbound) {
			t.Errorf("a changed %s opened with the secret: %v", name, err)
		}
	}
	if _, err := other.Open("k", b); !errors.Is(err, ErrUnbound) {
		t.Errorf("opened with another secret: %v", err)
	}
	if _, err := plain.Open("k", b); !errors.Is(err, ErrUnbound) {
		t.Errorf("a keyed envelope opened without the secret: %v", err)
	}
	if _, err := keyed.Open("k", plain.Append(nil, "k", KindValue, 7, 42, fresh, 0, []byte(`"v"`))); !errors.Is(err, ErrUnbound) {
		t.Errorf("an unkeyed envelope opened with the secret: %v", err)
	}
}

func setByte(b []byte, i int, v byte) []byte {
	c := append([]byte{}, b...)
	c[i] = v
	return c
}

// TestTagsAreStable pins the tags' bytes, without and with a secret:
// entries written by an instance of another build must keep opening (the
// L2 layout).
func TestTagsAreStable(t *testing.T) {
	plain, keyed := NewSealer(nil), NewSealer([]byte("0123456789abcdef0123"))
	for _, c := range []struct {
		s        *Sealer
		key, tag string
	}{
		{plain, "{get_cart@1:u:alice}:3f2a", "3193d3e4b23e4404160735946b01fcf6"},
		{plain, "", "a6d162c5827eef921315899f1a13093e"},
		{plain, strings.Repeat("k", 300), "b8df47333c144deaaf25e5f7ea2c9a88"},
		{keyed, "{get_cart@1:u:alice}:3f2a", "fce9d7c3beb5f136f94d50df56b54089"},
		{keyed, strings.Repeat("k", 300), "0e7450bb226070489f3a8af7a0de5b81"},
	} {
		s := c.s
		b := s.Append(nil, c.key, KindValue, 1, 2, time.UnixMilli(1_700_000_000_000), time.Second, []byte(`"v"`))
		e, err := s.Open(c.key, b)
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(e.Tag[:]); got != c.tag {
			t.Errorf("tag of %.20q = %s, want %s", c.key, got, c.tag)
		}
	}
}

// BenchmarkSealerOpen is one L2 value's tag check, as every L2 hit makes it.
func BenchmarkSealerOpen(b *testing.B) {
	for _, bc := range []struct {
		name   string
		secret []byte
	}{{"unkeyed", nil}, {"keyed", []byte("0123456789abcdef0123")}} {
		b.Run(bc.name, func(b *testing.B) {
			s := NewSealer(bc.secret)
			key := "{get_cart@1:u:alice}:3f2a9c1be07d4a55"
			env := s.Append(nil, key, KindValue, 7, 42, time.Time{}, time.Second, []byte(`{"user":"alice","items":["a","b","c"]}`))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Open(key, env); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
