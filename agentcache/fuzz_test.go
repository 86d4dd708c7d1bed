package agentcache_test

// Fuzz targets of the reliability suite (issue 10), through the public API:
// key building from resource names and scope IDs, and the decoding of what
// L2 holds. Their seed corpora (testdata/fuzz) run in every `go test`;
// `go test -fuzz=FuzzToolKeys ./agentcache` explores further.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/internal/keyspace"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
	"github.com/agentcache/agentcache-go/tier"
	"github.com/agentcache/agentcache-go/tier/fake"
)

// fzValidName is the resource name rule of resource.Resource, restated
// independently: 1 to 64 ASCII letters, digits, '_', '.', '-', starting with
// a letter.
var fzValidName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]{0,63}$`)

// fzCache opens a cache on remote, closed when the test ends. Its warnings
// are dropped: fuzzing produces many.
func fzCache(t *testing.T, remote *fake.Remote) *agentcache.Cache {
	t.Helper()
	c, err := agentcache.New(agentcache.Options{
		L2:     remote,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func fzBackend(t *testing.T) *fake.Backend {
	b := fake.NewBackend(fake.BackendOptions{SweepInterval: -1})
	t.Cleanup(func() { _ = b.Close() })
	return b
}

type fzAnswer struct {
	User string `json:"user"`
	Arg  string `json:"arg"`
}

// FuzzToolKeys wraps a tool under a fuzzed resource name and calls it for
// two fuzzed user IDs on two instances that share L2.
//
// It checks: Wrap accepts exactly the valid names; a call with an invalid ID
// fails with scope.ErrInvalid, and one with arguments that are not UTF-8
// with resource.ErrInvalidJSON, before the tool runs; a valid ID gets its own
// answer, on the instance that loaded it and from L2 on the other; two
// different IDs never share an entry (each runs the tool once) and
// invalidating one user's entries leaves the other's alone.
func FuzzToolKeys(f *testing.F) {
	f.Add("get_cart", "alice", "bob", "q")
	f.Add("get_cart", "A", "%41", "q")
	f.Add("a.b-c_d", "u:1", "u%3A1", "")
	f.Add("x", "a}b", "a%7Db", "{}")
	f.Add("", "alice", "alice", "q")
	f.Add("1abc", "alice", "bob", "q")
	f.Add("a{b}", "alice", "bob", "q")
	f.Add("a@1", "alice", "bob", "q")
	f.Add("a:b", "alice", "bob", "q")
	f.Add("abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijkl", "ü", "u\u0308", "q")
	f.Add("abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklm", "a", "b", "q")
	f.Add("tool", "a\x00b", "a b", "q")
	f.Add("tool", "\xff", "\xfe", "q")
	f.Add("tool", "user-1", "user-1\u200b", "q")
	f.Add("tool", "s:1", "1", "q")
	f.Fuzz(func(t *testing.T, name, id1, id2, arg string) {
		backend := fzBackend(t)
		a, b := fzCache(t, backend.Remote("fz:")), fzCache(t, backend.Remote("fz:"))
		res := resource.Resource{Name: name, Scope: scope.User, TTL: time.Minute}
		var mu sync.Mutex
		runs := map[string]int{}
		tool := func(ctx context.Context, q string) (fzAnswer, error) {
			u, ok := scope.UserFrom(ctx)
			if !ok {
				return fzAnswer{}, errors.New("tool ran without a user")
			}
			mu.Lock()
			runs[u]++
			mu.Unlock()
			return fzAnswer{User: u, Arg: q}, nil
		}
		getA, err := agentcache.Wrap(a, res, tool, agentcache.WriteThrough())
		if valid := fzValidName.MatchString(name); valid != (err == nil) {
			t.Fatalf("Wrap with name %q: %v; the name is valid: %v", name, err, valid)
		}
		if err != nil {
			return
		}
		getB, err := agentcache.Wrap(b, res, tool)
		if err != nil {
			t.Fatal(err)
		}
		call := func(get func(context.Context, string) (fzAnswer, error), id string) (fzAnswer, error) {
			return get(scope.WithUser(context.Background(), id), arg)
		}
		runsOf := func(id string) int {
			mu.Lock()
			defer mu.Unlock()
			return runs[id]
		}
		var valid []string
		for _, id := range []string{id1, id2} {
			got, err := call(getA, id)
			if scope.Validate(id) != nil {
				if !errors.Is(err, scope.ErrInvalid) || runsOf(id) != 0 {
					t.Fatalf("invalid ID %q: %+v, %v after %d runs; want scope.ErrInvalid before the tool", id, got, err, runsOf(id))
				}
				continue
			}
			if !utf8.ValidString(arg) {
				// Arguments that are not valid UTF-8 are refused (different
				// bytes would otherwise share one key).
				if !errors.Is(err, resource.ErrInvalidJSON) || runsOf(id) != 0 {
					t.Fatalf("argument %q: %+v, %v after %d runs; want resource.ErrInvalidJSON before the tool", arg, got, err, runsOf(id))
				}
				continue
			}
			if err != nil || got.User != id || got.Arg != arg {
				t.Fatalf("A for %q: %+v, %v", id, got, err)
			}
			valid = append(valid, id)
		}
		if len(valid) < 2 || id1 == id2 {
			return
		}
		// Each ID ran the tool once on A: nothing was shared.
		if runsOf(id1) != 1 || runsOf(id2) != 1 {
			t.Fatalf("tool runs %d for %q and %d for %q; want one each", runsOf(id1), id1, runsOf(id2), id2)
		}
		// B reads each from L2 (A wrote through), each its own.
		for _, id := range valid {
			if got, err := call(getB, id); err != nil || got.User != id {
				t.Fatalf("B for %q: %+v, %v", id, got, err)
			}
		}
		if n := runsOf(id1) + runsOf(id2); n != 2 || b.Stats().L2Hits != 2 {
			t.Fatalf("B: %d tool runs, %d L2 hits; want both answers from L2", n-2, b.Stats().L2Hits)
		}
		// Invalidating id1 leaves id2's entries, on both instances.
		if err := a.Invalidate(context.Background(), agentcache.TargetUser(id1)); err != nil {
			t.Fatal(err)
		}
		for _, get := range []func(context.Context, string) (fzAnswer, error){getA, getB} {
			if got, err := call(get, id2); err != nil || got.User != id2 {
				t.Fatalf("after invalidating %q: %+v, %v for %q", id1, got, err, id2)
			}
		}
		if runsOf(id2) != 1 {
			t.Fatalf("invalidating %q reloaded %q", id1, id2)
		}
		if got, err := call(getA, id1); err != nil || got.User != id1 || runsOf(id1) != 2 {
			t.Fatalf("after invalidating %q: %+v, %v after %d runs; want a reload", id1, got, err, runsOf(id1))
		}
	})
}

// fzRecorder is a fake.Remote that remembers the keys written with Set
// or WriteRecords, so the fuzz target can find the L2 key of an entry.
type fzRecorder struct {
	*fake.Remote
	mu   sync.Mutex
	keys []string
}

func (r *fzRecorder) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	r.mu.Lock()
	r.keys = append(r.keys, key)
	r.mu.Unlock()
	return r.Remote.Set(ctx, key, value, ttl)
}

func (r *fzRecorder) WriteRecords(ctx context.Context, writes []tier.RecordWrite) ([]tier.WriteResult, error) {
	r.mu.Lock()
	for _, w := range writes {
		r.keys = append(r.keys, w.Key)
	}
	r.mu.Unlock()
	return r.Remote.WriteRecords(ctx, writes)
}

func (r *fzRecorder) lastKey() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.keys) == 0 {
		return ""
	}
	return r.keys[len(r.keys)-1]
}

type fzProfile struct {
	Name  string              `json:"name"`
	Tags  []string            `json:"tags"`
	Score float64             `json:"score"`
	Quota map[string]int      `json:"quota"`
	Owner *struct{ Team int } `json:"owner"`
}

// FuzzL2Value puts fuzzed bytes in L2 as the value of an entry and reads
// the entry through a second instance. mode chooses how data is used: as
// the whole value (0), as the payload after the real header (1), to cut the
// real value short (2), or to flip bytes of the real value (3) — so that
// the fuzzer reaches the decoder past the header whatever its layout.
//
// It checks: no panic; the call returns the tool's value, a value decoded
// from L2 (then nothing was counted corrupt), or "not found" from a valid
// marker; an undecodable value is counted and deleted from L2.
func FuzzL2Value(f *testing.F) {
	f.Add([]byte{}, byte(0))
	f.Add([]byte("garbage"), byte(0))
	f.Add([]byte{0xAC, 0x01, 0x01}, byte(0))
	f.Add([]byte{0xAC, 0x01, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, byte(0))
	f.Add([]byte{0xAC, 0x01, 0x07, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, '{', '}'}, byte(0))
	f.Add([]byte{0xAC, 0x01, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 'n', 'u', 'l', 'l'}, byte(0))
	f.Add([]byte(`{"name":"x","tags":["a"],"score":1e400}`), byte(1))
	f.Add([]byte(`{"name":"\ud800","tags":null,"quota":{"a":1.5}}`), byte(1))
	f.Add([]byte(`[1,2,3]`), byte(1))
	f.Add([]byte(`{"owner":{"Team":"x"}}`), byte(1))
	f.Add([]byte(`null`), byte(1))
	f.Add([]byte{3}, byte(2))
	f.Add([]byte{14}, byte(2))
	f.Add([]byte{0, 0xff, 2, 0x02}, byte(3))
	f.Add([]byte{15, '[', 16, '"'}, byte(3))
	f.Fuzz(func(t *testing.T, data []byte, mode byte) {
		backend := fzBackend(t)
		rec := &fzRecorder{Remote: backend.Remote("fz:")}
		writer, err := agentcache.New(agentcache.Options{L2: rec, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = writer.Close(context.Background()) })
		res := resource.Resource{Name: "fz_profile", Scope: scope.User, TTL: time.Minute, StaleWindow: time.Minute}
		var runs atomic.Int32
		want := fzProfile{Name: "ada", Tags: []string{"ops"}, Score: 0.5, Quota: map[string]int{"rpm": 60}}
		tool := func(ctx context.Context, q string) (fzProfile, error) {
			runs.Add(1)
			return want, nil
		}
		get, err := agentcache.Wrap(writer, res, tool, agentcache.WriteThrough())
		if err != nil {
			t.Fatal(err)
		}
		ctx := scope.WithUser(context.Background(), "alice")
		if _, err := get(ctx, "q"); err != nil {
			t.Fatal(err)
		}
		key := rec.lastKey()
		real, found, err := rec.Get(context.Background(), key)
		if key == "" || !found || err != nil {
			t.Fatalf("the entry was not written through (key %q, found %v, %v)", key, found, err)
		}
		bad := fzMutate(real, data, mode)
		if err := rec.Remote.Set(context.Background(), key, bad, time.Minute); err != nil {
			t.Fatal(err)
		}

		reader := fzCache(t, backend.Remote("fz:"))
		rget, err := agentcache.Wrap(reader, res, tool)
		if err != nil {
			t.Fatal(err)
		}
		before := runs.Load()
		got, err := rget(ctx, "q")
		s := reader.Stats()
		switch {
		case err != nil && errors.Is(err, agentcache.ErrNotFound) && s.NegativeHits == 1:
			// A well-formed "not found" marker.
		case err != nil:
			t.Fatalf("reading %x: %v", bad, err)
		case s.L2Hits == 1 && s.L2Corrupt == 0 && runs.Load() == before:
			// Decoded from L2: a value of the right type, whatever it holds.
		case runs.Load() == before+1 && reflect.DeepEqual(got, want):
			// A miss: the tool answered.
		default:
			t.Fatalf("reading %x: %+v with stats %+v after %d tool runs", bad, got, s, runs.Load()-before)
		}
		if s.L2Corrupt > 0 {
			if err := reader.Close(context.Background()); err != nil { // drains the delete
				t.Fatal(err)
			}
			v, found, err := rec.Get(context.Background(), key)
			if err != nil || found && string(v) == string(bad) {
				t.Fatalf("the corrupt value %x is still in L2 (%v)", bad, err)
			}
		}
	})
}

// fzMutate derives the bytes to store from the real value and the fuzz input.
func fzMutate(real, data []byte, mode byte) []byte {
	const header = keyspace.HeaderLen // at most; a shorter header only moves the cut
	switch mode % 4 {
	case 1:
		h := min(header, len(real))
		return append(append([]byte(nil), real[:h]...), data...)
	case 2:
		if len(data) == 0 {
			return nil
		}
		return append([]byte(nil), real[:int(data[0])%(len(real)+1)]...)
	case 3:
		out := append([]byte(nil), real...)
		for i := 0; i+1 < len(data); i += 2 {
			if len(out) > 0 {
				out[int(data[i])%len(out)] ^= data[i+1] | 1
			}
		}
		return out
	}
	return append([]byte(nil), data...)
}

// TestFuzzL2ValueFindsCorruption makes sure the L2 target reaches the
// decoder: a flipped payload byte is counted corrupt and deleted.
func TestFuzzL2ValueFindsCorruption(t *testing.T) {
	real := keyspace.NewSealer(nil).Append(nil, "k", keyspace.KindValue, 1, 2, time.Time{}, 0, []byte(`{"name":"x"}`))
	h := keyspace.HeaderLen
	if got := fzMutate(real, []byte{byte(h), '['}, 3); got[h] == real[h] {
		t.Fatalf("mode 3 did not flip byte %d", h)
	}
	if got := fzMutate(real, []byte("zz"), 1); string(got[h:]) != "zz" {
		t.Fatalf("mode 1 did not replace the payload: %q", got)
	}
}

// FuzzEnvelopeKeyBinding writes a user's entry through one instance, copies
// its bytes (some flipped, per flips) to the key of another call — another
// argument, another user, or both — and reads that call through a second
// instance, with or without a secret. The value written for one call is
// never served for another: the reader gets its own tool's answer (the
// copied value counted corrupt), or, for the very same call, the value —
// and with a secret, never bytes changed since they were written.
func FuzzEnvelopeKeyBinding(f *testing.F) {
	f.Add("q", "alice", "q", "bob", []byte{}, false)
	f.Add("q", "alice", "r", "alice", []byte{}, true)
	f.Add("q", "alice", "q", "alice", []byte{60, 1}, true)
	f.Add("a", "u1", "b", "u2", []byte{20, 4, 40, 8}, false)
	f.Fuzz(func(t *testing.T, qa, ua, qb, ub string, flips []byte, keyed bool) {
		if scope.Validate(ua) != nil || scope.Validate(ub) != nil {
			return
		}
		var secret []byte
		if keyed {
			secret = []byte("fuzzing secret, sixteen bytes+")
		}
		backend := fzBackend(t)
		rec := &fzRecorder{Remote: backend.Remote("fz:")}
		open := func(l2 tier.Remote) *agentcache.Cache {
			c, err := agentcache.New(agentcache.Options{L2: l2, Secret: secret, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close(context.Background()) })
			return c
		}
		res := resource.Resource{Name: "fz_docs", Scope: scope.User, TTL: time.Minute}
		tool := func(ctx context.Context, q string) (string, error) {
			id, _ := scope.ID(ctx, scope.User)
			return id + "/" + q, nil
		}
		get, err := agentcache.Wrap(open(rec), res, tool, agentcache.WriteThrough())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := get(scope.WithUser(context.Background(), ua), qa); err != nil {
			return // arguments the cache refuses
		}
		from := rec.lastKey()
		real, found, err := rec.Get(context.Background(), from)
		if !found || err != nil {
			t.Fatalf("the entry was not written through: %v", err)
		}
		reader := open(rec)
		rget, err := agentcache.Wrap(reader, res, tool)
		if err != nil {
			t.Fatal(err)
		}
		// The reader's own key for (ub, qb): the one its lookup reads.
		rec.mu.Lock()
		rec.keys = nil
		rec.mu.Unlock()
		bctx := scope.WithUser(context.Background(), ub)
		if _, err := rget(bctx, qb); err != nil {
			return // arguments the cache refuses
		}
		to := rec.lastKey()
		if to == "" {
			to = from // the same call: served from L2, nothing written
		}
		planted := fzMutate(real, flips, 3)
		if err := rec.Remote.Set(context.Background(), to, planted, time.Minute); err != nil {
			t.Fatal(err)
		}
		fresh := open(rec)
		fget, err := agentcache.Wrap(fresh, res, tool)
		if err != nil {
			t.Fatal(err)
		}
		got, err := fget(bctx, qb)
		if err != nil {
			t.Fatal(err)
		}
		if !keyed && to == from {
			return // the same key, without a secret: a changed payload is not detected (see the threat model)
		}
		if want := ub + "/" + qb; got != want {
			t.Fatalf("(%q, %q) was served %q, written for (%q, %q); want %q", ub, qb, got, ua, qa, want)
		}
	})
}
