package agentcache

import (
	"context"
	"encoding/json"
	"math/rand/v2"
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
	val      atomic.Uint64 // current value; 0 once the cell left the table
	verified atomic.Int64  // tick of the last confirmation, or unverified/forever
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
		if c == nil || c.val.Load() != s.vals[i] || tick-c.verified.Load() >= staleTicks {
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
		if s.cells[i].val.Load() != s.vals[i] {
			return false
		}
	}
	return true
}

// token mixes the stamped values into the key segment of an entry.
func (s *stamp) token() uint64 { return keyspace.Token(s.vals[:s.n]...) }

// newEpochValue returns a random epoch value. Zero marks a dead cell, so it
// is never returned.
func newEpochValue() uint64 {
	for {
		if v := rand.Uint64(); v != 0 {
			return v
		}
	}
}

// epochs is the instance's table of cells.
type epochs struct {
	c      *Cache
	store  tier.Epochs      // nil: epochs are local only
	bcast  tier.Broadcaster // nil: no invalidation messages
	tick   atomic.Int64
	resets atomic.Uint64 // subscription resets seen
	global *cell

	pendMu  sync.Mutex         // guards pending
	pending map[*cell]struct{} // dirty cells: invalidations L2 has not stored

	pinned sync.Map // key → *cell: the global and per-resource epochs, never dropped
	scoped *otter.Cache[string, *cell]

	restored map[string]uint64 // epoch values from a snapshot, used when there is no store

	stop  chan struct{}
	wg    sync.WaitGroup
	ready chan struct{} // closed once the subscription is up, or failed once
	once  sync.Once
}

func newEpochs(c *Cache, maxScoped int, restored map[string]uint64) (*epochs, error) {
	e := &epochs{c: c, stop: make(chan struct{}), restored: restored, ready: make(chan struct{})}
	if c.l2 != nil {
		e.store, _ = c.l2.(tier.Epochs)
		if e.store != nil {
			e.bcast, _ = c.l2.(tier.Broadcaster)
		}
	}
	sc, err := otter.New(&otter.Options[string, *cell]{
		MaximumSize: maxScoped,
		// A cell that leaves the table is dead: entries stamped with it
		// miss and the next lookup builds a fresh cell.
		OnAtomicDeletion: func(ev otter.DeletionEvent[string, *cell]) {
			if ev.Cause != otter.CauseReplacement {
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
	if v, ok := e.restored[key]; ok && e.store == nil {
		c.val.Store(v)
	} else {
		c.val.Store(newEpochValue())
	}
	if e.store == nil {
		c.verified.Store(forever)
		c.shared.Store(true) // no epoch store: keys carry what every instance starts with
	} else {
		c.verified.Store(unverified)
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
	if dirty && !e.flush(ctx) {
		s.down = true
	}
	if len(need) > 0 && !s.down && !e.load(ctx, need) {
		s.down = true
	}
	s.local = false
	for i := uint8(0); i < s.n; i++ {
		s.vals[i] = s.cells[i].val.Load()
		if !s.cells[i].shared.Load() {
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
	fresh := make([]uint64, len(cells))
	seqs := make([]uint64, len(cells))
	for i, c := range cells {
		keys[i] = c.key
		fresh[i] = newEpochValue()
		c.mu.Lock()
		seqs[i] = c.seq
		c.mu.Unlock()
	}
	tick := e.tick.Load()
	resets := e.resets.Load()
	var vals []uint64
	err := e.c.l2Call(ctx, "epoch read", func(ctx context.Context) (err error) {
		vals, err = e.store.LoadEpochs(ctx, keys, fresh, ttl)
		return err
	})
	if err != nil || len(vals) != len(cells) {
		return false
	}
	confirmed := e.resets.Load() == resets
	for i, c := range cells {
		c.mu.Lock()
		// An update pushed while we asked is newer than our answer: keep it
		// and leave the cell for the next confirmation. A reset while we
		// asked means messages may have been lost around our read: take the
		// value (it is L2's) but confirm it again next time. A dirty cell
		// keeps its own value: L2's predates the invalidation.
		if c.seq == seqs[i] && c.val.Load() != 0 && !c.dirty {
			c.val.Store(vals[i])
			c.shared.Store(true)
			if confirmed {
				c.verified.Store(tick)
			}
		}
		c.mu.Unlock()
	}
	return true
}

func (e *epochs) isDirty(c *cell) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dirty
}

// markDirty records that L2 did not take the values an invalidation gave
// these cells; flush pushes them until it does.
func (e *epochs) markDirty(cells []*cell, vals []uint64) {
	e.pendMu.Lock()
	defer e.pendMu.Unlock()
	if e.pending == nil {
		e.pending = map[*cell]struct{}{}
	}
	for i, c := range cells {
		c.mu.Lock()
		if c.val.Load() == vals[i] {
			c.dirty = true
			e.pending[c] = struct{}{}
		}
		c.mu.Unlock()
	}
	e.c.rp.signal()
}

// flush stores the values of dirty cells in L2 and tells the fleet, so that
// an invalidation made while L2 was unreachable reaches everyone once it is
// back (the repair loop runs it until it succeeds, and a lookup runs it
// before using a dirty cell). It reports whether nothing is left pending.
func (e *epochs) flush(ctx context.Context) bool {
	e.pendMu.Lock()
	cells := make([]*cell, 0, len(e.pending))
	for c := range e.pending {
		cells = append(cells, c)
	}
	e.pendMu.Unlock()
	if len(cells) == 0 {
		return true
	}
	vals := make([]uint64, len(cells))
	for i, c := range cells {
		vals[i] = c.val.Load()
	}
	if err := e.store2(ctx, cells, vals); err != nil {
		return false
	}
	tick := e.tick.Load()
	msg := message{From: e.c.id}
	e.pendMu.Lock()
	for i, c := range cells {
		c.mu.Lock()
		if c.val.Load() == vals[i] {
			c.dirty = false
			c.shared.Store(true)
			c.verified.Store(tick)
			delete(e.pending, c)
			msg.Epochs = append(msg.Epochs, epochUpdate{Key: c.key, Val: vals[i]})
		}
		c.mu.Unlock()
	}
	e.pendMu.Unlock()
	_ = e.publish(ctx, msg)
	return true
}

// store2 writes epoch values to L2, one call per expiry class.
func (e *epochs) store2(ctx context.Context, cells []*cell, vals []uint64) error {
	byCell := make(map[*cell]uint64, len(cells))
	for i, c := range cells {
		byCell[c] = vals[i]
	}
	return e.c.l2Call(ctx, "epoch write", func(ctx context.Context) error {
		for ttl, group := range e.group(cells) {
			keys := make([]string, len(group))
			vs := make([]uint64, len(group))
			for i, c := range group {
				keys[i], vs[i] = c.key, byCell[c]
			}
			if err := e.store.StoreEpochs(ctx, keys, vs, ttl); err != nil {
				return err
			}
		}
		return nil
	})
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

// bump gives each cell a new value locally and in L2, deletes the exact
// L2 keys, and tells the fleet (epochs and L1 keys) in one message. The
// local change is applied first and always; the error says whether the
// fleet was told.
func (e *epochs) bump(ctx context.Context, cells []*cell, l1Keys, l2Keys []string) error {
	tick := e.tick.Load()
	msg := message{From: e.c.id, Keys: l1Keys}
	for _, c := range cells {
		v := newEpochValue()
		c.mu.Lock()
		c.seq++
		c.val.Store(v)
		if e.store != nil {
			// The new value is this instance's alone until L2 has it.
			c.shared.Store(false)
			c.verified.Store(tick)
		}
		c.mu.Unlock()
		msg.Epochs = append(msg.Epochs, epochUpdate{Key: c.key, Val: v})
	}
	if e.c.l2 == nil {
		return nil
	}
	if e.store == nil && len(cells) > 0 {
		return errNoEpochStore
	}
	if len(l2Keys) > 0 {
		if err := e.c.l2Call(ctx, "invalidate", func(ctx context.Context) error {
			return e.c.l2.Delete(ctx, l2Keys...)
		}); err != nil {
			// No epoch records an exact invalidation: keep the deletes (and
			// their announcement) until L2 takes them, and meanwhile never
			// read those keys from L2.
			for i, k := range l2Keys {
				e.c.rp.addDelete(k, l1Keys[i])
			}
			if len(cells) > 0 {
				vals := make([]uint64, len(cells))
				for i, u := range msg.Epochs {
					vals[i] = u.Val
				}
				e.markDirty(cells, vals)
			}
			return err
		}
	}
	vals := make([]uint64, len(cells))
	for i, u := range msg.Epochs {
		vals[i] = u.Val
	}
	if len(cells) > 0 {
		if err := e.store2(ctx, cells, vals); err != nil {
			// L2 keeps the old values: the invalidation must not be undone
			// by the next confirmation, and must reach L2 when it answers.
			e.markDirty(cells, vals)
			return err
		}
	}
	for _, u := range msg.Epochs {
		if c := e.lookupCell(u.Key); c != nil && c.val.Load() == u.Val {
			c.shared.Store(true)
		}
	}
	return e.publish(ctx, msg)
}

// message is what instances tell each other on the invalidation channel.
type message struct {
	From   string        `json:"f"`
	Epochs []epochUpdate `json:"e,omitempty"`
	Keys   []string      `json:"k,omitempty"` // L1 keys to drop
	Fills  []string      `json:"l,omitempty"` // L2 keys just filled under a lease
	Clear  bool          `json:"c,omitempty"` // drop every L1 entry
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

// apply handles a message from another instance. An epoch it carries is
// applied at once and then confirmed with L2 before it is trusted again:
// two invalidations racing on different instances may publish out of order,
// and L2 holds the one that won.
func (e *epochs) apply(m message) {
	if m.From == e.c.id {
		return
	}
	for _, u := range m.Epochs {
		c := e.lookupCell(u.Key)
		if c == nil || u.Val == 0 {
			continue
		}
		c.mu.Lock()
		c.seq++
		if c.val.Load() != 0 && !c.dirty {
			c.val.Store(u.Val)
			c.shared.Store(true)
		}
		c.verified.Store(unverified)
		c.mu.Unlock()
	}
	for _, k := range m.Keys {
		e.c.l1.Delete(k)
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
