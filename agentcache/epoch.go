package agentcache

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/maypok86/otter/v2"

	"github.com/agentcache/agentcache-go/internal/keyspace"
	"github.com/agentcache/agentcache-go/tier"
)

// Epochs make invalidation O(1). Every cache key carries a token mixed from
// up to four epochs — the whole cache, the resource, the scope, and the
// resource in the scope — so bumping one epoch makes every entry under it
// unreachable at once, on every instance, with no scan. Old entries age out
// by TTL.
//
// Epoch values only grow (see tier.Epochs): L2 creates and bumps them from
// its clock in a script, an instance adopts a value only if it is greater
// than the one it has, and it passes what it knows to every read, so that a
// store that lost a write (a failover, a restored backup) is raised back
// instead of pulling the instance back.
//
// Each instance keeps what it knows of an epoch in a cell. An L1 entry keeps
// pointers to the cells it was stamped with and the values they had, so an
// L1 hit checks a few atomics and never touches a map. A cell is trusted for
// MaxEpochAge after it was last confirmed with L2; invalidation messages
// update cells at once, and a lost message is therefore bounded by
// MaxEpochAge. A reconnect of the message subscription marks every cell
// unconfirmed.

// staleTicks is how many ticks of MaxEpochAge/staleTicks make a cell stale;
// half of it starts a refresh in the background.
const staleTicks = 4

// unverified is the tick value of a cell that must be confirmed before it is
// trusted again.
const unverified = -1 << 62

// forever is the tick value of a cell that needs no confirmation (no L2 that
// keeps epochs).
const forever = 1 << 62

// invalidation channel, relative to the L2 prefix.
const invalidationChannel = "inv"

// cell is what this instance knows of one epoch.
type cell struct {
	key      string        // the epoch's key in L2
	val      atomic.Uint64 // current value; 0 while unknown and once the cell is dead
	verified atomic.Int64  // tick of the last confirmation, or unverified/forever
	dead     atomic.Bool   // the cell left the table: entries stamped with it miss
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

	refreshing atomic.Bool // a background confirmation is running
}

// stamp is the set of epochs an entry was created under.
type stamp struct {
	cells [4]*cell
	vals  [4]uint64
	n     uint8
	// local is set when some epoch is not known to L2: the lookup then
	// neither reads nor writes L2.
	local bool
	// down is set when confirming the epochs found L2 unreachable: the
	// lookup then spends no more time on L2 (one timeout per lookup at most).
	down bool
}

// valid reports whether every epoch of s is unchanged and trusted at tick.
// It is the L1 hit check, so it stays a handful of loads.
func (s *stamp) valid(tick int64) bool {
	for i := uint8(0); i < s.n; i++ {
		c := s.cells[i]
		if c == nil {
			return false
		}
		if v := c.val.Load(); v == 0 || v != s.vals[i] || tick-c.verified.Load() >= staleTicks {
			return false
		}
	}
	return true
}

// sameVals reports whether s and o carry the same epoch values.
func (s *stamp) sameVals(o *stamp) bool {
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

// current reports whether the cells still hold the stamped values.
func (s *stamp) current() bool {
	for i := uint8(0); i < s.n; i++ {
		if v := s.cells[i].val.Load(); v == 0 || v != s.vals[i] {
			return false
		}
	}
	return true
}

// token mixes the stamped values into the key segment of an entry.
func (s *stamp) token() uint64 { return keyspace.Token(s.vals[:s.n]...) }

// localEpoch returns an epoch value after cur from this process's clock:
// the value of a cell that no L2 keeps, or that L2 could not be told of yet.
// Zero means unknown, so it is never returned.
func localEpoch(cur uint64) uint64 {
	return max(cur+1, uint64(time.Now().UnixMicro()))
}

// epochs is the instance's table of cells.
type epochs struct {
	c      *Cache
	store  tier.Epochs      // nil: no L2, epochs are local only
	bcast  tier.Broadcaster // nil: no invalidation messages
	tick   atomic.Int64
	resets atomic.Uint64 // subscription resets seen
	global *cell

	pendMu  sync.Mutex         // guards pending
	pending map[*cell]struct{} // dirty cells: invalidations L2 has not stored

	pinned sync.Map // key → *cell: the global and per-resource epochs, never dropped
	scoped *otter.Cache[string, *cell]

	// restored holds epoch values from a snapshot: the values of cells when
	// there is no store, and otherwise the least a store may hold (passed
	// as known until the cell learns a value).
	restored map[string]uint64

	stop  chan struct{}
	wg    sync.WaitGroup
	ready chan struct{} // closed once the subscription is up, or failed once
	once  sync.Once
}

func newEpochs(c *Cache, maxScoped int, restored map[string]uint64) (*epochs, error) {
	e := &epochs{c: c, stop: make(chan struct{}), restored: restored, ready: make(chan struct{})}
	if c.l2 != nil {
		e.store = tier.EpochsOver(c.l2)
		e.bcast, _ = c.l2.(tier.Broadcaster)
	}
	sc, err := otter.New(&otter.Options[string, *cell]{
		MaximumSize: maxScoped,
		// A cell that leaves the table is dead: entries stamped with it
		// miss and the next lookup builds a fresh cell.
		OnAtomicDeletion: func(ev otter.DeletionEvent[string, *cell]) {
			if ev.Cause != otter.CauseReplacement {
				ev.Value.dead.Store(true)
				ev.Value.val.Store(0)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	e.scoped = sc
	e.global = e.pinnedCell(keyspace.GlobalEpochKey)
	return e, nil
}

func (e *epochs) newCell(key string) *cell {
	c := &cell{key: key}
	if e.store == nil {
		v, ok := e.restored[key]
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

// pinnedCell returns the never-dropped cell for key.
func (e *epochs) pinnedCell(key string) *cell {
	if c, ok := e.pinned.Load(key); ok {
		return c.(*cell)
	}
	c, _ := e.pinned.LoadOrStore(key, e.newCell(key))
	return c.(*cell)
}

// scopedCell returns the cell for a per-scope epoch, creating it if needed.
func (e *epochs) scopedCell(key string) *cell {
	if c, ok := e.scoped.GetIfPresent(key); ok {
		return c
	}
	c, _ := e.scoped.SetIfAbsent(key, e.newCell(key))
	return c
}

// scopedCellOf is scopedCell for a key in b, which it copies only when the
// cell is new: a lookup of a known scope allocates nothing for it.
func (e *epochs) scopedCellOf(b []byte) *cell {
	// GetIfPresent keeps no reference to the key.
	if c, ok := e.scoped.GetIfPresent(unsafe.String(unsafe.SliceData(b), len(b))); ok {
		return c
	}
	return e.scopedCell(string(b))
}

// lookupCell returns the cell for key if this instance has one.
func (e *epochs) lookupCell(key string) *cell {
	if c, ok := e.pinned.Load(key); ok {
		return c.(*cell)
	}
	if c, ok := e.scoped.GetIfPresent(key); ok {
		return c
	}
	return nil
}

// confirm brings the cells of s up to date with L2 where they are stale, and
// returns the stamp to use for a lookup. It never fails: when L2 cannot be
// asked, the cells keep what they know (availability over a bound that
// nobody could break without L2 either).
func (e *epochs) confirm(ctx context.Context, s *stamp) {
	tick := e.tick.Load()
	var need []*cell
	dirty := false
	for i := uint8(0); i < s.n; i++ {
		c := s.cells[i]
		age := tick - c.verified.Load()
		switch {
		case age >= staleTicks:
			need = append(need, c)
		case age >= staleTicks/2:
			e.refreshAsync(c)
		}
		if !c.shared.Load() && e.isDirty(c) {
			dirty = true
		}
	}
	s.down = false
	if dirty && !e.flush(ctx, false) {
		s.down = true
	}
	if len(need) > 0 && !s.down && !e.load(ctx, need) {
		s.down = true
	}
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
				if v = e.restored[c.key]; v == 0 {
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

// load confirms cells with L2, one call per expiry class (so each epoch key
// is created with its own expiry). It reports false if L2 did not answer.
func (e *epochs) load(ctx context.Context, cells []*cell) bool {
	if e.store == nil {
		return true
	}
	for ttl, group := range e.group(cells) {
		if !e.loadGroup(ctx, group, ttl) {
			return false
		}
	}
	return true
}

func (e *epochs) loadGroup(ctx context.Context, cells []*cell, ttl time.Duration) bool {
	keys := make([]string, len(cells))
	known := make([]uint64, len(cells))
	for i, c := range cells {
		keys[i] = c.key
		known[i] = e.known(c)
	}
	tick := e.tick.Load()
	resets := e.resets.Load()
	var vals []uint64
	err := e.c.l2Call(ctx, "epoch read", func(ctx context.Context) (err error) {
		vals, err = e.store.LoadEpochs(ctx, keys, known, ttl)
		return err
	})
	if err != nil || len(vals) != len(cells) {
		return false
	}
	confirmed := e.resets.Load() == resets
	for i, c := range cells {
		c.mu.Lock()
		// A dirty cell keeps its own value: L2's predates the invalidation.
		// A reset while we asked means messages may have been lost around
		// our read: take the value but confirm it again next time.
		if !c.dead.Load() && !c.dirty {
			e.adopt(c, vals[i])
			if confirmed {
				c.verified.Store(tick)
			}
		}
		c.mu.Unlock()
	}
	return true
}

// known is the value of c that L2 must not go below: its value once L2 or
// the fleet has confirmed it, else what a snapshot restored (0: none).
func (e *epochs) known(c *cell) uint64 {
	if c.shared.Load() {
		return c.val.Load()
	}
	return e.restored[c.key]
}

// adopt makes v, a value L2 holds, the cell's, unless the cell already has a
// greater shared value: epochs never go back. The caller holds c.mu.
func (e *epochs) adopt(c *cell, v uint64) {
	if v == 0 || c.shared.Load() && v <= c.val.Load() {
		return
	}
	c.seq++
	c.val.Store(v)
	c.shared.Store(true)
}

func (e *epochs) isDirty(c *cell) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dirty
}

// markDirty records that L2 did not take the invalidation of these cells;
// flush pushes it until it does.
func (e *epochs) markDirty(cells []*cell) {
	e.pendMu.Lock()
	defer e.pendMu.Unlock()
	if e.pending == nil {
		e.pending = map[*cell]struct{}{}
	}
	for _, c := range cells {
		c.mu.Lock()
		c.dirty = true
		e.pending[c] = struct{}{}
		c.mu.Unlock()
	}
	e.c.rp.signal()
}

// flush bumps the dirty cells in L2 and tells the fleet, so that an
// invalidation made while L2 was unreachable reaches everyone once it is
// back (the repair loop runs it until it succeeds, whatever the breaker
// says, and a lookup runs it before using a dirty cell). It reports whether
// nothing is left pending.
func (e *epochs) flush(ctx context.Context, probe bool) bool {
	e.pendMu.Lock()
	cells := make([]*cell, 0, len(e.pending))
	for c := range e.pending {
		cells = append(cells, c)
	}
	e.pendMu.Unlock()
	if len(cells) == 0 {
		return true
	}
	vals, err := e.bumpL2(ctx, cells, probe)
	if err != nil {
		return false
	}
	tick := e.tick.Load()
	msg := message{From: e.c.id}
	e.pendMu.Lock()
	for i, c := range cells {
		c.mu.Lock()
		c.dirty = false
		c.shared.Store(false) // adopt L2's value, which is after the provisional one
		e.adopt(c, vals[i])
		c.verified.Store(tick)
		delete(e.pending, c)
		msg.Epochs = append(msg.Epochs, epochUpdate{Key: c.key, Val: c.val.Load()})
		c.mu.Unlock()
	}
	e.pendMu.Unlock()
	_ = e.publish(ctx, msg)
	return true
}

// bumpL2 bumps the cells' epochs in L2, one call per expiry class, and
// returns the new values in the order of cells. probe sends the calls even
// while the breaker is open (the repair loop's own cadence bounds them).
func (e *epochs) bumpL2(ctx context.Context, cells []*cell, probe bool) ([]uint64, error) {
	out := make([]uint64, len(cells))
	at := make(map[*cell]int, len(cells))
	for i, c := range cells {
		at[c] = i
	}
	call := e.c.l2Call
	if probe {
		call = e.c.l2Probe
	}
	err := call(ctx, "epoch write", func(ctx context.Context) error {
		for ttl, group := range e.group(cells) {
			keys := make([]string, len(group))
			known := make([]uint64, len(group))
			for i, c := range group {
				keys[i] = c.key
				c.mu.Lock()
				known[i] = c.val.Load() // a provisional value too: L2 must go past it
				c.mu.Unlock()
			}
			vals, err := e.store.BumpEpochs(ctx, keys, known, ttl)
			if err != nil {
				return err
			}
			if len(vals) != len(group) {
				return errors.New("agentcache: L2 returned a wrong number of epochs")
			}
			for i, c := range group {
				out[at[c]] = vals[i]
			}
		}
		return nil
	})
	return out, err
}

func (e *epochs) refreshAsync(c *cell) {
	if !c.refreshing.CompareAndSwap(false, true) {
		return
	}
	if !e.c.spawn(func() {
		defer c.refreshing.Store(false)
		e.load(e.c.base, []*cell{c})
	}) {
		c.refreshing.Store(false)
	}
}

// ttlFor returns the L2 expiry of an epoch key: the global and per-resource
// epochs live forever, per-scope ones expire (a new random value replaces an
// expired one, so expiry costs misses, never correctness).
func (e *epochs) ttlFor(key string) time.Duration {
	if key == keyspace.GlobalEpochKey || strings.HasPrefix(key, keyspace.ResourceEpochKey("")) {
		return 0
	}
	return e.c.opts.ScopeEpochTTL
}

// bump gives each cell a new value, ordered after every earlier one: in L2
// (which chooses it, by script) and then here; or, when L2 cannot be
// reached, a provisional value of this instance's own that the repair loop
// pushes to L2 later. Either way the local change is made before bump
// returns; the error says whether the fleet was told. The message carries
// the new epochs and the exact L1 keys to drop.
func (e *epochs) bump(ctx context.Context, cells []*cell, l1Keys []string, stamps []int64) error {
	msg := message{From: e.c.id, Keys: l1Keys, Stamps: stamps}
	if e.store == nil {
		for _, c := range cells {
			c.mu.Lock()
			c.seq++
			c.val.Store(localEpoch(c.val.Load()))
			c.mu.Unlock()
		}
		return nil
	}
	if len(cells) > 0 {
		vals, err := e.bumpL2(ctx, cells, false)
		if err != nil {
			// L2 keeps the old values: the invalidation must not be undone
			// by the next confirmation, and must reach L2 when it answers.
			for _, c := range cells {
				c.mu.Lock()
				c.seq++
				c.val.Store(localEpoch(c.val.Load()))
				c.shared.Store(false) // this instance's alone until L2 has it
				c.mu.Unlock()
			}
			e.markDirty(cells)
			return err
		}
		tick := e.tick.Load()
		for i, c := range cells {
			c.mu.Lock()
			e.adopt(c, vals[i])
			c.verified.Store(tick)
			msg.Epochs = append(msg.Epochs, epochUpdate{Key: c.key, Val: c.val.Load()})
			c.mu.Unlock()
		}
	}
	return e.publish(ctx, msg)
}

// message is what instances tell each other on the invalidation channel.
type message struct {
	From   string        `json:"f"`
	Epochs []epochUpdate `json:"e,omitempty"`
	Keys   []string      `json:"k,omitempty"` // L1 keys to drop
	// Stamps, when as long as Keys, are the store-clock stamps of the
	// invalidations of Keys (tombstones, or the records of Sets): records
	// stamped before them are not served.
	Stamps []int64  `json:"s,omitempty"`
	Fills  []string `json:"l,omitempty"` // L2 keys just filled under a lease
	Clear  bool     `json:"c,omitempty"` // drop every L1 entry
}

type epochUpdate struct {
	Key string `json:"k"`
	Val uint64 `json:"v,string"`
}

func (e *epochs) publish(ctx context.Context, m message) error {
	if e.bcast == nil {
		return nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return e.c.l2Call(ctx, "publish", func(ctx context.Context) error {
		return e.bcast.Publish(ctx, invalidationChannel, b)
	})
}

// apply handles a message from another instance.
func (e *epochs) apply(m message) {
	if m.From == e.c.id {
		return
	}
	for _, u := range m.Epochs {
		c := e.lookupCell(u.Key)
		if c == nil {
			continue
		}
		c.mu.Lock()
		// The value is one L2 took (instances publish after L2 did), so it
		// is adopted if greater; no confirmation is needed: values only
		// grow, whatever order messages arrive in.
		if !c.dead.Load() && !c.dirty {
			e.adopt(c, u.Val)
		}
		c.mu.Unlock()
	}
	for i, k := range m.Keys {
		var stamp int64 // 0: this instance's estimate of the store's clock
		if len(m.Stamps) == len(m.Keys) {
			stamp = m.Stamps[i]
		}
		e.c.fenceL1(k, stamp)
	}
	for _, k := range m.Fills {
		e.c.fills.notify(k)
	}
	if m.Clear {
		e.c.l1.Clear()
	}
}

// reset handles a (re)established subscription: messages may have been
// lost. Every cell becomes unconfirmed (epoch invalidations are then caught
// by the next confirmation), and L1 entries are dropped, because a lost
// message may have been an exact-key invalidation, which no epoch records.
// Entries restored from a snapshot stay: they are checked against the
// epochs on first use. Entries are reloaded from L2, not from the tools.
func (e *epochs) reset() {
	if e.store == nil {
		return
	}
	e.resets.Add(1)
	for k, en := range e.c.l1.All() {
		if !en.raw {
			e.c.l1.Delete(k)
		}
	}
	mark := func(c *cell) {
		c.mu.Lock()
		c.verified.Store(unverified)
		c.mu.Unlock()
	}
	e.pinned.Range(func(_, v any) bool { mark(v.(*cell)); return true })
	for _, c := range e.scoped.All() {
		mark(c)
	}
}

// start runs the ticker and, with a broadcaster, the subscription.
func (e *epochs) start() {
	period := e.c.opts.MaxEpochAge / staleTicks
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-e.stop:
				return
			case <-t.C:
				e.tick.Add(1)
			}
		}
	}()
	if e.bcast != nil {
		e.wg.Add(1)
		go e.listen()
	} else {
		e.markReady()
	}
}

func (e *epochs) markReady() { e.once.Do(func() { close(e.ready) }) }

// listen keeps a subscription to the invalidation channel, resubscribing
// with backoff when it cannot.
func (e *epochs) listen() {
	defer e.wg.Done()
	backoff := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-e.stop:
			case <-ctx.Done():
			}
			cancel()
		}()
		sub, err := e.bcast.Subscribe(ctx, invalidationChannel)
		if err != nil {
			cancel()
			e.markReady() // New stops waiting: the cache works without messages
			e.c.warn("subscribe", "agentcache: cannot subscribe to invalidations; epochs are confirmed every MaxEpochAge", err)
			select {
			case <-e.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		e.pump(sub)
		sub.Close()
		cancel()
		select {
		case <-e.stop:
			return
		default:
		}
	}
}

func (e *epochs) pump(sub tier.Subscription) {
	for {
		select {
		case <-e.stop:
			return
		case m, ok := <-sub.C():
			if !ok {
				e.reset()
				return
			}
			if m.Reset {
				e.reset()
				e.markReady()
				continue
			}
			var msg message
			if err := json.Unmarshal(m.Payload, &msg); err != nil {
				e.c.warn("bad message", "agentcache: ignoring an undecodable invalidation message", err)
				continue
			}
			e.apply(msg)
		}
	}
}

func (e *epochs) close() {
	close(e.stop)
	e.wg.Wait()
	e.scoped.StopAllGoroutines()
}
