package agentcache

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentcache/agentcache-go/tier"
)

// writeOp is one queued L2 write.
type writeOp struct {
	key      string
	value    []byte // nil with del
	ttl      time.Duration
	ifAbsent bool
	del      bool
	// announce, if set, is an L1 key the other instances are told to drop
	// once the write has landed (so they reload the new value from L2).
	announce string
}

// writer is the bounded write-behind queue in front of L2. Callers never
// wait for it: a full queue drops the write and counts it. One goroutine
// drains it, sending up to WriteBatchSize writes per pipeline.
type writer struct {
	c     *Cache
	ch    chan writeOp
	mu    sync.RWMutex // guards closed against enqueues racing close(ch)
	shut  bool
	quit  atomic.Bool // set when Close's ctx ends: drop what is left
	abort context.CancelFunc
	ctx   context.Context
	done  chan struct{}
	bw    tier.BatchWriter
	adder tier.Adder
}

func newWriter(c *Cache) *writer {
	w := &writer{c: c, done: make(chan struct{})}
	if c.l2 == nil {
		close(w.done)
		return w
	}
	w.ch = make(chan writeOp, c.opts.WriteQueueSize)
	w.ctx, w.abort = context.WithCancel(context.Background())
	w.bw, _ = c.l2.(tier.BatchWriter)
	w.adder, _ = c.l2.(tier.Adder)
	go w.run()
	return w
}

// shutDown reports whether Close has shut the queue: from then on no L2
// write is attempted, queued or written through.
func (w *writer) shutDown() bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.shut
}

// enqueue hands op to the queue without waiting. It reports false, and
// counts the drop, when the queue is full or closed.
func (w *writer) enqueue(op writeOp) bool {
	if w.ch == nil {
		return false
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.shut {
		w.c.stats.writesDropped.Add(1)
		return false
	}
	select {
	case w.ch <- op:
		w.c.stats.writesQueued.Add(1)
		return true
	default:
		w.c.stats.writesDropped.Add(1)
		w.c.warn("queue full", "agentcache: L2 write queue is full; dropping writes (they stay in L1)", nil)
		return false
	}
}

func (w *writer) depth() int {
	if w.ch == nil {
		return 0
	}
	return len(w.ch)
}

func (w *writer) run() {
	defer close(w.done)
	batch := make([]writeOp, 0, w.c.opts.WriteBatchSize)
	for op := range w.ch {
		batch = append(batch[:0], op)
	fill:
		for len(batch) < cap(batch) {
			select {
			case op, ok := <-w.ch:
				if !ok {
					break fill
				}
				batch = append(batch, op)
			default:
				break fill
			}
		}
		if w.quit.Load() {
			w.c.stats.writesDropped.Add(uint64(len(batch)))
			continue
		}
		w.flush(batch)
	}
}

// flush sends one batch. Writes refused by the breaker are skipped and
// counted; failed ones are counted and logged.
func (w *writer) flush(batch []writeOp) {
	c := w.c
	if !c.brk.Allow() {
		c.stats.writesSkipped.Add(uint64(len(batch)))
		return
	}
	ctx, cancel := context.WithTimeout(w.ctx, 2*c.opts.L2Timeout)
	defer cancel()
	errs, err := w.send(ctx, batch)
	c.record(w.ctx, "write", err)
	if err != nil {
		c.stats.writesFailed.Add(uint64(len(batch)))
		return
	}
	var announce []string
	for i, op := range batch {
		if errs != nil && errs[i] != nil {
			c.stats.writesFailed.Add(1)
			c.stats.l2Errors.Add(1) // one node of a cluster refused its part
			c.warn("write", "agentcache: an L2 write failed", errs[i])
			continue
		}
		c.stats.writesDone.Add(1)
		if op.announce != "" {
			announce = append(announce, op.announce)
		}
	}
	if len(announce) > 0 {
		_ = c.ep.publish(w.ctx, message{From: c.id, Keys: announce})
	}
}

func (w *writer) send(ctx context.Context, batch []writeOp) ([]error, error) {
	l2 := w.c.l2
	var dels []string
	writes := make([]tier.Write, 0, len(batch))
	idx := make([]int, 0, len(batch))
	for i, op := range batch {
		if op.del {
			dels = append(dels, op.key)
			continue
		}
		writes = append(writes, tier.Write{Key: op.key, Value: op.value, TTL: op.ttl, IfAbsent: op.ifAbsent})
		idx = append(idx, i)
	}
	if len(dels) > 0 {
		if err := l2.Delete(ctx, dels...); err != nil {
			return nil, err
		}
	}
	if len(writes) == 0 {
		return nil, nil
	}
	errs := make([]error, len(batch))
	if w.bw != nil {
		werrs, err := w.bw.SetMulti(ctx, writes)
		if err != nil {
			return nil, err
		}
		for j, e := range werrs {
			errs[idx[j]] = e
		}
		return errs, nil
	}
	for j, wr := range writes {
		var err error
		switch {
		case wr.IfAbsent && w.adder != nil:
			_, err = w.adder.SetIfAbsent(ctx, wr.Key, wr.Value, wr.TTL)
		case wr.IfAbsent:
			continue // without Adder a marker could overwrite a value: skip it
		default:
			err = l2.Set(ctx, wr.Key, wr.Value, wr.TTL)
		}
		if err != nil && ctx.Err() != nil {
			return nil, err
		}
		errs[idx[j]] = err
	}
	return errs, nil
}

// close stops accepting writes and drains the queue until ctx ends; what is
// still queued then is dropped and counted.
func (w *writer) close(ctx context.Context) error {
	if w.ch == nil {
		return nil
	}
	w.mu.Lock()
	if !w.shut {
		w.shut = true
		close(w.ch)
	}
	w.mu.Unlock()
	select {
	case <-w.done:
		w.abort()
		return nil
	case <-ctx.Done():
		w.quit.Store(true)
		w.abort()
		<-w.done
		return fmt.Errorf("agentcache: L2 write queue not drained at Close: %w", ctx.Err())
	}
}
