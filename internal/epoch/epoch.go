// Package epoch holds what one cache instance knows of its invalidation
// epochs: a table of cells, one per epoch, and the stamps that entries carry.
//
// Every cache key carries a token mixed from up to four epochs — the whole
// cache, the resource, the scope, and the resource in the scope — so bumping
// one epoch makes every entry under it unreachable at once, on every
// instance, with no scan. Old entries age out by TTL.
//
// The table keeps these promises:
//
//   - Values only grow (see tier.Epochs): L2 creates and bumps them from its
//     clock in a script, and a value this instance makes itself (no L2, or
//     L2 unreachable) comes from its clock and is after the one it replaces.
//     The table passes what it knows to every L2 read, so that a store that
//     lost a write (a failover, a restored backup) is raised back instead of
//     pulling the instance back.
//   - A cell adopts only greater values: from L2, from another instance
//     ([Table.Learn]) or from a snapshot.
//   - A dirty cell — one whose bump L2 did not take — keeps its own value
//     until L2 takes it ([Table.Flush]): the invalidation is never undone by
//     a confirmation.
//   - A dead cell, one that left the table of per-scope cells, misses: it has
//     no value, so no stamp made with it is valid or current again, and the
//     next lookup builds a fresh cell.
//
// An entry keeps in its [Seal] pointers to the cells it was stamped with
// and the sum of the values they had (values only grow, so the sum moves
// exactly when one of them does), so an L1 hit checks a few atomics and
// never touches a map. A cell is trusted for MaxAge after it was last confirmed
// with L2; invalidation messages update cells at once, so a lost message is
// bounded by MaxAge. [Table.Unconfirm] (a reconnect of the message
// subscription) makes every cell unconfirmed.
//
// Confirmation costs a lookup no round trip of its own in the steady state:
//
//   - Every MaxAge/2 one background call confirms every cell in use: used
//     in the last MaxAge, or kept for the entries stamped with it (for
//     their TTL, at most 8 × MaxAge: [Table.Keep]), so that a cell in use
//     never gets past MaxAge and an L1 hit never waits for it.
//   - A cell past MaxAge (unused for longer, or never confirmed) is
//     confirmed before it is used; lookups that need the same cell at once
//     share one call ([Table.Confirm]).
//   - A lookup that goes to L2 anyway carries the loads of its stale cells
//     in its own read ([Table.Begin], [Table.Finish]): one round trip for
//     the epochs and the entry.
//
// The package knows nothing of the cache that uses it: L2 is reached through
// the functions of [Config], and announcing new values to other instances is
// the caller's job.
package epoch

import (
	"context"
	"errors"
	"iter"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/maypok86/otter/v2"

	"github.com/agentcache/agentcache-go/internal/keyspace"
	"github.com/agentcache/agentcache-go/tier"
)

// keepAges bounds, in MaxAge, how long [Table.Keep] keeps a cell
// refreshed after the last fill that depends on it: the refresh's work in
// L2 grows with the cells it keeps, and a scope idle for longer pays one
// confirmation when it comes back.
const keepAges = 8

// staleTicks is how many ticks of MaxAge/staleTicks make a cell stale; half
// of it starts a refresh in the background.
const staleTicks = 4

// unverified is the tick value of a cell that must be confirmed before it is
// trusted again.
const unverified = -1 << 62

// forever is the tick value of a cell that needs no confirmation (no L2 that
// keeps epochs).
const forever = 1 << 62

// Cell is what this instance knows of one epoch.
type Cell struct {
	key      string        // the epoch's key in L2
	val      atomic.Uint64 // current value; 0 while unknown and once the cell is dead
	verified atomic.Int64  // tick of the last confirmation, or unverified/forever
	dead     atomic.Bool   // the cell left the table: entries stamped with it miss
	usedAt   atomic.Int64  // 1 + the tick of the last lookup that used it (0: none)
	keep     atomic.Int64  // the refresh keeps it confirmed until this tick: entries depend on it ([Table.Keep])
	// knownAt is when (local Unix µs) this instance last learned the value
	// L2 holds: a confirmation, an announcement, or its own bump. 0: never.
	knownAt atomic.Int64
	// loading is the confirmation of this cell in flight, if any: lookups
	// that need the cell confirmed wait for it instead of sending their own.
	loading atomic.Pointer[loadCall]
	// shared is set once val is known to be the value in L2 (read from it,
	// written to it, or announced by an instance that wrote it). Until then
	// val is this instance's alone, and entries stamped with it stay out of
	// L2, where nobody else could find them.
	shared atomic.Bool

	mu  sync.Mutex // serializes writers; readers use the atomics
	seq uint64     // guarded by mu: bumped by every pushed update
	// dirty, guarded by mu, marks a value set by an invalidation that L2
	// has not stored yet. A dirty cell never adopts L2's value (that would
	// undo the invalidation); it pushes its own until L2 takes it.
	dirty bool
}

// loadCall is one confirmation in flight; done is closed when it ends.
type loadCall struct{ done chan struct{} }

// Key returns the epoch's key in L2.
func (c *Cell) Key() string { return c.key }

// Val returns the cell's current value: 0 while unknown and once the cell is
// dead.
func (c *Cell) Val() uint64 { return c.val.Load() }

// Stamp is the set of epochs an entry was created under: up to four cells
// and the values they had.
type Stamp struct {
	cells [4]*Cell
	vals  [4]uint64
	n     uint8
	// local is set when some epoch is not known to L2: the lookup then
	// neither reads nor writes L2.
	local bool
	// down is set when confirming the epochs found L2 unreachable: the
	// lookup then spends no more time on L2 (one timeout per lookup at most).
	down bool
}

// StampOf returns a stamp of the values vals (at most four) and no cells, as
// a snapshot restores them: it is never [Stamp.Valid], and [Stamp.SameVals]
// compares its values with a confirmed stamp's. [Stamp.Current] must not be
// called on it.
func StampOf(vals []uint64) Stamp {
	var s Stamp
	s.n = uint8(copy(s.vals[:], vals))
	return s
}

// Add appends c to the cells of s, which has room for four. [Table.Confirm]
// then gives s their values.
func (s *Stamp) Add(c *Cell) {
	s.cells[s.n] = c
	s.n++
}

// Valid reports whether every epoch of s is unchanged and trusted at tick
// (see [Table.Tick]). It is the L1 hit check, so it stays a handful of
// loads.
func (s *Stamp) Valid(tick int64) bool {
	for i := uint8(0); i < s.n; i++ {
		c := s.cells[i]
		if c == nil {
			return false
		}
		if v := c.val.Load(); v == 0 || v != s.vals[i] || tick-c.verified.Load() >= staleTicks {
			return false
		}
		c.use(tick)
	}
	return true
}

// SameVals reports whether s and o carry the same epoch values.
func (s *Stamp) SameVals(o *Stamp) bool {
	if s.n != o.n {
		return false
	}
	for i := uint8(0); i < s.n; i++ {
		if s.vals[i] != o.vals[i] {
			return false
		}
	}
	return true
}

// Current reports whether the cells still hold the stamped values.
func (s *Stamp) Current() bool {
	for i := uint8(0); i < s.n; i++ {
		if v := s.cells[i].val.Load(); v == 0 || v != s.vals[i] {
			return false
		}
	}
	return true
}

// Known reports whether every cell of s had a value when s was stamped
// (after [Table.Begin], some may not have yet).
func (s *Stamp) Known() bool {
	for i := uint8(0); i < s.n; i++ {
		if s.vals[i] == 0 {
			return false
		}
	}
	return true
}

// Token mixes the stamped values into the generation of an entry.
func (s *Stamp) Token() uint64 { return keyspace.Token(s.vals[:s.n]...) }

// KnownSince returns the local time (Unix µs) since which this instance has
// known every stamped epoch's value as L2 held it (0: some never): a record
// loaded after it may have been loaded under epochs it has not heard of.
func (s *Stamp) KnownSince() int64 {
	var k int64
	for i := uint8(0); i < s.n; i++ {
		c := s.cells[i]
		if c == nil {
			return 0
		}
		v := c.knownAt.Load()
		if v == 0 {
			return 0
		}
		if k == 0 || v < k {
			k = v
		}
	}
	return k
}

// Seal is a stamp as an L1 entry keeps it: the cells (a nil cell ends
// them) and the sum of the values they had, in 40 bytes where a Stamp
// takes 72. Values only grow, so while the sum of the cells' values does
// not overflow, it equals the sealed sum exactly when every value does; a
// sum that overflows is never valid (and one that overflowed when sealed
// overflows ever after). The zero Seal, with no cells, is never valid.
type Seal struct {
	cells [4]*Cell
	sum   uint64
}

// Seal returns s as an entry keeps it. (If the sum overflows, so does
// every later sum of the cells' values: the seal is never valid.)
func (s *Stamp) Seal() Seal {
	m := Seal{cells: s.cells}
	for i := uint8(0); i < s.n; i++ {
		m.sum += s.vals[i]
	}
	return m
}

// Valid reports whether every epoch of m is unchanged and trusted at tick
// (see [Table.Tick]), as [Stamp.Valid] does: the L1 hit check.
func (m *Seal) Valid(tick int64) bool {
	if m.cells[0] == nil {
		return false
	}
	var sum, carry uint64
	for _, c := range m.cells {
		if c == nil {
			break
		}
		v := c.val.Load()
		if v == 0 || tick-c.verified.Load() >= staleTicks {
			return false
		}
		if sum, carry = bits.Add64(sum, v, 0); carry != 0 {
			return false
		}
		c.use(tick)
	}
	return sum == m.sum
}

// Is reports whether m seals st's cells and values: st, stamped later,
// has the same cells and no smaller values, so equal sums mean equal
// values.
func (m *Seal) Is(st *Stamp) bool {
	if m.cells != st.cells || m.cells[0] == nil {
		return false
	}
	var sum, carry uint64
	for i := uint8(0); i < st.n; i++ {
		if sum, carry = bits.Add64(sum, st.vals[i], 0); carry != 0 {
			return false
		}
	}
	return sum == m.sum
}

// AppendVals appends the sealed values to dst, read once from the cells,
// and reports whether they are still current (else dst is returned as it
// was).
func (m *Seal) AppendVals(dst []uint64) ([]uint64, bool) {
	n := len(dst)
	for _, c := range m.cells {
		if c == nil {
			break
		}
		dst = append(dst, c.val.Load())
	}
	if sum, ok := sumOf(dst[n:]); !ok || sum != m.sum || n == len(dst) || slices.Contains(dst[n:], 0) {
		return dst[:n], false
	}
	return dst, true
}

// sumOf adds vals, reporting false if the sum overflows.
func sumOf(vals []uint64) (uint64, bool) {
	var sum, carry uint64
	for _, v := range vals {
		if sum, carry = bits.Add64(sum, v, 0); carry != 0 {
			return 0, false
		}
	}
	return sum, true
}

// KeepSeal is [Table.Keep] for the cells of a seal.
func (t *Table) KeepSeal(m *Seal, ttl time.Duration) {
	st := Stamp{cells: m.cells}
	for st.n < 4 && st.cells[st.n] != nil {
		st.n++
	}
	t.Keep(&st, ttl)
}

// Vals returns the stamped values, in the order of the cells.
func (s *Stamp) Vals() []uint64 { return s.vals[:s.n] }

// Local reports whether some epoch of s is not known to L2 (after
// [Table.Confirm]): the lookup then neither reads nor writes L2.
func (s *Stamp) Local() bool { return s.local }

// Down reports whether confirming s found L2 unreachable: the lookup then
// spends no more time on L2.
func (s *Stamp) Down() bool { return s.down }

// localEpoch returns an epoch value after cur from this process's clock:
// the value of a cell that no L2 keeps, or that L2 could not be told of yet.
// Zero means unknown, so it is never returned.
func localEpoch(cur uint64) uint64 {
	return max(cur+1, uint64(time.Now().UnixMicro()))
}

// L2Func runs op against L2 under the name what, with the caller's timeout
// and bookkeeping, and returns op's error or why it was not run.
type L2Func func(ctx context.Context, what string, op func(ctx context.Context) error) error

// Config is what a [Table] needs from its cache.
type Config struct {
	// Store keeps the epochs in L2; nil: there is no L2, and the cells hold
	// values of this process's own, trusted forever.
	Store tier.Epochs
	// Call runs an L2 call (behind the circuit breaker); Probe runs one
	// even while the breaker is open.
	Call, Probe L2Func
	// Spawn runs fn in the background and reports whether it did (false
	// once the cache is closing).
	Spawn func(fn func()) bool
	// Base is the context of background confirmations.
	Base context.Context
	// MaxAge is how long a cell is trusted after it was confirmed.
	MaxAge time.Duration
	// TTL returns the L2 expiry of an epoch key (0: none).
	TTL func(key string) time.Duration
	// Dirty is called when cells become dirty: [Table.Flush] has work.
	Dirty func()
	// Notice returns the notice a bump of the epoch at key publishes with
	// its new value (nil: none), so that other instances learn it in the
	// bump's own round trip.
	Notice func(key string) *tier.Notice
	// Resets returns a counter that moves whenever messages may have been
	// lost (the subscription was re-established): a confirmation that
	// spans a move is not trusted. Nil: it never moves.
	Resets func() uint64
	// MaxScoped bounds the per-scope cells; the least used die first.
	MaxScoped int
	// Restored holds epoch values from a snapshot: the values of cells
	// when there is no Store, and otherwise the least a store may hold
	// (passed as known until the cell learns a value).
	Restored map[string]uint64
}

// Table is the instance's table of cells: the global and per-resource
// epochs, which are never dropped, and the per-scope ones, bounded.
type Table struct {
	cfg    Config
	tick   atomic.Int64
	global *Cell

	pendMu  sync.Mutex         // guards pending
	pending map[*Cell]struct{} // dirty cells: invalidations L2 has not stored

	pinned sync.Map // key → *Cell: the global and per-resource epochs, never dropped
	scoped *otter.Cache[string, *Cell]

	stop chan struct{}
	wg   sync.WaitGroup
}

// New returns a table configured by cfg. [Table.Start] starts its tick.
func New(cfg Config) (*Table, error) {
	if cfg.Resets == nil {
		cfg.Resets = func() uint64 { return 0 }
	}
	if cfg.Dirty == nil {
		cfg.Dirty = func() {}
	}
	if cfg.Notice == nil {
		cfg.Notice = func(string) *tier.Notice { return nil }
	}
	t := &Table{cfg: cfg, stop: make(chan struct{})}
	sc, err := otter.New(&otter.Options[string, *Cell]{
		MaximumSize: cfg.MaxScoped,
		// A cell that leaves the table is dead: entries stamped with it
		// miss and the next lookup builds a fresh cell.
		OnAtomicDeletion: func(ev otter.DeletionEvent[string, *Cell]) {
			if ev.Cause != otter.CauseReplacement {
				ev.Value.dead.Store(true)
				ev.Value.val.Store(0)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	t.scoped = sc
	t.global = t.Pinned(keyspace.GlobalEpochKey)
	return t, nil
}

// Start runs the tick (MaxAge/4 per tick) and, every second tick, the
// background confirmation of the cells in use.
func (t *Table) Start() {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		tk := time.NewTicker(t.cfg.MaxAge / staleTicks)
		defer tk.Stop()
		for {
			select {
			case <-t.stop:
				return
			case <-tk.C:
				if t.tick.Add(1)%(staleTicks/2) == 0 {
					t.refresh()
				}
			}
		}
	}()
}

// Keep asks the background refresh to keep the cells of s confirmed for
// ttl (ttl <= 0: no expiry), at most keepAges × MaxAge: an entry stamped
// with them lives that long, and its next hit then finds them confirmed
// although it comes long after the last one. It is called on L1 fills,
// never on hits.
func (t *Table) Keep(s *Stamp, ttl time.Duration) {
	ticks := int64(keepAges * staleTicks)
	if ttl > 0 {
		ticks = min(ticks, 1+int64(ttl/(t.cfg.MaxAge/staleTicks)))
	}
	until := t.tick.Load() + ticks
	for i := uint8(0); i < s.n; i++ {
		c := s.cells[i]
		for c != nil {
			cur := c.keep.Load()
			if cur >= until || c.keep.CompareAndSwap(cur, until) {
				break
			}
		}
	}
}

// use records a lookup of c at tick: a load first, so that the store
// happens once per tick.
func (c *Cell) use(tick int64) {
	if c.usedAt.Load() != tick+1 {
		c.usedAt.Store(tick + 1)
	}
}

// refresh confirms, in one call, every cell in use (used in the last
// MaxAge, or kept by [Table.Keep]) that was confirmed before the current
// tick: such a cell is never older than MaxAge/2 and a tick, and no lookup
// waits for it. A cell out of use is left to go stale: its next lookup
// confirms it (a hit's one round trip) or carries its load (a read's). It
// runs on the tick's goroutine; a slow L2 delays the next tick, which only
// makes cells look older (never younger) than they are.
func (t *Table) refresh() {
	if t.cfg.Store == nil {
		return
	}
	tick := t.tick.Load()
	var cells []*Cell
	for c := range t.All() {
		u := c.usedAt.Load()
		inUse := u != 0 && tick+1-u < staleTicks || c.keep.Load() >= tick
		if inUse && tick-c.verified.Load() >= 1 && !c.dead.Load() {
			cells = append(cells, c)
		}
	}
	if len(cells) > 0 {
		t.confirm(t.cfg.Base, cells, tick)
	}
}

// Close stops the tick and the per-scope table's goroutines.
func (t *Table) Close() {
	close(t.stop)
	t.wg.Wait()
	t.scoped.StopAllGoroutines()
}

// Tick returns the current tick, for [Stamp.Valid].
func (t *Table) Tick() int64 { return t.tick.Load() }

// Global returns the cell of the whole cache's epoch.
func (t *Table) Global() *Cell { return t.global }

func (t *Table) newCell(key string) *Cell {
	c := &Cell{key: key}
	if t.cfg.Store == nil {
		v, ok := t.cfg.Restored[key]
		if !ok {
			v = localEpoch(0)
		}
		c.val.Store(v)
		c.verified.Store(forever)
		c.shared.Store(true) // no L2: nobody else to agree with
	} else {
		c.verified.Store(unverified) // unknown (0) until L2 answers
	}
	return c
}

// Pinned returns the never-dropped cell for key (a per-resource epoch),
// creating it if needed.
func (t *Table) Pinned(key string) *Cell {
	if c, ok := t.pinned.Load(key); ok {
		return c.(*Cell)
	}
	c, _ := t.pinned.LoadOrStore(key, t.newCell(key))
	return c.(*Cell)
}

// Scoped returns the cell for a per-scope epoch, creating it if needed.
func (t *Table) Scoped(key string) *Cell {
	if c, ok := t.scoped.GetIfPresent(key); ok {
		return c
	}
	c, _ := t.scoped.SetIfAbsent(key, t.newCell(key))
	return c
}

// ScopedOf is [Table.Scoped] for a key in b, which it copies only when the
// cell is new: a lookup of a known scope allocates nothing for it.
func (t *Table) ScopedOf(b []byte) *Cell {
	// GetIfPresent keeps no reference to the key.
	if c, ok := t.scoped.GetIfPresent(unsafe.String(unsafe.SliceData(b), len(b))); ok {
		return c
	}
	return t.Scoped(string(b))
}

// lookup returns the cell for key if this instance has one.
func (t *Table) lookup(key string) *Cell {
	if c, ok := t.pinned.Load(key); ok {
		return c.(*Cell)
	}
	if c, ok := t.scoped.GetIfPresent(key); ok {
		return c
	}
	return nil
}

// All yields every cell of the table: the pinned ones, then the per-scope
// ones.
func (t *Table) All() iter.Seq[*Cell] {
	return func(yield func(*Cell) bool) {
		ok := true
		t.pinned.Range(func(_, v any) bool { ok = yield(v.(*Cell)); return ok })
		if !ok {
			return
		}
		for _, c := range t.scoped.All() {
			if !yield(c) {
				return
			}
		}
	}
}

// Pending is the confirmation a lookup's own L2 read carries: the cells of
// its stamp that must be confirmed, and the loads that confirm them (see
// [Table.Begin]).
type Pending struct {
	Cells  []*Cell
	Ops    []tier.EpochOp
	tick   int64
	resets uint64
}

// Stale reports whether some cell of s must be confirmed with L2 before a
// lookup may use it: past MaxAge, never confirmed, or dirty.
// It counts as a use of every cell, which the background refresh keeps
// confirmed from then on.
func (t *Table) Stale(s *Stamp) bool {
	tick := t.tick.Load()
	stale := false
	for i := uint8(0); i < s.n; i++ {
		c := s.cells[i]
		c.use(tick)
		if tick-c.verified.Load() >= staleTicks || !c.shared.Load() && isDirty(c) {
			stale = true
		}
	}
	return stale
}

// Begin gives s the values its cells hold now, confirmed or not (0 for a
// cell that knows none), and returns the loads that confirm its stale
// cells, for a read that carries them (tier.Fencer.ReadRecords). The read's
// answer goes to [Table.Finish]. ok is false for a stamp with a dirty cell,
// which must go through [Table.Confirm] instead (its bump is pushed first).
func (t *Table) Begin(s *Stamp) (p Pending, ok bool) {
	p = Pending{tick: t.tick.Load(), resets: t.cfg.Resets()}
	for i := uint8(0); i < s.n; i++ {
		c := s.cells[i]
		if !c.shared.Load() && isDirty(c) {
			return Pending{}, false
		}
		s.vals[i] = c.val.Load()
		if p.tick-c.verified.Load() >= staleTicks && t.cfg.Store != nil {
			p.Cells = append(p.Cells, c)
			p.Ops = append(p.Ops, t.op(c))
		}
	}
	return p, true
}

// Finish adopts what L2 answered for p's loads (ok false: it did not), and
// gives s its values, Local and Down, as [Table.Confirm] does.
func (t *Table) Finish(s *Stamp, p Pending, vals []uint64, ok bool) {
	if ok && len(vals) == len(p.Cells) {
		t.adoptAll(p.Cells, vals, p.tick, t.cfg.Resets() == p.resets)
	} else if len(p.Cells) > 0 {
		ok = false
	}
	s.down = !ok
	t.fill(s)
}

// op is the load of c's epoch.
func (t *Table) op(c *Cell) tier.EpochOp {
	return tier.EpochOp{Key: c.key, Known: t.known(c), TTL: t.cfg.TTL(c.key)}
}

// Confirm brings the cells of s up to date with L2 where they are past
// MaxAge, and gives s their values (and Local and Down). Lookups that need
// the same cell at once share one call. It never fails: when L2 cannot be
// asked, the cells keep what they know (availability over a bound that
// nobody could break without L2 either).
func (t *Table) Confirm(ctx context.Context, s *Stamp) {
	tick := t.tick.Load()
	var need []*Cell
	dirty := false
	for i := uint8(0); i < s.n; i++ {
		c := s.cells[i]
		if tick-c.verified.Load() >= staleTicks {
			need = append(need, c)
		}
		if !c.shared.Load() && isDirty(c) {
			dirty = true
		}
	}
	s.down = false
	if dirty && !t.Flush(ctx, false) {
		s.down = true
	}
	if len(need) > 0 && !s.down && !t.confirm(ctx, need, tick-staleTicks+1) {
		s.down = true
	}
	t.fill(s)
}

// fill gives s the values of its cells, and Local.
func (t *Table) fill(s *Stamp) {
	s.local = false
	for i := uint8(0); i < s.n; i++ {
		c := s.cells[i]
		v := c.val.Load()
		if v == 0 && !c.dead.Load() {
			// L2 could not say: the value a snapshot restored (so that the
			// restored entries are served while L2 is unreachable), or else
			// a value of this instance's own. Either keeps the lookup's
			// entries out of L2 until L2 answers (the cell is not shared).
			c.mu.Lock()
			if v = c.val.Load(); v == 0 && !c.dead.Load() {
				if v = t.cfg.Restored[c.key]; v == 0 {
					v = localEpoch(0)
				}
				c.val.Store(v)
			}
			c.mu.Unlock()
		}
		s.vals[i] = v
		if !c.shared.Load() {
			s.local = true
		}
	}
}

// confirm confirms cells with L2 in one call, joining the confirmations of
// cells already in flight instead of sending them again. It reports false
// if L2 did not answer for every cell.
//
// A cell confirmed at tick since or later (by a call that ended between the
// caller's check and this one) is not sent again.
func (t *Table) confirm(ctx context.Context, cells []*Cell, since int64) bool {
	if t.cfg.Store == nil {
		return true
	}
	mine := &loadCall{done: make(chan struct{})}
	var own []*Cell
	var wait []*loadCall
	take := func(c *Cell) {
		if c.verified.Load() >= since {
			c.loading.Store(nil) // confirmed meanwhile
			return
		}
		own = append(own, c)
	}
	for _, c := range cells {
		if c.loading.CompareAndSwap(nil, mine) {
			take(c)
		} else if l := c.loading.Load(); l != nil {
			wait = append(wait, l)
		} else if c.loading.CompareAndSwap(nil, mine) { // it just ended
			take(c)
		}
	}
	ok := true
	if len(own) > 0 {
		ok = t.load(ctx, own)
		for _, c := range own {
			c.loading.Store(nil)
		}
	}
	close(mine.done) // also for callers that joined a cell given back by take
	for _, l := range wait {
		select {
		case <-l.done:
		case <-ctx.Done():
			return false
		}
	}
	if len(wait) > 0 {
		tick := t.tick.Load()
		for _, c := range cells {
			if tick-c.verified.Load() >= staleTicks {
				ok = false // the call we joined did not confirm it
			}
		}
	}
	return ok
}

// load confirms cells with L2, in one call. It reports false if L2 did not
// answer.
func (t *Table) load(ctx context.Context, cells []*Cell) bool {
	ops := make([]tier.EpochOp, len(cells))
	for i, c := range cells {
		ops[i] = t.op(c)
	}
	tick := t.tick.Load()
	resets := t.cfg.Resets()
	var vals []uint64
	err := t.cfg.Call(ctx, "epoch read", func(ctx context.Context) (err error) {
		vals, err = t.cfg.Store.LoadEpochs(ctx, ops)
		return err
	})
	if err != nil || len(vals) != len(cells) {
		return false
	}
	t.adoptAll(cells, vals, tick, t.cfg.Resets() == resets)
	return true
}

// adoptAll adopts vals, which L2 returned for cells when the clock read
// tick; confirmed is false when messages may have been lost around the
// read (a subscription reset).
func (t *Table) adoptAll(cells []*Cell, vals []uint64, tick int64, confirmed bool) {
	for i, c := range cells {
		c.mu.Lock()
		// A dirty cell keeps its own value: L2's predates the invalidation.
		// A reset while we asked means messages may have been lost around
		// our read: take the value but confirm it again next time.
		if !c.dead.Load() && !c.dirty {
			adopt(c, vals[i])
			if confirmed {
				c.verified.Store(tick)
				c.knownAt.Store(time.Now().UnixMicro())
			}
		}
		c.mu.Unlock()
	}
}

// known is the value of c that L2 must not go below: its value once L2 or
// the fleet has confirmed it, else what a snapshot restored (0: none).
func (t *Table) known(c *Cell) uint64 {
	if c.shared.Load() {
		return c.val.Load()
	}
	return t.cfg.Restored[c.key]
}

// adopt makes v, a value L2 holds, the cell's, unless the cell already has a
// greater shared value: epochs never go back. The caller holds c.mu.
func adopt(c *Cell, v uint64) {
	if v == 0 || c.shared.Load() && v <= c.val.Load() {
		return
	}
	c.seq++
	c.val.Store(v)
	c.shared.Store(true)
}

func isDirty(c *Cell) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dirty
}

// Learn adopts val, a value L2 took for the epoch at key (announced by the
// instance that had it take it), if this instance has a cell for key that is
// neither dead nor dirty and val is greater. No confirmation is needed:
// values only grow, whatever order announcements arrive in.
func (t *Table) Learn(key string, val uint64) {
	c := t.lookup(key)
	if c == nil {
		return
	}
	c.mu.Lock()
	if !c.dead.Load() && !c.dirty {
		adopt(c, val)
		if c.val.Load() == val {
			c.knownAt.Store(time.Now().UnixMicro())
		}
	}
	c.mu.Unlock()
}

// Distrust makes the cells of s unconfirmed: a record in L2 suggests that
// L2 holds epochs this instance has not heard of (see [Stamp.KnownSince]).
func (t *Table) Distrust(s *Stamp) {
	for i := uint8(0); i < s.n; i++ {
		if c := s.cells[i]; c != nil && c.verified.Load() != forever {
			c.verified.Store(unverified)
		}
	}
}

// Unconfirm marks every cell unconfirmed: the next lookup of each confirms
// it with L2 first (messages may have been lost). Without a Store it does
// nothing.
func (t *Table) Unconfirm() {
	if t.cfg.Store == nil {
		return
	}
	for c := range t.All() {
		c.mu.Lock()
		c.verified.Store(unverified)
		c.mu.Unlock()
	}
}

// markDirty records that L2 did not take the invalidation of these cells;
// Flush pushes it until it does.
func (t *Table) markDirty(cells []*Cell) {
	t.pendMu.Lock()
	defer t.pendMu.Unlock()
	if t.pending == nil {
		t.pending = map[*Cell]struct{}{}
	}
	for _, c := range cells {
		c.mu.Lock()
		c.dirty = true
		t.pending[c] = struct{}{}
		c.mu.Unlock()
	}
	t.cfg.Dirty()
}

// Pending reports whether some cells are dirty: bumps L2 has not taken.
func (t *Table) Pending() bool {
	t.pendMu.Lock()
	defer t.pendMu.Unlock()
	return len(t.pending) > 0
}

// Flush bumps the dirty cells in L2 (their notices announce the new
// values), so that an invalidation made while L2 was unreachable reaches
// everyone once it is back (the caller's repair loop runs it until
// it succeeds, with probe set to call L2 whatever the breaker says, and
// Confirm runs it before using a dirty cell). It reports whether nothing is
// left pending.
func (t *Table) Flush(ctx context.Context, probe bool) bool {
	t.pendMu.Lock()
	cells := make([]*Cell, 0, len(t.pending))
	for c := range t.pending {
		cells = append(cells, c)
	}
	t.pendMu.Unlock()
	if len(cells) == 0 {
		return true
	}
	vals, err := t.bumpL2(ctx, cells, probe, nil)
	if err != nil {
		return false
	}
	tick := t.tick.Load()
	t.pendMu.Lock()
	for i, c := range cells {
		c.mu.Lock()
		c.dirty = false
		c.shared.Store(false) // adopt L2's value, which is after the provisional one
		adopt(c, vals[i])
		c.verified.Store(tick)
		c.knownAt.Store(time.Now().UnixMicro())
		delete(t.pending, c)
		c.mu.Unlock()
	}
	t.pendMu.Unlock()
	return true
}

// bumpL2 bumps the cells' epochs in L2, in one call (send, or the store's
// BumpEpochs when send is nil), and returns the new values in the order of
// cells. probe sends the call even while the breaker is open (the repair
// loop's own cadence bounds them).
func (t *Table) bumpL2(ctx context.Context, cells []*Cell, probe bool, send Sender) ([]uint64, error) {
	ops := make([]tier.EpochOp, len(cells))
	for i, c := range cells {
		c.mu.Lock()
		known := c.val.Load() // a provisional value too: L2 must go past it
		c.mu.Unlock()
		ops[i] = tier.EpochOp{Key: c.key, Known: known, TTL: t.cfg.TTL(c.key), Notice: t.cfg.Notice(c.key)}
	}
	if send == nil {
		send = t.cfg.Store.BumpEpochs
	}
	call := t.cfg.Call
	if probe {
		call = t.cfg.Probe
	}
	var vals []uint64
	err := call(ctx, "epoch write", func(ctx context.Context) (err error) {
		vals, err = send(ctx, ops)
		if err == nil && len(vals) != len(ops) {
			err = errors.New("agentcache: L2 returned a wrong number of epochs")
		}
		return err
	})
	return vals, err
}

// Sender sends epoch bumps to L2 in one call, and returns the new values:
// the store's BumpEpochs, or a call that carries other writes too (an
// invalidation's tombstones) and the bumps' notices.
type Sender func(ctx context.Context, ops []tier.EpochOp) ([]uint64, error)

// Bump gives each cell a new value, ordered after every earlier one: in L2
// (which chooses it, by script) and then here; or, when L2 cannot be
// reached, a provisional value of this instance's own that Flush pushes to
// L2 later (the cells are dirty until then, and Config.Dirty is called).
// Either way the local change is made before Bump returns. send, if not
// nil, is the call that carries the bumps to L2 (with the invalidation's
// other writes); the bumps' notices announce the new values. It returns
// L2's error.
func (t *Table) Bump(ctx context.Context, cells []*Cell, send Sender) error {
	if t.cfg.Store == nil {
		for _, c := range cells {
			c.mu.Lock()
			c.seq++
			c.val.Store(localEpoch(c.val.Load()))
			c.mu.Unlock()
		}
		return nil
	}
	if len(cells) == 0 {
		return nil
	}
	vals, err := t.bumpL2(ctx, cells, false, send)
	if err != nil {
		// L2 keeps the old values: the invalidation must not be undone by
		// the next confirmation, and must reach L2 when it answers.
		for _, c := range cells {
			c.mu.Lock()
			c.seq++
			c.val.Store(localEpoch(c.val.Load()))
			c.shared.Store(false) // this instance's alone until L2 has it
			c.mu.Unlock()
		}
		t.markDirty(cells)
		return err
	}
	tick := t.tick.Load()
	for i, c := range cells {
		c.mu.Lock()
		adopt(c, vals[i])
		c.verified.Store(tick)
		c.knownAt.Store(time.Now().UnixMicro())
		c.mu.Unlock()
	}
	return nil
}
