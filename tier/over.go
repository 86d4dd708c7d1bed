package tier

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"time"
)

// Fence returns r's [Fencer] if it has one, else records kept through r's
// five Remote methods: each step is a read then a write, not one atomic
// operation, so a write and an invalidation that race within that gap may
// land in either order, and the clock is this process's, not the store's.
// Leases are not taken (the fleet lock needs a [Locker] store). Epochs are
// r's own or [EpochsOver] r, and notices are published after the writes
// when r is a [Broadcaster].
func Fence(r Remote) Fencer {
	if f, ok := r.(Fencer); ok {
		return f
	}
	return basicFence{r: r, ep: EpochsOver(r)}
}

// EpochsOver returns r's [Epochs] if it has them, else epochs kept as
// ordinary keys (decimal text) through Get and Set, with the same ordering
// rules but without atomicity: two instances that create a missing epoch at
// once may each see their own value until the next confirmation.
func EpochsOver(r Remote) Epochs {
	if e, ok := r.(Epochs); ok {
		return e
	}
	return basicEpochs{r}
}

// lastMicros is the last reading of nowMicros.
var lastMicros atomic.Int64

// nowMicros is this process's clock, in the unit of record stamps and
// epochs. No two readings are equal and none goes back, so that an epoch
// created after a delete is after the value the key held even within one
// microsecond, and a load that begins after a tombstone is stamped after it.
func nowMicros() int64 {
	for {
		last := lastMicros.Load()
		n := max(time.Now().UnixMicro(), last+1)
		if lastMicros.CompareAndSwap(last, n) {
			return n
		}
	}
}

type basicFence struct {
	r  Remote
	ep Epochs
}

// notify publishes n with the number v (v < 0: none), if r broadcasts.
func notify(ctx context.Context, r Remote, n *Notice, v int64) {
	if b, ok := r.(Broadcaster); ok && n != nil {
		_ = b.Publish(ctx, n.Channel, n.Payload(v))
	}
}

func (b basicFence) ReadRecords(ctx context.Context, epochs []EpochOp, ops []ReadOp) ([]uint64, []ReadResult, error) {
	if err := checkEpochTTLs(epochs); err != nil {
		return nil, nil, err
	}
	var vals []uint64
	if len(epochs) > 0 {
		var err error
		if vals, err = b.ep.LoadEpochs(ctx, epochs); err != nil {
			return nil, nil, err
		}
	}
	out, err := b.read(ctx, ops)
	if err != nil {
		return nil, nil, err
	}
	return vals, out, nil
}

func (b basicFence) read(ctx context.Context, ops []ReadOp) ([]ReadResult, error) {
	out := make([]ReadResult, len(ops))
	for i, op := range ops {
		v, found, err := b.r.Get(ctx, op.Key)
		if err != nil {
			if ctx.Err() != nil || i == 0 || errors.Is(err, ErrClosed) {
				return nil, err
			}
			out[i].Err = err
			continue
		}
		out[i] = ReadResult{Value: v, Found: found, Now: nowMicros()}
	}
	return out, nil
}

func (b basicFence) WriteRecords(ctx context.Context, writes []RecordWrite) ([]WriteResult, error) {
	out := make([]WriteResult, len(writes))
	for i, w := range writes {
		o, err := b.write(ctx, w)
		if err != nil && (ctx.Err() != nil || errors.Is(err, ErrClosed)) {
			return nil, err
		}
		if o != Failed {
			notify(ctx, b.r, w.Notice, -1)
		}
		out[i] = WriteResult{Outcome: o, Err: err}
	}
	return out, nil
}

func (b basicFence) write(ctx context.Context, w RecordWrite) (Outcome, error) {
	rec, ok := ParseRecord(w.Record)
	if !ok {
		return Failed, errors.New("tier: write of bytes that are not a record")
	}
	kind, stamp := rec.Kind, rec.Stamp
	if w.Horizon > 0 && nowMicros()-stamp > w.Horizon.Microseconds() {
		return TooOld, nil
	}
	cur, found, err := b.r.Get(ctx, w.Key)
	if err != nil {
		return Failed, err
	}
	if !found || AheadOfClock(cur, nowMicros(), w.Horizon) {
		cur = nil
	}
	sk, stored, lands := Landed(cur, kind, stamp, rec.Gen)
	if !w.Replace {
		sk, stored = WithFloor(sk, stored, stamp, w.Floor)
	} else {
		sk, stored, lands = LandedReplace(cur, stamp, nowMicros())
	}
	if !lands {
		return Fenced, nil
	}
	if err := b.r.Set(ctx, w.Key, Rewrite(w.Record, sk, stored), w.TTL); err != nil {
		return Failed, err
	}
	return Written, nil
}

func (b basicFence) Invalidate(ctx context.Context, tombs []TombstoneOp, bumps []EpochOp) ([]int64, []uint64, error) {
	for _, t := range tombs {
		if t.TTL <= 0 { // a tombstone without an expiry would fence its key forever
			return nil, nil, errors.New("tier: tombstone: ttl must be positive")
		}
	}
	// Check the bumps too before writing anything: a call that fails
	// makes no tombstone.
	if err := checkEpochTTLs(bumps); err != nil {
		return nil, nil, err
	}
	stamps := make([]int64, len(tombs))
	for i, t := range tombs {
		stamp := nowMicros()
		if cur, found, err := b.r.Get(ctx, t.Key); err != nil {
			return nil, nil, err
		} else if found {
			if c, ok := ParseRecord(cur); ok && c.Stamp >= stamp {
				stamp = c.Stamp + 1
			}
		}
		if err := b.r.Set(ctx, t.Key, AppendRecord(nil, KindTombstone, stamp, 0, nil), t.TTL); err != nil {
			return nil, nil, err
		}
		stamps[i] = stamp
		notify(ctx, b.r, t.Notice, stamp)
	}
	var vals []uint64
	if len(bumps) > 0 {
		var err error
		if vals, err = b.ep.BumpEpochs(ctx, bumps); err != nil {
			return nil, nil, err
		}
	}
	return stamps, vals, nil
}

type basicEpochs struct{ r Remote }

// checkEpochTTLs fails a call with an op whose TTL is negative, before it
// writes anything.
func checkEpochTTLs(ops []EpochOp) error {
	for _, op := range ops {
		if op.TTL < 0 {
			return errors.New("tier: epochs: negative ttl")
		}
	}
	return nil
}

// get reads an epoch key; bytes that are not an epoch read as 0 (missing).
func (b basicEpochs) get(ctx context.Context, key string) (uint64, error) {
	v, found, err := b.r.Get(ctx, key)
	if err != nil || !found {
		return 0, err
	}
	n, perr := strconv.ParseUint(string(v), 10, 64)
	if perr != nil {
		return 0, nil
	}
	return n, nil
}

func (b basicEpochs) put(ctx context.Context, key string, v uint64, ttl time.Duration) error {
	return b.r.Set(ctx, key, strconv.AppendUint(nil, v, 10), ttl)
}

func (b basicEpochs) LoadEpochs(ctx context.Context, ops []EpochOp) ([]uint64, error) {
	if err := checkEpochTTLs(ops); err != nil {
		return nil, err
	}
	out := make([]uint64, len(ops))
	for i, op := range ops {
		cur, err := b.get(ctx, op.Key)
		if err != nil {
			return nil, err
		}
		switch {
		case cur == 0:
			cur = max(uint64(nowMicros()), op.Known+1)
		case cur < op.Known:
			cur = op.Known
		default:
			out[i] = cur
			continue
		}
		if err := b.put(ctx, op.Key, cur, op.TTL); err != nil {
			return nil, err
		}
		out[i] = cur
	}
	return out, nil
}

func (b basicEpochs) BumpEpochs(ctx context.Context, ops []EpochOp) ([]uint64, error) {
	if err := checkEpochTTLs(ops); err != nil {
		return nil, err
	}
	out := make([]uint64, len(ops))
	for i, op := range ops {
		cur, err := b.get(ctx, op.Key)
		if err != nil {
			return nil, err
		}
		v := max(cur+1, op.Known+1, uint64(nowMicros()))
		if err := b.put(ctx, op.Key, v, op.TTL); err != nil {
			return nil, err
		}
		out[i] = v
		notify(ctx, b.r, op.Notice, int64(v))
	}
	return out, nil
}
