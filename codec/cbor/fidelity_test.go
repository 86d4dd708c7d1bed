package cbor_test

// The fidelity contract with this codec, on a real Redis: for each result
// type, the caller whose call ran the tool, an L1 hit, an L2 hit on
// another instance and a hit restored from a snapshot get values that are
// deeply equal (and == when comparable); a type the codec cannot carry is
// refused by Wrap. A missing redis-server fails these tests, with the
// harness's message saying how to install it.

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/codec/cbor"
	"github.com/agentcache/agentcache-go/internal/leakcheck"
	"github.com/agentcache/agentcache-go/internal/redistest"
	"github.com/agentcache/agentcache-go/internal/testkit/wait"
	"github.com/agentcache/agentcache-go/internal/testlog"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
	acredis "github.com/agentcache/agentcache-go/tier/redis"
)

// env is one redis-server for a test and the stores made on it.
type env struct {
	t   *testing.T
	srv *redistest.Server
}

func start(t *testing.T) *env {
	t.Helper()
	leakcheck.Check(t) // registered first, so it runs after every other cleanup
	return &env{t: t, srv: redistest.Start(t)}
}

// store returns a Store on the server with the test's key prefix; it and
// its client are closed when the test ends.
func (e *env) store() *acredis.Store {
	e.t.Helper()
	o := e.srv.Options()
	o.ContextTimeoutEnabled = true
	client := goredis.NewClient(o)
	e.t.Cleanup(func() { _ = client.Close() })
	s, err := acredis.New(client, acredis.Options{Prefix: "cbor-" + strings.ReplaceAll(e.t.Name(), "/", "-") + ":"})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = s.Close() })
	return s
}

// open returns a Cache with this codec, closed when the test ends.
func open(t *testing.T, o agentcache.Options) *agentcache.Cache {
	t.Helper()
	o.Codec = cbor.Codec{}
	o.Logger = testlog.New(t, slog.LevelDebug)
	o.L2Timeout = 2 * time.Second
	c, err := agentcache.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := c.Close(ctx); err != nil && !errors.Is(err, agentcache.ErrClosed) {
			t.Logf("Close: %v", err)
		}
	})
	return c
}

func drained(c *agentcache.Cache) bool {
	s := c.Stats()
	return s.WriteQueueDepth == 0 && s.WritesDone+s.WritesFailed+s.WritesSkipped+s.WritesFenced+s.WritesDropped >= s.WritesQueued
}

// fidelity runs v through every tier and fails t unless all four copies
// are deeply equal (and ==, when comparable and not pointers), and deeply
// equal to want when want is set (else to v).
func fidelity[R any](t *testing.T, e *env, name string, v R, want any) {
	t.Helper()
	res := resource.Resource{Name: name, Scope: scope.Global, TTL: time.Hour}
	var runs atomic.Int32
	tool := func(context.Context, string) (R, error) { runs.Add(1); return v, nil }
	ctx := context.Background()
	snap := filepath.Join(t.TempDir(), "snap")
	call := func(c *agentcache.Cache) R {
		t.Helper()
		get, err := agentcache.Wrap(c, res, tool)
		if err != nil {
			t.Fatalf("%s: Wrap: %v", name, err)
		}
		out, err := get(ctx, "k")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return out
	}
	a := open(t, agentcache.Options{L2: e.store(), Snapshot: agentcache.SnapshotOptions{Path: snap}})
	b := open(t, agentcache.Options{L2: e.store()})
	first := call(a)
	l1 := call(a)
	wait.For(t, 10*time.Second, name+": the write to L2", func() bool { return drained(a) && a.Stats().WritesDone > 0 })
	l2 := call(b)
	if err := a.Close(ctx); err != nil { // saves the snapshot
		t.Fatal(err)
	}
	restored := call(open(t, agentcache.Options{Snapshot: agentcache.SnapshotOptions{Path: snap}}))
	if n := runs.Load(); n != 1 {
		t.Fatalf("%s: the tool ran %d times, want 1 (every other copy is a hit)", name, n)
	}
	if s := b.Stats(); s.L2Hits == 0 {
		t.Errorf("%s: the second instance had no L2 hit: %+v", name, s)
	}
	for _, tier := range []struct {
		name string
		got  R
	}{{"an L1 hit", l1}, {"an L2 hit on another instance", l2}, {"a snapshot hit", restored}} {
		if !reflect.DeepEqual(tier.got, first) {
			t.Errorf("%s: %s returned %#v, the first caller %#v", name, tier.name, tier.got, first)
		}
		fv, gv := reflect.ValueOf(first), reflect.ValueOf(tier.got)
		if fv.IsValid() && fv.Kind() != reflect.Pointer && fv.Comparable() && gv.Comparable() && any(tier.got) != any(first) {
			t.Errorf("%s: %s returned a value that is not == the first caller's: %#v, %#v", name, tier.name, tier.got, first)
		}
	}
	if want == nil {
		want = v
	}
	if !reflect.DeepEqual(any(first), want) {
		t.Errorf("%s: every tier returned %#v, want %#v", name, first, want)
	}
}

type Owner struct {
	Team  string `json:"team"`
	Level int    `json:"level"`
}

type Profile struct {
	ID     string            `json:"id"`
	Tags   []string          `json:"tags"`
	Empty  []string          `json:"empty"`
	None   []string          `json:"none"`
	Limits map[string]int    `json:"limits"`
	Owner  *Owner            `json:"owner"`
	Nobody *Owner            `json:"nobody"`
	Extra  map[string]string `json:"extra,omitempty"`
	Deep   map[string][]*Owner
}

type Meta struct {
	Source string
}

type wide struct {
	Meta
	I64 int64
	U64 uint64
	I8  int8
	U   uint
	F   float64
	Raw []byte
	Nil []byte
	Emp []byte
	Msg json.RawMessage
}

type anyField struct {
	Item any
	List []any
}

type event struct {
	At   time.Time
	Next *time.Time
	Log  map[string]time.Time
	Any  any
	N    int
}

func TestEveryTierReturnsTheSameValue(t *testing.T) {
	e := start(t)
	fidelity(t, e, "nested_struct", &Profile{
		ID: "7", Tags: []string{"x"}, Empty: []string{}, Limits: map[string]int{"a": 1, "b": -2},
		Owner: &Owner{Team: "t", Level: 3}, Extra: map[string]string{}, Deep: map[string][]*Owner{"o": {{Team: "d"}, nil}},
	}, &Profile{
		ID: "7", Tags: []string{"x"}, Empty: []string{}, Limits: map[string]int{"a": 1, "b": -2},
		Owner: &Owner{Team: "t", Level: 3}, Deep: map[string][]*Owner{"o": {{Team: "d"}, nil}},
	}) // Extra is omitempty: empty, it comes back nil
	fidelity(t, e, "wide_ints", wide{
		Meta: Meta{Source: "s"}, I64: math.MinInt64, U64: math.MaxUint64, I8: math.MinInt8, U: math.MaxUint,
		F: math.Inf(-1), Raw: []byte{0, 0xff}, Emp: []byte{}, Msg: json.RawMessage(`{ "a" : 1 }`),
	}, nil)
	fidelity(t, e, "wide_ints_in_interface", map[string]any{"min": int64(math.MinInt64), "max": uint64(math.MaxUint64), "one": 1},
		map[string]any{"min": int64(math.MinInt64), "max": uint64(math.MaxUint64), "one": uint64(1)})
	fidelity(t, e, "interface_fields", anyField{Item: Owner{Team: "t", Level: 1}, List: []any{"a", -1, 2.5, []byte("b"), nil, true}},
		anyField{Item: map[string]any{"team": "t", "level": uint64(1)}, List: []any{"a", int64(-1), 2.5, []byte("b"), nil, true}})
	fidelity(t, e, "raw_json", json.RawMessage(`{ "a" : 1 }`), nil)
	fidelity(t, e, "nil_slice", []int(nil), nil)
	fidelity(t, e, "empty_slice", []int{}, nil)
	fidelity(t, e, "nil_map", map[string]int(nil), nil)
	fidelity(t, e, "empty_map", map[string]int{}, nil)
	fidelity(t, e, "invalid_utf8", "a\xffb", nil)

	// A time keeps its instant and offset on every tier, and loses its
	// monotonic reading and zone name on every tier alike.
	zoned := time.Now().In(time.FixedZone("IST", 5*3600+1800))
	asDecoded := zoned.Round(0).In(time.FixedZone("", 5*3600+1800))
	utc := time.Now().UTC()
	for name, tm := range map[string]time.Time{"zoned_time": zoned, "utc_time": utc, "local_time": time.Now()} {
		first := firstCopy(t, e, name, tm)
		if _, off := tm.Zone(); !first.Equal(tm) || first.Round(0) != first {
			t.Errorf("%s: %v came back as %v", name, tm, first)
		} else if _, got := first.Zone(); got != off {
			t.Errorf("%s: offset %d came back as %d", name, off, got)
		}
	}
	fidelity(t, e, "utc_time_exact", utc, utc.Round(0))
	fidelity(t, e, "zoned_time_in_struct", event{At: zoned, Any: zoned, N: 1}, event{At: asDecoded, Any: asDecoded, N: 1})
	fidelity(t, e, "zoned_times_deep", &event{At: zoned, Next: &zoned, Log: map[string]time.Time{"a": zoned, "u": utc}, Any: []any{zoned}},
		&event{At: asDecoded, Next: &asDecoded, Log: map[string]time.Time{"a": asDecoded, "u": utc.Round(0)}, Any: []any{asDecoded}})
}

// firstCopy is fidelity, returning the value every tier returned.
func firstCopy[R any](t *testing.T, e *env, name string, v R) R {
	t.Helper()
	var c cbor.Codec
	b, err := c.Marshal(v)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var want R
	if err := c.Unmarshal(b, &want); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	fidelity(t, e, name, v, want)
	return want
}
