package agentcache

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentcache/agentcache-go/internal/epoch"
	"github.com/agentcache/agentcache-go/tier"
)

// Instances tell each other of invalidations on one channel of L2: the new
// epoch values (package internal/epoch keeps them), the exact L1 keys to
// drop, the keys just filled under a lease, and Clear. A lost message is
// bounded by Options.MaxEpochAge, after which every epoch is confirmed with
// L2 again; a reconnect of the subscription marks every epoch unconfirmed
// and drops L1 at once.

// invalidation channel, relative to the L2 prefix.
const invalidationChannel = "inv"

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

// epochUpdates is ups as a message carries them.
func epochUpdates(ups []epoch.Update) []epochUpdate {
	var out []epochUpdate
	for _, u := range ups {
		out = append(out, epochUpdate(u))
	}
	return out
}

// bus is the cache's side of the invalidation channel: the subscription
// that applies other instances' messages.
type bus struct {
	c      *Cache
	bcast  tier.Broadcaster // nil: no invalidation messages
	resets atomic.Uint64    // subscription resets seen

	stop  chan struct{}
	wg    sync.WaitGroup
	ready chan struct{} // closed once the subscription is up, or failed once
	once  sync.Once
}

func newBus(c *Cache) *bus {
	b := &bus{c: c, stop: make(chan struct{}), ready: make(chan struct{})}
	if c.l2 != nil {
		b.bcast, _ = c.l2.(tier.Broadcaster)
	}
	return b
}

// bump bumps cells (see epoch.Table.Bump) and tells the fleet: one message
// carries the new epochs and the exact L1 keys to drop, with their stamps.
// The error says whether the fleet was told.
func (c *Cache) bump(ctx context.Context, cells []*epoch.Cell, l1Keys []string, stamps []int64) error {
	ups, err := c.ep.Bump(ctx, cells)
	if err != nil {
		return err
	}
	return c.publish(ctx, message{From: c.id, Epochs: epochUpdates(ups), Keys: l1Keys, Stamps: stamps})
}

// announceEpochs tells the fleet the values a flush of dirty epochs had L2
// take.
func (c *Cache) announceEpochs(ctx context.Context, ups []epoch.Update) {
	_ = c.publish(ctx, message{From: c.id, Epochs: epochUpdates(ups)})
}

func (c *Cache) publish(ctx context.Context, m message) error {
	b := c.bus.bcast
	if b == nil {
		return nil
	}
	p, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return c.l2Call(ctx, "publish", func(ctx context.Context) error {
		return b.Publish(ctx, invalidationChannel, p)
	})
}

// apply handles a message from another instance.
func (c *Cache) apply(m message) {
	if m.From == c.id {
		return
	}
	for _, u := range m.Epochs {
		// The value is one L2 took (instances publish after L2 did), so it
		// is adopted if greater.
		c.ep.Learn(u.Key, u.Val)
	}
	for i, k := range m.Keys {
		var stamp int64 // 0: this instance's estimate of the store's clock
		if len(m.Stamps) == len(m.Keys) {
			stamp = m.Stamps[i]
		}
		c.fenceL1(k, stamp)
	}
	for _, k := range m.Fills {
		c.fills.notify(k)
	}
	if m.Clear {
		c.l1.Clear()
	}
}

// reset handles a (re)established subscription: messages may have been
// lost. Every cell becomes unconfirmed (epoch invalidations are then caught
// by the next confirmation), and L1 entries are dropped, because a lost
// message may have been an exact-key invalidation, which no epoch records.
// Entries restored from a snapshot stay: they are checked against the
// epochs on first use. Entries are reloaded from L2, not from the tools.
func (b *bus) reset() {
	c := b.c
	if c.l2 == nil {
		return
	}
	b.resets.Add(1)
	for k, en := range c.l1.All() {
		if !en.raw {
			c.l1.Delete(k)
		}
	}
	c.ep.Unconfirm()
}

// start runs the subscription, if there is a broadcaster.
func (b *bus) start() {
	if b.bcast != nil {
		b.wg.Add(1)
		go b.listen()
	} else {
		b.markReady()
	}
}

func (b *bus) markReady() { b.once.Do(func() { close(b.ready) }) }

// listen keeps a subscription to the invalidation channel, resubscribing
// with backoff when it cannot.
func (b *bus) listen() {
	defer b.wg.Done()
	backoff := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-b.stop:
			case <-ctx.Done():
			}
			cancel()
		}()
		sub, err := b.bcast.Subscribe(ctx, invalidationChannel)
		if err != nil {
			cancel()
			b.markReady() // New stops waiting: the cache works without messages
			b.c.warn("subscribe", "agentcache: cannot subscribe to invalidations; epochs are confirmed every MaxEpochAge", err)
			select {
			case <-b.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		b.pump(sub)
		sub.Close()
		cancel()
		select {
		case <-b.stop:
			return
		default:
		}
	}
}

func (b *bus) pump(sub tier.Subscription) {
	for {
		select {
		case <-b.stop:
			return
		case m, ok := <-sub.C():
			if !ok {
				b.reset()
				return
			}
			if m.Reset {
				b.reset()
				b.markReady()
				continue
			}
			var msg message
			if err := json.Unmarshal(m.Payload, &msg); err != nil {
				b.c.warn("bad message", "agentcache: ignoring an undecodable invalidation message", err)
				continue
			}
			b.c.apply(msg)
		}
	}
}

// close stops the subscription.
func (b *bus) close() {
	close(b.stop)
	b.wg.Wait()
}
