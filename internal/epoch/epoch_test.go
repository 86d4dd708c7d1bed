package epoch

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// store is an in-memory tier.Epochs: values never go below known, and a
// bump goes past both.
type store struct {
	mu   sync.Mutex
	vals map[string]uint64
}

func (s *store) LoadEpochs(_ context.Context, keys []string, known []uint64, _ time.Duration) ([]uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]uint64, len(keys))
	for i, k := range keys {
		if s.vals[k] < known[i] {
			s.vals[k] = known[i]
		}
		if s.vals[k] == 0 {
			s.vals[k] = 100
		}
		out[i] = s.vals[k]
	}
	return out, nil
}

func (s *store) BumpEpochs(_ context.Context, keys []string, known []uint64, _ time.Duration) ([]uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]uint64, len(keys))
	for i, k := range keys {
		s.vals[k] = max(s.vals[k], known[i]) + 1
		out[i] = s.vals[k]
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
	if _, err := tb.Bump(context.Background(), []*Cell{c}); err == nil {
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
	deadline := time.Now().Add(5 * time.Second)
	for c.Val() != 0 && time.Now().Before(deadline) {
		tb.Scoped("s:z" + time.Now().String())
		time.Sleep(time.Millisecond)
	}
	if c.Val() != 0 || s.Valid(tb.Tick()) || s.Current() {
		t.Fatalf("an evicted cell: value %d, stamp valid %v current %v; want 0 and neither", c.Val(), s.Valid(tb.Tick()), s.Current())
	}
	if n := tb.Scoped("s:a"); n == c {
		t.Fatal("the evicted cell came back")
	}
}
