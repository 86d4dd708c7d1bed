package agentcache

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

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

// bus is the cache's side of the invalidation channel: the subscription
// that applies other instances' messages.
type bus struct {
	c      *Cache
	bcast  tier.Broadcaster // nil: no invalidation messages
	resets atomic.Uint64    // subscription resets seen
	// live is set while the subscription is up: announcements reach this
	// instance, or a reset says they may not have.
	live atomic.Bool

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

// Most messages are not sent on their own: the store publishes them in the
// round trip of the write they announce (tier.Notice), with the number the
// write made (an epoch's new value, a tombstone's stamp) inserted, so that
// announcing costs no round trip and nobody hears of a write L2 did not
// make. The notices below are those messages, cut where the number goes.

// notice returns the notice of a message whose JSON is before, the number,
// then after; nil when there is nobody to tell.
func (c *Cache) notice(before, after string) *tier.Notice {
	if c.bus.bcast == nil {
		return nil
	}
	return &tier.Notice{Channel: invalidationChannel, Before: []byte(before), After: []byte(after)}
}

// jsonString is s as a JSON string.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// epochNotice announces a new value of the epoch at key.
func (c *Cache) epochNotice(key string) *tier.Notice {
	return c.notice(`{"f":`+jsonString(c.id)+`,"e":[{"k":`+jsonString(key)+`,"v":"`, `"}]}`)
}

// fenceNotice announces an exact invalidation of the L1 key l1, with the
// stamp of its tombstone.
func (c *Cache) fenceNotice(l1 string) *tier.Notice {
	return c.notice(`{"f":`+jsonString(c.id)+`,"k":[`+jsonString(l1)+`],"s":[`, `]}`)
}

// messageNotice is m as a notice with no number in it.
func (c *Cache) messageNotice(m message) *tier.Notice {
	if c.bus.bcast == nil {
		return nil
	}
	m.From = c.id
	b, err := json.Marshal(m)
	if err != nil {
		return nil
	}
	return &tier.Notice{Channel: invalidationChannel, Before: b}
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
	if len(m.Epochs) > 0 || len(m.Keys) > 0 || m.Clear {
		c.stats.invalidationsHeard.Add(1)
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
	c.fills.notifyAll() // a fill announced meanwhile may be lost
	for k, en := range c.l1.All() {
		if !en.restored() {
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
				b.live.Store(false)
				b.reset()
				return
			}
			if m.Reset {
				b.reset()
				b.live.Store(true)
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
