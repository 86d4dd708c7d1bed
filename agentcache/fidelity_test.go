package agentcache

// The fidelity contract (issue 16): for every result type Wrap and Get
// accept, the caller whose call ran the tool, an L1 hit, an L2 hit on
// another instance and a hit restored from a snapshot get the same value;
// a type the codec cannot carry is refused up front, naming the part; a
// value it cannot carry at run time is returned uncached and counted.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/internal/testkit/wait"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
)

type fidInner struct{ N int }

type fidAny struct{ Item any }

type fidOmit struct {
	Items []int `json:"items,omitempty"`
}

// fidelity runs tool's value through every tier and fails t unless all
// four copies are deeply equal (and equal to want, when want is set).
func fidelity[R any](t *testing.T, e *rcEnv, name string, v R, want any) {
	t.Helper()
	res := resource.Resource{Name: name, Scope: scope.Global, TTL: time.Hour}
	var runs atomic.Int32
	tool := func(context.Context, string) (R, error) { runs.Add(1); return v, nil }
	ctx := context.Background()
	snap := filepath.Join(t.TempDir(), "snap")
	call := func(c *Cache) R {
		t.Helper()
		get, err := Wrap(c, res, tool)
		if err != nil {
			t.Fatalf("%s: Wrap: %v", name, err)
		}
		out, err := get(ctx, "k")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return out
	}
	a := rcNew(t, Options{L2: e.store(), Snapshot: SnapshotOptions{Path: snap}})
	b := rcNew(t, Options{L2: e.store()})
	first := call(a)
	l1 := call(a)
	wait.For(t, 10*time.Second, "the write to L2", func() bool { return rcDrained(a) && a.Stats().WritesDone > 0 })
	l2 := call(b)
	if err := a.Close(ctx); err != nil { // saves the snapshot
		t.Fatal(err)
	}
	restored := call(rcNew(t, Options{Snapshot: SnapshotOptions{Path: snap}}))
	if n := runs.Load(); n != 1 {
		t.Fatalf("%s: the tool ran %d times, want 1 (every other copy is a hit)", name, n)
	}
	for tier, got := range map[string]R{"an L1 hit": l1, "an L2 hit on another instance": l2, "a snapshot hit": restored} {
		if !reflect.DeepEqual(got, first) {
			t.Errorf("%s: %s returned %#v, the first caller %#v", name, tier, got, first)
		}
		if reflect.TypeFor[R]().Kind() != reflect.Pointer && reflect.ValueOf(first).Comparable() && reflect.ValueOf(got).Comparable() && any(got) != any(first) {
			t.Errorf("%s: %s returned a value that is not == the first caller's: %#v, %#v", name, tier, got, first)
		}
	}
	if want != nil && !reflect.DeepEqual(any(first), want) {
		t.Errorf("%s: every tier returned %#v, want %#v (what the codec returns)", name, first, want)
	}
}

func TestEveryTierReturnsTheSameValue(t *testing.T) {
	e := rcStart(t)
	fidelity(t, e, "interface_field", fidAny{Item: fidInner{N: 1}}, fidAny{Item: map[string]any{"N": 1.0}})
	fidelity(t, e, "wide_ints", map[string]any{"big": int64(1<<60 + 1), "max": uint64(math.MaxUint64)},
		map[string]any{"big": float64(1<<60 + 1), "max": float64(math.MaxUint64)})
	fidelity(t, e, "raw_json", json.RawMessage(`{ "a" : 1 }`), json.RawMessage(`{"a":1}`))
	fidelity(t, e, "omitted_empty", fidOmit{Items: []int{}}, fidOmit{})
	fidelity(t, e, "invalid_utf8", "a\xffb", "a\ufffdb")
	fidelity(t, e, "plain_struct", &rcProfile{ID: "7", Tags: []string{"x"}, Limits: map[string]int{"a": 1}, Owner: &rcProfileOwner{Team: "t"}}, nil)
	// A time keeps its instant and offset on every tier, and loses its
	// monotonic reading and zone name on every tier alike.
	zoned := time.Now().In(time.FixedZone("IST", 5*3600+1800)) // not a whole hour: time.FixedZone shares no cached zone for it
	fidelity(t, e, "zoned_time", zoned, nil)
	type event struct {
		At   time.Time
		Next *time.Time
		Log  map[string]time.Time
		N    int
	}
	fidelity(t, e, "zoned_time_in_struct", event{At: zoned, N: 1}, nil)
	fidelity(t, e, "zoned_times_deep", &event{At: zoned, Next: &zoned, Log: map[string]time.Time{"a": zoned}}, nil)
	utc := time.Now().UTC()
	fidelity(t, e, "utc_time", utc, utc.Round(0))
}

// A result type with a part encoding/json leaves out, cannot encode or
// cannot decode into is refused before any call, with an error that starts
// with the package name, wraps ErrResultType and names the part.
func TestResultTypesTheCodecCannotCarryAreRefused(t *testing.T) {
	c := newL1(t, Options{})
	n := 0
	refused := func(name, part string, wrap func(resource.Resource) error) {
		t.Helper()
		n++
		err := wrap(resource.Resource{Name: "refused_" + string(rune('a'+n)), Scope: scope.Global})
		if !errors.Is(err, ErrResultType) || !strings.HasPrefix(err.Error(), "agentcache: ") || !strings.Contains(err.Error(), part) {
			t.Errorf("%s: %v; want an agentcache error wrapping ErrResultType naming %s", name, err, part)
		}
	}
	type hidden struct {
		Name  string
		notes string
	}
	type skipped struct {
		Name   string
		Secret string `json:"-"`
	}
	type withErr struct{ Err error }
	type withFunc struct{ F func() }
	type A struct{ ID string }
	type B struct{ ID string }
	type collide struct {
		A
		B
	}
	type keyed struct{ M map[any]int }
	refused("unexported field", "notes", wrapOf[hidden](c))
	refused("json:\"-\"", "Secret", wrapOf[skipped](c))
	refused("error field", "Err", wrapOf[withErr](c))
	refused("error result", "error", wrapOf[error](c))
	refused("func field", "F", wrapOf[withFunc](c))
	refused("chan", "chan", wrapOf[chan int](c))
	refused("complex", "complex", wrapOf[complex128](c))
	refused("colliding embedded fields", "ID", wrapOf[collide](c))
	refused("map[any]", "map", wrapOf[keyed](c))
	refused("redacting MarshalJSON", "MarshalJSON", wrapOf[redacted](c))
	refused("WrapBatch", "notes", func(r resource.Resource) error {
		_, err := WrapBatch(c, r, func(context.Context, []string) (map[string]hidden, error) { return nil, nil })
		return err
	})
	// Get refuses at its first miss, Set at once; neither stores anything.
	_, err := Get(context.Background(), c, "k", func(context.Context, string) (hidden, error) {
		t.Error("Get ran the loader of a refused type")
		return hidden{}, nil
	})
	if !errors.Is(err, ErrResultType) || !strings.Contains(err.Error(), "notes") {
		t.Errorf("Get of a refused type: %v", err)
	}
	if err := c.Set(context.Background(), "k", hidden{Name: "x"}, 0); !errors.Is(err, ErrResultType) {
		t.Errorf("Set of a refused type: %v", err)
	}
	// What encoding/json carries is fine, interface{} included.
	type fine struct {
		A
		Name  string `json:"name"`
		When  time.Time
		Any   any
		Raw   json.RawMessage
		Items map[int][]*fidInner
	}
	if err := wrapOf[fine](c)(resource.Resource{Name: "fine", Scope: scope.Global}); err != nil {
		t.Errorf("a type encoding/json carries: %v", err)
	}
}

type redacted struct{ Token string }

func (redacted) MarshalJSON() ([]byte, error) { return []byte(`"***"`), nil }

func wrapOf[R any](c *Cache) func(resource.Resource) error {
	return func(r resource.Resource) error {
		_, err := Wrap(c, r, func(context.Context, string) (R, error) { var zero R; return zero, nil })
		return err
	}
}

// A value the codec cannot encode at run time (NaN, a map[any]any behind an
// interface) is returned to its caller, cached nowhere (not even in L1, so
// no tier differs), counted and logged with the resource's name.
func TestUnencodableValuesAreReturnedUncachedAndCounted(t *testing.T) {
	var logs syncBuf
	c := newL1(t, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	var runs atomic.Int32
	get, err := Wrap(c, resource.Resource{Name: "score", Scope: scope.Global, TTL: time.Hour}, func(_ context.Context, k string) (any, error) {
		runs.Add(1)
		if k == "nan" {
			return math.NaN(), nil
		}
		return map[string]any{"m": map[any]int{1: 1}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"nan", "nan", "anymap", "anymap"} {
		v, err := get(context.Background(), k)
		if err != nil || v == nil {
			t.Fatalf("%s: %v, %v; want the tool's value", k, v, err)
		}
	}
	if n := runs.Load(); n != 4 {
		t.Errorf("the tool ran %d times, want 4 (nothing cached)", n)
	}
	if s := c.Stats(); s.Unencodable != 4 || s.L1Entries != 0 {
		t.Errorf("Unencodable = %d, L1Entries = %d; want 4 and 0", s.Unencodable, s.L1Entries)
	}
	if !strings.Contains(logs.String(), "score") {
		t.Errorf("the log does not name the resource: %s", logs.String())
	}
}

// With a Codec that is no TypeChecker every type is accepted, and L1 still
// holds what L2 would return: here the codec drops an unexported field, and
// the caller that ran the tool gets the value without it too.
func TestL1HoldsWhatTheCodecReturns(t *testing.T) {
	c := newL1(t, Options{Codec: plainJSON{}})
	type note struct {
		Text   string
		secret string
	}
	get, err := Wrap(c, resource.Resource{Name: "note", Scope: scope.Global, TTL: time.Hour}, func(context.Context, string) (note, error) {
		return note{Text: "t", secret: "s"}, nil
	})
	if err != nil {
		t.Fatalf("a codec without CheckType accepts every type: %v", err)
	}
	for range 2 {
		if v, err := get(context.Background(), "k"); err != nil || v != (note{Text: "t"}) {
			t.Errorf("got %#v, %v; want the codec's copy %#v", v, err, note{Text: "t"})
		}
	}
}

// syncBuf is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// plainJSON is JSON without the type check.
type plainJSON struct{}

func (plainJSON) Marshal(v any) ([]byte, error)   { return json.Marshal(v) }
func (plainJSON) Unmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
