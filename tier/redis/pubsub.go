package redis

import (
	"context"
	"fmt"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/tier"
)

// Publish implements [tier.Broadcaster] with PUBLISH. On a cluster it goes to
// the master that owns the channel's hash slot (go-redis would otherwise pick
// any node for each call, and messages relayed by different nodes can
// overtake each other).
func (s *Store) Publish(ctx context.Context, channel string, msg []byte) error {
	if err := s.begin(ctx, "publish"); err != nil {
		return err
	}
	cmd := publishCmd(ctx, s.prefix+channel, msg)
	_ = s.client.Process(ctx, cmd)
	if err := cmd.Err(); err != nil {
		return s.fail(ctx, "publish", err)
	}
	return nil
}

// publishCmd is the PUBLISH of msg on the full channel name, routed by the
// channel like a key: on a cluster to the master of its slot, on a Ring to
// its shard, where Subscribe connects.
func publishCmd(ctx context.Context, channel string, msg []byte) *goredis.IntCmd {
	cmd := goredis.NewIntCmd(ctx, "publish", channel, msg)
	cmd.SetFirstKeyPos(1)
	return cmd
}

// Subscribe implements [tier.Broadcaster] with SUBSCRIBE on a dedicated
// connection (on a cluster, to the master that owns the channel's slot). It
// returns once Redis has confirmed the subscription; that confirmation is the
// first delivery, a Reset. go-redis re-subscribes after the connection is
// lost; each new confirmation is delivered as another Reset. A receiver that
// lets Options.SubscriptionBuffer messages pile up loses them and gets a
// Reset instead. The subscription's goroutines stop on its Close or the
// store's.
func (s *Store) Subscribe(ctx context.Context, channel string) (tier.Subscription, error) {
	if err := s.begin(ctx, "subscribe"); err != nil {
		return nil, err
	}
	ps, err := s.pubSub(ctx, s.prefix+channel)
	if err != nil {
		return nil, s.fail(ctx, "subscribe", err)
	}
	sub := &subscription{
		store:  s,
		ps:     ps,
		out:    make(chan tier.Message, s.subBuf),
		ready:  make(chan struct{}),
		done:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		_ = ps.Close()
		return nil, fmt.Errorf("redis: subscribe: %w", tier.ErrClosed)
	}
	s.subs[sub] = struct{}{}
	s.mu.Unlock()

	go sub.run(ps.ChannelWithSubscriptions())

	select {
	case <-sub.ready:
		return sub, nil
	case <-sub.exited: // closed by the store's Close
		return nil, fmt.Errorf("redis: subscribe: %w", tier.ErrClosed)
	case <-ctx.Done():
		_ = sub.Close()
		return nil, fmt.Errorf("redis: subscribe: %w", ctx.Err())
	}
}

// pubSub opens a go-redis PubSub subscribed to channel.
func (s *Store) pubSub(ctx context.Context, channel string) (ps *goredis.PubSub, err error) {
	if ring, ok := s.client.(*goredis.Ring); ok {
		// A Ring picks the shard from the channel given to Subscribe (and
		// panics without one, or without a live shard); subscription errors
		// then surface as the missing confirmation.
		defer func() {
			if r := recover(); r != nil {
				ps, err = nil, fmt.Errorf("ring: %v", r)
			}
		}()
		return ring.Subscribe(ctx, channel), nil
	}
	// Subscribing in a second step returns the error that Subscribe with a
	// channel would drop.
	ps = s.client.Subscribe(ctx)
	if err := ps.Subscribe(ctx, channel); err != nil {
		_ = ps.Close()
		return nil, err
	}
	return ps, nil
}

// subscription is one Subscribe. Its pump goroutine is the only sender on
// out, which is what lets it drop the backlog without blocking.
type subscription struct {
	store *Store
	ps    *goredis.PubSub
	out   chan tier.Message

	ready     chan struct{} // closed at the first confirmation
	done      chan struct{} // closed by Close
	exited    chan struct{} // closed when run has returned
	closeOnce sync.Once
}

// C implements [tier.Subscription].
func (sub *subscription) C() <-chan tier.Message { return sub.out }

// Close implements [tier.Subscription]. When it returns, C is closed and the
// goroutines of the subscription (this package's and go-redis's) have
// stopped.
func (sub *subscription) Close() error {
	sub.closeOnce.Do(func() { close(sub.done) })
	<-sub.exited
	sub.store.mu.Lock()
	delete(sub.store.subs, sub)
	sub.store.mu.Unlock()
	return nil
}

// watchInterval is how often a cluster subscription checks its connection.
const watchInterval = time.Second

// run pumps messages until Close. On a cluster it also runs a watchdog: when
// the subscription's node is gone (a failover), go-redis keeps re-dialing the
// node its cached slot map names until that map is reloaded, which by default
// happens once a minute; the watchdog reloads it as soon as a ping fails, so
// the subscription moves to the new master within seconds.
func (sub *subscription) run(in <-chan any) {
	defer close(sub.exited)
	var watching sync.WaitGroup
	if cc, ok := sub.store.client.(*goredis.ClusterClient); ok {
		watching.Add(1)
		go func() {
			defer watching.Done()
			sub.watch(cc)
		}()
	}
	sub.pump(in)
	watching.Wait()
}

func (sub *subscription) watch(cc *goredis.ClusterClient) {
	tick := time.NewTicker(watchInterval)
	defer tick.Stop()
	for {
		select {
		case <-sub.done:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), watchInterval)
		if err := sub.ps.Ping(ctx); err != nil {
			cc.ReloadState(ctx)
		}
		cancel()
	}
}

// pump turns go-redis deliveries into tier.Messages until Close.
func (sub *subscription) pump(in <-chan any) {
	defer close(sub.out)
	first := true
	for {
		select {
		case <-sub.done:
			_ = sub.ps.Close()
			// go-redis closes in once its receiving goroutine has seen the
			// close; draining it makes sure that goroutine is not stuck
			// sending to a full channel.
			for range in {
			}
			return
		case m, ok := <-in:
			if !ok {
				return
			}
			switch m := m.(type) {
			case *goredis.Subscription:
				if m.Kind != "subscribe" {
					continue
				}
				sub.deliver(tier.Message{Reset: true})
				if first {
					first = false
					close(sub.ready)
				}
			case *goredis.Message:
				sub.deliver(tier.Message{Payload: []byte(m.Payload)})
			}
		}
	}
}

// deliver hands m to the receiver without blocking. If the buffer is full the
// receiver has fallen behind: its backlog (and m) is dropped and replaced by
// one Reset, which tells it that it missed messages.
func (sub *subscription) deliver(m tier.Message) {
	select {
	case sub.out <- m:
		return
	default:
	}
	for drained := false; !drained; {
		select {
		case <-sub.out:
		default:
			drained = true
		}
	}
	// pump is the only sender, so there is room now.
	sub.out <- tier.Message{Reset: true}
}
