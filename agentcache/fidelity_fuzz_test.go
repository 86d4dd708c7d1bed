package agentcache_test

// FuzzFidelity is the fuzz target of the fidelity contract (issue 16): for
// a value built from the fuzz input, the caller whose call ran the tool, an
// L1 hit, an L2 hit on another instance and a hit restored from a snapshot
// get deeply equal values, and the tool runs once; or the codec cannot
// carry the value, and then it is counted, returned uncached and found in
// no tier. Its seed corpus runs in every `go test`;
// `go test -run '^$' -fuzz FuzzFidelity ./agentcache` explores further.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
	"github.com/agentcache/agentcache-go/tier"
)

// ffBase is embedded in ffRecord: its field is promoted.
type ffBase struct {
	ID string `json:"id"`
}

type ffInner struct {
	N  int
	S  string
	At time.Time
	V  any
}

// ffRecord is the struct result type: exported fields of most kinds
// encoding/json carries, an interface and times among them.
type ffRecord struct {
	ffBase
	Name   string           `json:"name"`
	Count  int64            `json:"count"`
	Big    uint64           `json:"big"`
	Quoted int64            `json:"quoted,string"`
	Ratio  float64          `json:"ratio"`
	Small  float32          `json:"small"`
	OK     bool             `json:"ok"`
	When   time.Time        `json:"when"`
	Until  *time.Time       `json:"until,omitempty"`
	Any    any              `json:"any"`
	Tags   []string         `json:"tags"`
	Raw    []byte           `json:"raw"`
	Num    json.Number      `json:"num"`
	Attrs  map[string]any   `json:"attrs,omitempty"`
	ByID   map[int64]string `json:"by_id"`
	Inner  *ffInner         `json:"inner"`
	Inners []ffInner        `json:"inners"`
	Msg    json.RawMessage  `json:"msg"`
}

// ffReader hands out the fuzz input a piece at a time; past its end every
// read is zero. budget bounds the nodes one value may have, so that an
// iteration stays cheap whatever the input.
type ffReader struct {
	data   []byte
	budget int
}

func (r *ffReader) byte() byte {
	if len(r.data) == 0 {
		return 0
	}
	b := r.data[0]
	r.data = r.data[1:]
	return b
}

func (r *ffReader) u64() uint64 {
	var b [8]byte
	n := copy(b[:], r.data)
	r.data = r.data[n:]
	return binary.BigEndian.Uint64(b[:])
}

func (r *ffReader) bytes(n int) []byte {
	n = min(n, len(r.data))
	b := append([]byte(nil), r.data[:n]...)
	r.data = r.data[n:]
	return b
}

// pick is table[next byte], for the tables of interesting values below.
func pick[T any](r *ffReader, table []T) T { return table[int(r.byte())%len(table)] }

// Tags of ffReader.value: the first byte of a value says which kind it is.
const (
	ffNil = iota
	ffBool
	ffFloatBits
	ffFloat
	ffInt
	ffUint
	ffString
	ffNumber
	ffTime
	ffBytes
	ffSlice
	ffMap
	ffStruct
	ffOther
	ffKinds
)

var ffFloats = []float64{
	0, math.NaN(), math.Inf(1), math.Inf(-1), math.Copysign(0, -1),
	math.MaxFloat64, -math.MaxFloat64, math.SmallestNonzeroFloat64,
	1e21, 1e20, 1e-7, 1e-6, 1<<53 + 1, 0.1, -1.5, float64(math.MaxUint64),
}

var ffInts = []int64{math.MinInt64, math.MaxInt64, -1, 0, 1, 1<<53 + 1, -(1<<53 + 1), math.MinInt32}

var ffUints = []uint64{math.MaxUint64, 1 << 63, 1<<64 - 1025, 1<<53 + 1, 0}

var ffStrings = []string{
	"", "\xff", "a\xffb", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc0\x80", "\u2028\u2029",
	"<script>&amp;</script>", "\x00", "\ufffd", "é", "e\u0301", `"\/`, "\x7f", "\U0001F600",
	"a\xfeb",
}

var ffNumbers = []json.Number{
	"0", "-0", "1e400", "-1e400", "1E+2", "0.000001", "18446744073709551616",
	"123456789012345678901234567890", "-9223372036854775809", "", "abc", "01",
	"1.", "+1", "0x10", " 1", "NaN", "4.9e-324", "5e-325", "1e-400", "-0.0e-0",
}

var ffSeconds = []int64{
	0, -62135596800, -62167219200, -62167219201, 253402300799, 253402300800,
	-2208988800, 1 << 31, -1 << 31, 1e9, -1, 63e9,
}

// ffZones are fixed offsets, among them ones RFC 3339 cannot write (with
// seconds, or 24 hours and more), and zones of the tz database with
// odd offsets, historical local mean times and negative DST.
var ffZones = sync.OnceValue(func() []*time.Location {
	zones := []*time.Location{
		time.UTC, time.Local, time.FixedZone("", 0), time.FixedZone("UTC", 0), time.FixedZone("XYZ", 3600),
		time.FixedZone("", 19800), time.FixedZone("NPT", 20700), time.FixedZone("", -34200),
		time.FixedZone("LINT", 50400), time.FixedZone("", 30), time.FixedZone("", -1),
		time.FixedZone("", 86340), time.FixedZone("", 86400), time.FixedZone("", -90000),
	}
	for _, name := range []string{
		"America/St_Johns", "Asia/Kathmandu", "Australia/Lord_Howe", "Europe/Dublin",
		"Africa/Monrovia", "Pacific/Chatham", "Europe/Amsterdam", "America/New_York",
	} {
		if loc, err := time.LoadLocation(name); err == nil {
			zones = append(zones, loc)
		} else {
			zones = append(zones, time.FixedZone(name, 0))
		}
	}
	return zones
})

func (r *ffReader) float() float64 {
	if r.byte()&1 == 0 {
		return pick(r, ffFloats)
	}
	return math.Float64frombits(r.u64())
}

func (r *ffReader) int() int64 {
	if r.byte()&1 == 0 {
		return pick(r, ffInts)
	}
	return int64(r.u64())
}

func (r *ffReader) uint() uint64 {
	if r.byte()&1 == 0 {
		return pick(r, ffUints)
	}
	return r.u64()
}

func (r *ffReader) string() string {
	switch r.byte() % 4 {
	case 0:
		return string(r.bytes(int(r.byte()) % 24))
	case 1:
		return pick(r, ffStrings)
	case 2:
		return pick(r, ffStrings) + string(r.bytes(int(r.byte())%8)) + pick(r, ffStrings)
	}
	return string(r.bytes(int(r.byte())))
}

func (r *ffReader) number() json.Number {
	if r.byte()&3 == 0 {
		return json.Number(r.bytes(int(r.byte()) % 12))
	}
	return pick(r, ffNumbers)
}

func (r *ffReader) bytesValue() []byte {
	switch r.byte() % 3 {
	case 0:
		return nil
	case 1:
		return []byte{}
	}
	return r.bytes(int(r.byte()))
}

func (r *ffReader) time() time.Time {
	var secs int64
	switch r.byte() % 4 {
	case 0:
		secs = int64(r.u64())
	case 1: // years 0 to 9999
		secs = -62167219200 + int64(r.u64()%(253402300799+62167219200+1))
	case 2:
		secs = pick(r, ffSeconds)
	default:
		secs = pick(r, ffSeconds) + int64(int8(r.byte()))*3600
	}
	var nsec int64
	switch r.byte() % 3 {
	case 1:
		nsec = 999_999_999
	case 2:
		nsec = int64(r.u64() % 1e9)
	}
	return time.Unix(secs, nsec).In(pick(r, ffZones()))
}

func (r *ffReader) inner(depth int) ffInner {
	return ffInner{N: int(r.int()), S: r.string(), At: r.time(), V: r.value(depth + 1)}
}

var ffRaw = []json.RawMessage{nil, json.RawMessage(`{ "a" : [1, 2] }`), json.RawMessage(`{bad`), json.RawMessage(`null`), json.RawMessage(` 1e400 `), json.RawMessage(`"\ud800"`), json.RawMessage{}}

// other is a value of some other type held in an interface.
func (r *ffReader) other(depth int) any {
	n := int64(7)
	switch r.byte() % 18 {
	case 0:
		return map[any]any{1: 1}
	case 1:
		return map[string]any(nil)
	case 2:
		return []any(nil)
	case 3:
		return []int{}
	case 4:
		return [2]int8{-128, 127}
	case 5:
		return map[int]string{-1: "a", 2: "b", 0: r.string()}
	case 6:
		return (*int)(nil)
	case 7:
		return &n
	case 8:
		return pick(r, ffRaw)
	case 9:
		return float32(math.NaN())
	case 10:
		return float32(math.MaxFloat32)
	case 11:
		return r.inner(depth)
	case 12:
		p := r.inner(depth)
		return &p
	case 13:
		return map[string]map[string]any{"x": {}, "y": nil}
	case 14:
		return time.Duration(r.int())
	case 15:
		return map[string]any{"m": map[any]int{1: 1}}
	case 16:
		return struct{ A, B any }{r.value(depth + 1), r.value(depth + 1)}
	}
	return map[uint64]bool{math.MaxUint64: true, 0: false}
}

// value builds a value of interface type from the input.
func (r *ffReader) value(depth int) any {
	r.budget--
	tag := r.byte() % ffKinds
	if (r.budget <= 0 || depth >= 5) && tag >= ffSlice {
		tag = ffString
	}
	switch tag {
	case ffNil:
		return nil
	case ffBool:
		return r.byte()&1 == 1
	case ffFloatBits:
		return math.Float64frombits(r.u64())
	case ffFloat:
		return r.float()
	case ffInt:
		return r.int()
	case ffUint:
		return r.uint()
	case ffString:
		return r.string()
	case ffNumber:
		return r.number()
	case ffTime:
		return r.time()
	case ffBytes:
		return r.bytesValue()
	case ffSlice:
		s := make([]any, r.byte()%5)
		for i := range s {
			s[i] = r.value(depth + 1)
		}
		return s
	case ffMap:
		n := int(r.byte() % 5)
		m := make(map[string]any, n)
		for range n {
			m[r.string()] = r.value(depth + 1)
		}
		return m
	case ffStruct:
		return r.inner(depth)
	}
	return r.other(depth)
}

func ffValue(data []byte) any {
	r := &ffReader{data: data, budget: 64}
	return r.value(0)
}

func ffRecordOf(data []byte) ffRecord {
	r := &ffReader{data: data, budget: 32}
	rec := ffRecord{
		ffBase: ffBase{ID: r.string()},
		Name:   r.string(),
		Count:  r.int(),
		Big:    r.uint(),
		Quoted: r.int(),
		Ratio:  r.float(),
		Small:  float32(r.float()),
		OK:     r.byte()&1 == 1,
		When:   r.time(),
	}
	if r.byte()&1 == 1 {
		u := r.time()
		rec.Until = &u
	}
	rec.Any = r.value(1)
	for range r.byte() % 4 {
		rec.Tags = append(rec.Tags, r.string())
	}
	rec.Raw = r.bytesValue()
	rec.Num = r.number()
	if n := r.byte() % 4; n > 0 {
		rec.Attrs = map[string]any{}
		for range n {
			rec.Attrs[r.string()] = r.value(1)
		}
	}
	if n := r.byte() % 4; n > 0 {
		rec.ByID = map[int64]string{}
		for range n {
			rec.ByID[r.int()] = r.string()
		}
	}
	if r.byte()&1 == 1 {
		in := r.inner(1)
		rec.Inner = &in
	}
	switch r.byte() % 3 {
	case 1:
		rec.Inners = []ffInner{}
	case 2:
		rec.Inners = []ffInner{r.inner(1), r.inner(1)}
	}
	rec.Msg = pick(r, ffRaw)
	return rec
}

// The four copies of a result.
const (
	ffFirst = iota
	ffL1
	ffL2
	ffRestored
)

var ffTierNames = [...]string{"the first caller", "an L1 hit", "an L2 hit on another instance", "a snapshot hit"}

// ffTool is one resource's tool and what its calls through each tier got.
type ffTool interface {
	call(t *testing.T, c *agentcache.Cache, which int)
	encodable() bool
	runs() int32
	check(t *testing.T)
}

type ffCase[R any] struct {
	res  resource.Resource
	v    R
	want R    // what the cache's codec (agentcache.JSON) makes of v, if it carries it
	ok   bool // whether it does
	n    atomic.Int32
	got  [4]R
}

func ffNewCase[R any](name string, v R) *ffCase[R] {
	c := &ffCase[R]{res: resource.Resource{Name: name, Scope: scope.Global, TTL: time.Hour}, v: v}
	// The oracle is the default codec itself, whose decoding documents
	// what it normalises (times of zero offset come back in UTC, zones of
	// one offset are shared); encoding/json decides what it carries.
	var codec agentcache.JSON
	if b, err := codec.Marshal(v); err == nil {
		c.ok = codec.Unmarshal(b, &c.want) == nil
	}
	return c
}

func (c *ffCase[R]) tool(context.Context, string) (R, error) {
	c.n.Add(1)
	return c.v, nil
}

func (c *ffCase[R]) call(t *testing.T, cache *agentcache.Cache, which int) {
	t.Helper()
	get, err := agentcache.Wrap(cache, c.res, c.tool)
	if err != nil {
		t.Fatalf("%s: Wrap: %v", c.res.Name, err)
	}
	if c.got[which], err = get(context.Background(), "k"); err != nil {
		t.Fatalf("%s: %s: %v", c.res.Name, ffTierNames[which], err)
	}
}

func (c *ffCase[R]) encodable() bool { return c.ok }
func (c *ffCase[R]) runs() int32     { return c.n.Load() }

func (c *ffCase[R]) check(t *testing.T) {
	t.Helper()
	if !c.ok {
		// Returned uncached: the tool's own value, on every call.
		want := fmt.Sprintf("%#v", c.v)
		for i, got := range c.got {
			if s := fmt.Sprintf("%#v", got); s != want {
				t.Errorf("%s: %s got %s, not the tool's uncacheable value %s", c.res.Name, ffTierNames[i], s, want)
			}
		}
		return
	}
	for i, got := range c.got {
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %s differs at %s from what the codec makes of the tool's value\ngot:  %#v\nwant: %#v\ntool: %#v",
				c.res.Name, ffTierNames[i], ffDiff(reflect.ValueOf(got), reflect.ValueOf(c.want), "value"), got, c.want, c.v)
		}
	}
}

// ffDiff names the first part where x and y differ, by the rules of
// reflect.DeepEqual ("" if none does): a time.Time that differs only in its
// location shows as value.When.loc.
func ffDiff(x, y reflect.Value, path string) string {
	if !x.IsValid() || !y.IsValid() || x.Type() != y.Type() {
		if x.IsValid() == y.IsValid() && (!x.IsValid() || x.Type() == y.Type()) {
			return ""
		}
		return path + " (of another type)"
	}
	switch x.Kind() {
	case reflect.Pointer, reflect.Interface:
		if x.IsNil() || y.IsNil() {
			if x.IsNil() == y.IsNil() {
				return ""
			}
			return path + " (nil on one side)"
		}
		return ffDiff(x.Elem(), y.Elem(), path)
	case reflect.Struct:
		for i := range x.NumField() {
			if d := ffDiff(x.Field(i), y.Field(i), path+"."+x.Type().Field(i).Name); d != "" {
				return d
			}
		}
		return ""
	case reflect.Slice, reflect.Map:
		if x.IsNil() != y.IsNil() {
			return path + " (nil on one side)"
		}
		if x.Len() != y.Len() {
			return path + " (of another length)"
		}
		if x.Kind() == reflect.Map {
			for _, k := range x.MapKeys() {
				kp := fmt.Sprintf("%s[%#v]", path, k)
				if !y.MapIndex(k).IsValid() {
					return kp + " (on one side only)"
				}
				if d := ffDiff(x.MapIndex(k), y.MapIndex(k), kp); d != "" {
					return d
				}
			}
			return ""
		}
		fallthrough
	case reflect.Array:
		for i := range x.Len() {
			if d := ffDiff(x.Index(i), y.Index(i), fmt.Sprintf("%s[%d]", path, i)); d != "" {
				return d
			}
		}
		return ""
	case reflect.Bool:
		if x.Bool() == y.Bool() {
			return ""
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if x.Int() == y.Int() {
			return ""
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if x.Uint() == y.Uint() {
			return ""
		}
	case reflect.Float32, reflect.Float64:
		if x.Float() == y.Float() {
			return ""
		}
	case reflect.String:
		if x.String() == y.String() {
			return ""
		}
	default:
		return ""
	}
	return fmt.Sprintf("%s (%#v and %#v)", path, x, y)
}

func ffOpen(t *testing.T, l2 tier.Remote, snapshot string) *agentcache.Cache {
	t.Helper()
	c, err := agentcache.New(agentcache.Options{
		L2:           l2,
		L1MaxEntries: 64,
		// A load that stores nothing releases its lease through the write
		// queue, unannounced and uncounted (Stats cannot tell when it has
		// landed): an instance that reads the key just before waits one
		// poll, 16 × LockPoll.

		Snapshot: agentcache.SnapshotOptions{Path: snapshot},
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)), Tuning: agentcache.TuningOptions{LockPoll: 100 * time.Microsecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// ffDrained reports whether every write c queued has been sent (rcDrained
// of redisenv_test.go, restated outside the package).
func ffDrained(c *agentcache.Cache) bool {
	s := c.Stats()
	return s.WriteQueueDepth == 0 && s.WritesDone+s.WritesFailed+s.WritesSkipped+s.WritesFenced+s.WritesDropped >= s.WritesQueued
}

// FuzzFidelity builds a value of interface type from v and an ffRecord from
// rec, and runs each through every tier: a call on instance A (L1, a
// memory L2, a snapshot file), a second call on A, a call on B sharing the
// L2 once A's write has landed, and a call on C, opened with nothing but
// the snapshot A saved at Close.
//
// It checks, for each value: if encoding/json carries it (encodes it and
// decodes the bytes back into the result type), the tool ran once and all
// four calls returned what JSON makes of it (so deeply equal); if not, the
// tool ran on every call, each returned the tool's own value, and it was
// counted Unencodable, written nowhere and in no instance's L1.
//
// Two inputs of testdata/fuzz/FuzzFidelity fail, the first found by the
// fuzzer, the second the same case cut down: a record whose When has an
// offset under a minute (+00:00:30). JSON writes it "+00:00" and decodes a
// time at offset 0 in time.Local (or an unnamed zone); the snapshot
// encodes that decoded value again, as "Z", and restores it in time.UTC,
// so a snapshot hit is not DeepEqual to the other copies.
func FuzzFidelity(f *testing.F) {
	b := func(bs ...byte) []byte { return bs }
	u64 := func(tag byte, v uint64) []byte { return binary.BigEndian.AppendUint64([]byte{tag}, v) }
	// Values behind an interface, with a plain record.
	f.Add(b(ffNil), b())
	f.Add(b(ffBool, 1), b())
	f.Add(u64(ffFloatBits, math.Float64bits(math.NaN())), b())
	f.Add(b(ffFloat, 0, 2), b())                               // +Inf
	f.Add(b(ffFloat, 0, 4), b())                               // -0
	f.Add(b(ffFloat, 0, 5), b())                               // MaxFloat64
	f.Add(b(ffFloat, 0, 8), b())                               // 1e21, written with an exponent
	f.Add(b(ffInt, 0, 0), b())                                 // MinInt64
	f.Add(b(ffInt, 0, 5), b())                                 // 2^53+1: no float64
	f.Add(b(ffUint, 0, 0), b())                                // MaxUint64
	f.Add(b(ffString, 1, 2), b())                              // a\xffb
	f.Add(b(ffString, 1, 3), b())                              // a UTF-16 surrogate in UTF-8
	f.Add(b(ffString, 2, 14, 2, 0xff, 0xfe, 6), b())           // an emoji, two bad bytes, U+2028
	f.Add(b(ffString, 1, 7), b())                              // HTML escapes
	f.Add(b(ffNumber, 1, 2), b())                              // 1e400: no float64
	f.Add(b(ffNumber, 1, 10), b())                             // "abc": no number
	f.Add(b(ffNumber, 1, 9), b())                              // "": encoded as 0
	f.Add(b(ffNumber, 1, 18), b())                             // 5e-325: rounds to 0
	f.Add(b(ffNumber, 0, 3, '0', '.', '5'), b())               // a raw json.Number
	f.Add(b(ffTime, 2, 0, 0, 9), b())                          // 1970 at +00:00:30: RFC 3339 drops the seconds
	f.Add(b(ffTime, 2, 4, 1, 9), b())                          // the last nanosecond of 9999 UTC is year 10000 at +00:00:30
	f.Add(b(ffTime, 2, 5, 0, 0), b())                          // year 10000
	f.Add(b(ffTime, 2, 2, 0, 10), b())                         // year 0 at -00:00:01
	f.Add(b(ffTime, 3, 6, 0x80, 1, 12), b())                   // +24:00: RFC 3339 cannot say it
	f.Add(b(ffTime, 2, 9, 2, 1, 2, 3, 4, 5, 6, 7, 8, 16), b()) // Lord Howe, half-hour DST
	f.Add(b(ffBytes, 2, 3, 0, 0xff, 1), b())
	f.Add(b(ffBytes, 1), b())
	f.Add(b(ffSlice, 3, ffNil, ffInt, 1, 0, 0, 0, 0, 0, 0, 0, 42, ffBytes, 0), b())
	f.Add(b(ffMap, 2, 1, 1, ffBool, 1, 1, 15, ffBool, 0), b())               // keys \xff and a\xfeb
	f.Add(b(ffMap, 2, 1, 2, ffInt, 0, 1, 1, 15, ffInt, 0, 2), b())           // two keys that both become a\ufffdb
	f.Add(b(ffStruct, 0, 1, 1, 1, 2, 0, 0, 7, ffFloat, 0, 1), b())           // a struct holding NaN
	f.Add(b(ffStruct, 0, 1, 1, 1, 2, 0, 0, 7, ffFloat, 0, 4), b())           // a struct at -09:30
	f.Add(b(ffSlice, 2, ffSlice, 1, ffMap, 1, 1, 0, ffNil, ffOther, 0), b()) // map[any]any, nested
	for k := range 18 {
		f.Add(b(ffOther, byte(k), 2, 1, 2), b())
	}
	// Records, field by field (see ffRecordOf): the head up to When, then
	// Until, Any, and the tail from Tags to Msg.
	head := func(ratio, small, when, zone byte) []byte {
		return b(1, 2, 1, 6, 0, 0, 0, 0, 0, 1, 0, ratio, 0, small, 1, 2, when, 0, zone)
	}
	rec := func(h []byte, until bool, anyv []byte, tail ...byte) []byte {
		out := append([]byte(nil), h...)
		if until {
			out = append(out, 1, 2, 6, 2, 1, 2, 3, 4, 5, 6, 7, 8, 19)
		} else {
			out = append(out, 0)
		}
		return append(append(out, anyv...), tail...)
	}
	plainTail := b(0, 0, 1, 0, 0, 0, 0, 0, 0)
	fullTail := b(
		2, 1, 2, 0, 3, 0xff, 0, 'x', // Tags: a\xffb and "\xff\x00x"
		2, 3, 0, 1, 0xfe, // Raw
		1, 2, // Num: 1e400, fine in a json.Number field
		2, 1, 2, ffInt, 0, 0, 1, 15, ffUint, 0, 0, // Attrs: keys that collide
		2, 0, 0, 1, 3, 0, 1, 1, 7, // ByID: MinInt64, MaxInt64
		1, 0, 5, 1, 14, 2, 0, 0, 15, ffTime, 2, 3, 0, 17, // Inner: Monrovia's old offset, 1900
		2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3, 0, ffNil, 0, 2, 1, 8, 2, 11, 0, 22, ffBytes, 1, // Inners: +23:59, Amsterdam
		1) // Msg: { "a" : [1, 2] }
	f.Add(b(ffNil), rec(head(0, 0, 0, 0), false, b(ffNil), plainTail...))
	f.Add(b(ffNil), rec(head(12, 13, 1, 15), true, b(ffMap, 1, 1, 6, ffFloat, 0, 4), fullTail...))
	f.Add(b(ffNil), rec(head(1, 0, 0, 0), false, b(ffNil), plainTail...))               // Ratio NaN
	f.Add(b(ffNil), rec(head(0, 5, 0, 0), false, b(ffNil), plainTail...))               // Small: MaxFloat64 is +Inf as a float32
	f.Add(b(ffNil), rec(head(0, 0, 5, 0), false, b(ffNil), plainTail...))               // When in year 10000
	f.Add(b(ffNil), rec(head(0, 0, 0, 14), true, b(ffNil), plainTail...))               // When in Local, Until in St John's
	f.Add(b(ffNil), rec(head(0, 0, 0, 0), false, b(ffFloat, 0, 1), plainTail...))       // Any: NaN
	f.Add(b(ffNil), rec(head(0, 0, 0, 0), false, b(ffNumber, 1, 2), plainTail...))      // Any: 1e400
	f.Add(b(ffNil), rec(head(0, 0, 0, 0), false, b(ffNil), 0, 0, 1, 10, 0, 0, 0, 0, 0)) // Num: "abc"
	f.Add(b(ffNil), rec(head(0, 0, 0, 0), false, b(ffNil), 0, 0, 1, 0, 0, 0, 0, 0, 2))  // Msg: {bad
	f.Add(b(ffNil), rec(head(0, 0, 0, 0), false, b(ffNil), 0, 0, 1, 0, 0, 0, 0, 0, 4))  // Msg: " 1e400 "
	f.Add(b(ffNil), rec(head(0, 0, 0, 0), false, b(ffNil), 0, 0, 1, 0, 0, 0, 0, 1, 0))  // Inners: empty, Msg: nil
	f.Add(b(ffNumber, 1, 2), rec(head(12, 13, 1, 15), true, b(ffMap, 1, 1, 6, ffFloat, 0, 4), fullTail...))
	f.Fuzz(func(t *testing.T, vdata, rdata []byte) {
		tools := []ffTool{ffNewCase("ff_any", ffValue(vdata)), ffNewCase("ff_record", ffRecordOf(rdata))}
		cacheable := 0
		for _, tl := range tools {
			if tl.encodable() {
				cacheable++
			}
		}
		uncacheable := len(tools) - cacheable
		backend := fzBackend(t)
		snap := filepath.Join(t.TempDir(), "snap")
		a := ffOpen(t, backend.Remote("ff:"), snap)
		bc := ffOpen(t, backend.Remote("ff:"), "")

		for _, tl := range tools {
			tl.call(t, a, ffFirst)
			tl.call(t, a, ffL1)
		}
		if s := a.Stats(); s.Unencodable != uint64(2*uncacheable) || s.L1Entries != cacheable || s.L1Hits != uint64(cacheable) {
			t.Fatalf("A: %d unencodable, %d L1 entries, %d L1 hits; want %d, %d, %d", s.Unencodable, s.L1Entries, s.L1Hits, 2*uncacheable, cacheable, cacheable)
		}
		deadline := time.Now().Add(10 * time.Second)
		for !ffDrained(a) || a.Stats().WritesDone < uint64(cacheable) {
			if time.Now().After(deadline) {
				t.Fatalf("A's writes did not land in L2: %+v", a.Stats())
			}
			time.Sleep(50 * time.Microsecond)
		}

		for _, tl := range tools {
			tl.call(t, bc, ffL2)
		}
		if s := bc.Stats(); s.L2Hits != uint64(cacheable) || s.Unencodable != uint64(uncacheable) {
			t.Fatalf("B: %d L2 hits, %d unencodable; want %d, %d", s.L2Hits, s.Unencodable, cacheable, uncacheable)
		}

		if err := a.Close(context.Background()); err != nil { // saves the snapshot
			t.Fatal(err)
		}
		if s := a.Stats(); s.SnapshotErrors != 0 {
			t.Fatalf("A: %d snapshot errors", s.SnapshotErrors)
		}
		c := ffOpen(t, nil, snap)
		if n := c.Stats().L1Entries; n != cacheable {
			t.Fatalf("C restored %d entries, want %d", n, cacheable)
		}
		for _, tl := range tools {
			tl.call(t, c, ffRestored)
		}
		if s := c.Stats(); s.Misses != uint64(uncacheable) || s.Unencodable != uint64(uncacheable) {
			t.Fatalf("C: %d misses, %d unencodable; want %d each", s.Misses, s.Unencodable, uncacheable)
		}

		for _, tl := range tools {
			want := int32(1)
			if !tl.encodable() {
				want = 4 // every call ran it
			}
			if n := tl.runs(); n != want {
				t.Errorf("the tool ran %d times, want %d (encodable: %v)", n, want, tl.encodable())
			}
			tl.check(t)
		}
	})
}
