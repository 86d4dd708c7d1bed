package keyspace

import (
	"math"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/scope"
	"github.com/agentcache/agentcache-go/tier"
)

const (
	tok  = "00000000000000ff"
	hash = "AbCdEfGhIjKlMnOpQrSt-_"
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
		{"{w.x-y@42:g:" + hash + "}:" + tok, Key{Type: Entry, Resource: "w.x-y@42", Name: "w.x-y", Version: 42, Scope: scope.Global, Token: 255, Hash: hash}},
		{"{get_cart@1:u:bob}:" + tok + ":" + hash, Key{Type: Entry, Resource: "get_cart@1", Name: "get_cart", Version: 1, Scope: scope.User, EscID: "bob", Token: 255, Hash: hash}},
		{"{n@0:s:s%2F1}:" + tok + ":" + hash, Key{Type: Entry, Resource: "n@0", Name: "n", Version: 0, Scope: scope.Session, EscID: "s%2F1", Token: 255, Hash: hash}},
		{"kv:{" + tok + ":any:key{}}", Key{Type: KVEntry, Token: 255, KVKey: "any:key{}"}},
		{"lk:kv:{" + tok + ":k}", Key{Type: Lease, Token: 255, KVKey: "k", Leased: "kv:{" + tok + ":k}"}},
		{"lk:{get_cart@1:u:bob}:" + tok + ":" + hash, Key{Type: Lease, Resource: "get_cart@1", Name: "get_cart", Version: 1, Scope: scope.User, EscID: "bob", Token: 255, Hash: hash, Leased: "{get_cart@1:u:bob}:" + tok + ":" + hash}},
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
		"{get_cart@1:g:" + hash + "}:" + tok + ":" + hash, "{get_cart@1:g:short}:" + tok,
		"{get_cart@1:u:bob}:" + tok, "{get_cart@1:u:bob}:" + "00000000000000FF" + ":" + hash,
		"{get_cart@1:u:bob}:" + tok + ":" + hash + "x", "{get_cart@1:u:bo b}:" + tok + ":" + hash,
		"kv:{" + tok, "kv:{" + tok + ":}", "kv:{" + tok + ":k", "kv:" + tok + ":k", "kv:{123:k}", "lk:", "lk:ep:g", "lk:lk:kv:{" + tok + ":k}", "other",
	} {
		if got := Parse(bad); got.Type != Unknown {
			t.Errorf("Parse(%q) = %+v, want Unknown", bad, got)
		}
	}
}

func TestIDsRoundTrip(t *testing.T) {
	for _, id := range []string{"alice", "team:{a}", "a}b{c", "x%41", "ünïcode", "*?[]\\", "a@b.c"} {
		seg := Segment(scope.User, id)
		k := Parse("{r@1:" + seg + "}:" + tok + ":" + hash)
		if k.Type != Entry || k.ID() != id || k.Seg() != seg {
			t.Errorf("ID %q: seg %q parsed as %+v (ID %q)", id, seg, k, k.ID())
		}
	}
}

func TestEpochKeys(t *testing.T) {
	k := Parse("{r@1:u:bob}:" + tok + ":" + hash)
	want := []string{"ep:g", "ep:r:r@1", "ep:s:u:bob", "{r@1:u:bob}:ep"}
	if got := k.EpochKeys(); len(got) != 4 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] || got[3] != want[3] {
		t.Errorf("scoped: %q", got)
	}
	g := Parse("{r@1:g:" + hash + "}:" + tok)
	if got := g.EpochKeys(); len(got) != 2 || got[1] != "ep:r:r@1" {
		t.Errorf("global: %q", got)
	}
	kv := Parse("kv:{" + tok + ":k}")
	if got := kv.EpochKeys(); len(got) != 1 || got[0] != "ep:g" {
		t.Errorf("kv: %q", got)
	}
}

func TestToken(t *testing.T) {
	if Token(1, 2) == Token(2, 1) || Token(1) == Token(1, 0) {
		t.Error("Token must depend on order and count")
	}
	if Token(7, 8, 9) != Token(7, 8, 9) {
		t.Error("Token is not deterministic")
	}
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
	team := Parse("{get_cart@1:u:team}:" + tok + ":" + hash)
	teamA := Parse("{get_cart@1:u:team%3A%7Ba%7D}:" + tok + ":" + hash)
	f := Filter{Scope: scope.User, ID: "team:{a}"}
	if f.Match(&team) || !f.Match(&teamA) {
		t.Error("a filter for user team:{a} must match only that user")
	}
	v2 := Parse("{get_cart@2:u:team}:" + tok + ":" + hash)
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
	b := AppendEnvelope(nil, KindNotFound, 42, fresh, 1500*time.Microsecond, nil)
	e, err := OpenEnvelope(b)
	if err != nil || e.Kind != KindNotFound || e.Stamp != 42 || !e.FreshUntil.Equal(fresh) || e.Cost != 1500*time.Microsecond || len(e.Payload) != 0 {
		t.Errorf("marker: %+v, %v", e, err)
	}
	b = AppendEnvelope(nil, KindValue, 1<<52, time.Time{}, 100*time.Hour, []byte(`{"a":1}`))
	e, err = OpenEnvelope(b)
	if err != nil || e.Kind != KindValue || e.Stamp != 1<<52 || e.Origin != 1<<52 || string(e.Payload) != `{"a":1}` || !e.FreshUntil.IsZero() {
		t.Errorf("value: %+v, %v", e, err)
	}
	// A fenced value, as a store writes it, opens as a value.
	fenced, err := OpenEnvelope(tier.Rewrite(b, tier.KindFencedValue, 9))
	if err != nil || fenced.Kind != KindValue || fenced.Stamp != 9 || fenced.Origin != 1<<52 || string(fenced.Payload) != `{"a":1}` {
		t.Errorf("fenced value: %+v, %v", fenced, err)
	}
	tomb, err := OpenEnvelope(tier.AppendRecord(nil, tier.KindTombstone, 7, nil))
	if err != nil || tomb.Kind != KindTombstone || tomb.Stamp != 7 {
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
