package epoch

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/internal/testkit/wait"
	"github.com/agentcache/agentcache-go/tier"
)

// store is an in-memory tier.Epochs: values never go below known, and a
// bump goes past both. It counts its calls; gate, if set, holds each load
// until it is closed.
type store struct {
	mu    sync.Mutex
	vals  map[string]uint64
	loads atomic.Int64 // LoadEpochs calls
	keys  [][]string   // the keys of each load, in order
	gate  chan struct{}
}

func (s *store) LoadEpochs(_ context.Context, ops []tier.EpochOp) ([]uint64, error) {
	s.loads.Add(1)
	if s.gate != nil {
		<-s.gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]uint64, len(ops))
	var keys []string
	for i, op := range ops {
		keys = append(keys, op.Key)
		if s.vals[op.Key] < op.Known {
			s.vals[op.Key] = op.Known
		}
		if s.vals[op.Key] == 0 {
			s.vals[op.Key] = 100
		}
		out[i] = s.vals[op.Key]
	}
	s.keys = append(s.keys, keys)
	return out, nil
}

func (s *store) BumpEpochs(_ context.Context, ops []tier.EpochOp) ([]uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]uint64, len(ops))
	for i, op := range ops {
		s.vals[op.Key] = max(s.vals[op.Key], op.Known) + 1
		out[i] = s.vals[op.Key]
	}
	return out, nil
}

// table returns a table over st whose L2 calls fail while *down is set.
func table(t *testing.T, st *store, down *bool, maxScoped int) *Table {
	t.Helper()
	call := func(ctx context.Context, _ string, op func(context.Context) error) error {
		if *down {
			return errors.New("down")
		}
		return op(ctx)
	}
	tb, err := New(Config{
		Store: st, Call: call, Probe: call, Base: context.Background(),
		Spawn:     func(fn func()) bool { fn(); return true },
		MaxAge:    time.Hour,
		TTL:       func(string) time.Duration { return 0 },
		MaxScoped: maxScoped,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tb.Close)
	return tb
}

func confirmed(t *testing.T, tb *Table, cells ...*Cell) Stamp {
	t.Helper()
	var s Stamp
	for _, c := range cells {
		s.Add(c)
	}
	tb.Confirm(context.Background(), &s)
	return s
}

func TestCellsAdoptOnlyGreaterValues(t *testing.T) {
	st := &store{vals: map[string]uint64{"g": 50}}
	down := false
	tb := table(t, st, &down, 100)
	c := tb.Pinned("g")
	s := confirmed(t, tb, c)
	if c.Val() != 50 || !s.Valid(tb.Tick()) || s.Local() || s.Down() {
		t.Fatalf("confirmed cell: value %d, valid %v, local %v, down %v; want 50, valid, shared, up", c.Val(), s.Valid(tb.Tick()), s.Local(), s.Down())
	}
	tb.Learn("g", 40)
	if c.Val() != 50 {
		t.Fatalf("a smaller announced value moved the cell to %d", c.Val())
	}
	tb.Learn("g", 60)
	if c.Val() != 60 || s.Valid(tb.Tick()) || s.Current() {
		t.Fatalf("after a greater announced value: cell %d, old stamp valid %v current %v; want 60 and neither", c.Val(), s.Valid(tb.Tick()), s.Current())
	}
}

func TestDirtyCellKeepsItsValueUntilL2TakesIt(t *testing.T) {
	st := &store{vals: map[string]uint64{}}
	down := false
	tb := table(t, st, &down, 100)
	c := tb.Pinned("r")
	confirmed(t, tb, c)
	down = true
	if err := tb.Bump(context.Background(), []*Cell{c}, nil); err == nil {
		t.Fatal("Bump with L2 down reported no error")
	}
	mine := c.Val()
	if !tb.Pending() || mine <= 100 {
		t.Fatalf("after a failed bump: pending %v, value %d; want pending and a value after 100", tb.Pending(), mine)
	}
	tb.Learn("r", mine+1) // L2 has not taken the bump: the cell ignores the fleet
	if c.Val() != mine {
		t.Fatalf("a dirty cell adopted %d; want its own %d", c.Val(), mine)
	}
	down = false
	if !tb.Flush(context.Background(), true) || tb.Pending() {
		t.Fatal("Flush did not clear the dirty cell")
	}
	if c.Val() <= mine || st.vals["r"] != c.Val() {
		t.Fatalf("after the flush: cell %d, L2 %d; want L2's value, after %d", c.Val(), st.vals["r"], mine)
	}
}

func TestDeadCellMisses(t *testing.T) {
	st := &store{vals: map[string]uint64{}}
	down := false
	tb := table(t, st, &down, 1)
	c := tb.Scoped("s:a")
	s := confirmed(t, tb, c)
	for i := range 100 {
		tb.Scoped("s:" + string(rune('b'+i)))
		if c.Val() == 0 {
			break
		}
	}
	wait.For(t, 5*time.Second, "the cell of s:a is evicted", func() bool {
		tb.Scoped("s:z" + time.Now().String())
		return c.Val() == 0
	})
	if c.Val() != 0 || s.Valid(tb.Tick()) || s.Current() {
		t.Fatalf("an evicted cell: value %d, stamp valid %v current %v; want 0 and neither", c.Val(), s.Valid(tb.Tick()), s.Current())
	}
	if n := tb.Scoped("s:a"); n == c {
		t.Fatal("the evicted cell came back")
	}
}

// stale makes every cell of tb past MaxAge, as if no confirmation had come
// for that long.
func stale(tb *Table) { tb.tick.Add(staleTicks) }

func TestConcurrentConfirmationsShareOneCall(t *testing.T) {
	st := &store{vals: map[string]uint64{"u": 7}, gate: make(chan struct{})}
	down := false
	tb := table(t, st, &down, 100)
	c := tb.Scoped("u")
	var wg sync.WaitGroup
	confirm := func() {
		defer wg.Done()
		var s Stamp
		s.Add(c)
		tb.Confirm(context.Background(), &s)
		if s.Down() || s.Vals()[0] != 7 {
			t.Errorf("a confirmation: down %v, value %v; want up and 7", s.Down(), s.Vals())
		}
	}
	wg.Add(1)
	go confirm()
	for c.loading.Load() == nil { // the first caller's load is in flight
		runtime.Gosched()
	}
	for range 49 {
		wg.Add(1)
		go confirm()
	}
	close(st.gate)
	wg.Wait()
	if n := st.loads.Load(); n != 1 {
		t.Fatalf("50 concurrent confirmations of one cell made %d L2 calls; want 1", n)
	}
}

func TestRefreshConfirmsTheCellsInUseInOneCall(t *testing.T) {
	st := &store{vals: map[string]uint64{}}
	down := false
	tb := table(t, st, &down, 100)
	used, idle, pinned := tb.Scoped("used"), tb.Scoped("idle"), tb.Pinned("pinned")
	sUsed := confirmed(t, tb, used, pinned)
	confirmed(t, tb, idle)
	st.loads.Store(0)
	st.keys = nil
	tb.tick.Add(1)
	if !sUsed.Valid(tb.Tick()) { // an L1 hit: marks its cells used
		t.Fatal("a just-confirmed stamp is not valid")
	}
	tb.refresh()
	if n := st.loads.Load(); n != 1 {
		t.Fatalf("the refresh made %d L2 calls; want 1", n)
	}
	got := map[string]bool{}
	for _, k := range st.keys[0] {
		got[k] = true
	}
	if len(got) != 2 || !got["used"] || !got["pinned"] {
		t.Fatalf("the refresh loaded %v; want the cells in use, [used pinned]", st.keys[0])
	}
	// Unused since, the cells are kept confirmed for MaxAge after their
	// last use, so that a scope that comes back within it finds them fresh.
	tb.tick.Add(2)
	if tb.refresh(); st.loads.Load() != 2 || len(st.keys[1]) != 2 {
		t.Fatalf("the refresh after one unused period made %d L2 calls in all (keys %v); want 2, the cells used within MaxAge", st.loads.Load(), st.keys)
	}
	tb.tick.Add(staleTicks - 1)
	if !sUsed.Valid(tb.Tick()) {
		t.Fatal("a cell the refresh confirmed went stale before MaxAge")
	}
	// The hit above is a use: unused for MaxAge from here, the cells are
	// no longer refreshed.
	tb.tick.Add(staleTicks)
	n := st.loads.Load()
	if tb.refresh(); st.loads.Load() != n {
		t.Fatal("a refresh confirmed cells unused for MaxAge")
	}
}

func TestBeginCarriesTheLoadsOfStaleCells(t *testing.T) {
	st := &store{vals: map[string]uint64{"g": 5, "u": 9}}
	down := false
	tb := table(t, st, &down, 100)
	g, u := tb.Pinned("g"), tb.Scoped("u")
	confirmed(t, tb, g)
	var s Stamp
	s.Add(g)
	s.Add(u)
	if !tb.Stale(&s) {
		t.Fatal("a stamp with a never-confirmed cell is not stale")
	}
	p, ok := tb.Begin(&s)
	if !ok || len(p.Ops) != 1 || p.Ops[0].Key != "u" || s.Known() {
		t.Fatalf("Begin: ok %v, ops %+v, known %v; want one load of u and an unknown value", ok, p.Ops, s.Known())
	}
	vals, _ := st.LoadEpochs(context.Background(), p.Ops) // the read that carries them
	tb.Finish(&s, p, vals, true)
	if s.Down() || s.Local() || !s.Known() || s.Vals()[1] != 9 || !s.Valid(tb.Tick()) || tb.Stale(&s) {
		t.Fatalf("after Finish: down %v local %v vals %v valid %v; want up, shared, [5 9], valid", s.Down(), s.Local(), s.Vals(), s.Valid(tb.Tick()))
	}
	stale(tb)
	p, _ = tb.Begin(&s)
	tb.Finish(&s, p, nil, false)
	if !s.Down() {
		t.Fatal("Finish of a read that failed did not mark the stamp down")
	}
}

func TestRefreshKeepsTheCellsOfLiveEntries(t *testing.T) {
	st := &store{vals: map[string]uint64{}}
	down := false
	tb := table(t, st, &down, 100)
	kept, idle := tb.Scoped("kept"), tb.Scoped("idle")
	sKept := confirmed(t, tb, kept)
	confirmed(t, tb, idle)
	// An entry stamped with kept lives for 3 MaxAge: the refresh (every
	// second tick, as Start runs it) keeps its cell confirmed for that long
	// without a lookup, and then stops.
	tb.Keep(&sKept, 3*tb.cfg.MaxAge)
	last := int64(0)
	for tb.Tick() < 5*staleTicks {
		tb.tick.Add(1)
		if tb.Tick()%(staleTicks/2) != 0 {
			continue
		}
		before := st.loads.Load()
		tb.refresh()
		if st.loads.Load() > before {
			last = tb.Tick()
			if k := st.keys[len(st.keys)-1]; len(k) != 1 || k[0] != "kept" {
				t.Fatalf("the refresh loaded %v; want [kept]", k)
			}
		}
		if tb.Tick() <= 3*staleTicks && tb.Tick()-kept.verified.Load() >= staleTicks {
			t.Fatalf("the kept cell went stale at tick %d, within its entry's life", tb.Tick())
		}
	}
	if last < 3*staleTicks || last > 3*staleTicks+staleTicks/2 {
		t.Fatalf("the last refresh of the kept cell was at tick %d; want at the end of its entry's life (tick %d)", last, 3*staleTicks)
	}
}

// A seal is valid, current and the seal of its stamp exactly while every
// sealed value is unchanged; a bump of any one cell, a dead cell, and a sum
// of values that overflows all make it invalid.
func TestSealHoldsExactlyWhileNoEpochMoves(t *testing.T) {
	st := &store{vals: map[string]uint64{"g": 50, "r": 70, "u": 90, "ru": 110}}
	down := false
	tb := table(t, st, &down, 100)
	cells := []*Cell{tb.Pinned("g"), tb.Pinned("r"), tb.Pinned("u"), tb.Pinned("ru")}
	for moved := range cells {
		s := confirmed(t, tb, cells...)
		m := s.Seal()
		vals, cur := m.AppendVals(nil)
		if !m.Valid(tb.Tick()) || !m.Is(&s) || !cur || len(vals) != 4 || vals[moved] != cells[moved].Val() {
			t.Fatalf("a fresh seal: valid %v, is its stamp %v, current %v (%v)", m.Valid(tb.Tick()), m.Is(&s), cur, vals)
		}
		tb.Learn(cells[moved].Key(), cells[moved].Val()+1)
		later := confirmed(t, tb, cells...)
		if _, cur := m.AppendVals(nil); m.Valid(tb.Tick()) || m.Is(&later) || cur {
			t.Fatalf("after cell %d moved: seal valid %v, is the new stamp %v, current %v; want none", moved, m.Valid(tb.Tick()), m.Is(&later), cur)
		}
	}
	var zero Seal
	if zero.Valid(tb.Tick()) {
		t.Fatal("the zero seal is valid")
	}
	// Values near the top: the sum overflows, and the seal never holds.
	big := &store{vals: map[string]uint64{"a": 1 << 63, "b": 1 << 63}}
	tb2 := table(t, big, &down, 100)
	s := confirmed(t, tb2, tb2.Pinned("a"), tb2.Pinned("b"))
	if m := s.Seal(); m.Valid(tb2.Tick()) || m.Is(&s) {
		t.Fatal("a seal whose values overflow their sum holds")
	}
}
