package redis

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/internal/redistest"
)

// dialCounter counts new connections.
type dialCounter struct{ n atomic.Int64 }

func (d *dialCounter) DialHook(next goredis.DialHook) goredis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		d.n.Add(1)
		return next(ctx, network, addr)
	}
}
func (d *dialCounter) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook { return next }
func (d *dialCounter) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return next
}

// TestIsolationUnderCancellation is the property the whole cache relies on:
// with one connection shared by many goroutines whose requests are cut off
// at random moments (before sending, while waiting for the reply, while
// waiting for the connection), every Get that succeeds returns the value its
// own goroutine wrote. A reply left unread on a connection by a cancelled
// call must never be read by the next caller.
func TestIsolationUnderCancellation(t *testing.T) {
	srv := redistest.Start(t)
	o := srv.Options()
	o.PoolSize = 1
	o.PoolTimeout = 10 * time.Second
	o.ContextTimeoutEnabled = true
	client := goredis.NewClient(o)
	t.Cleanup(func() { _ = client.Close() })
	dials := &dialCounter{}
	client.AddHook(dials)
	s, err := New(client, Options{Prefix: "iso:"})
	if err != nil {
		t.Fatal(err)
	}

	const workers, rounds = 16, 200
	var ok, cut atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			key := fmt.Sprintf("user:%d", w)
			for i := range rounds {
				want := fmt.Sprintf("user:%d:round:%d:%s", w, i, make([]byte, r.IntN(2048)))
				setCtx, cancelSet := context.WithTimeout(context.Background(), 10*time.Second)
				err := s.Set(setCtx, key, []byte(want), time.Minute)
				cancelSet()
				if err != nil {
					t.Errorf("Set: %v", err)
					return
				}
				var ctx context.Context
				var cancel context.CancelFunc
				// Mostly deadlines around the time a read takes while 15 others
				// queue for the connection; now and then a generous one, so that
				// some reads succeed even on a slow machine.
				d := time.Duration(r.IntN(3000)) * time.Microsecond
				if r.IntN(8) == 0 {
					d = time.Second
				}
				if r.IntN(2) == 0 {
					ctx, cancel = context.WithTimeout(context.Background(), d)
				} else {
					ctx, cancel = context.WithCancel(context.Background())
					time.AfterFunc(d, cancel)
				}
				v, found, err := s.Get(ctx, key)
				cancel()
				if err != nil {
					cut.Add(1)
					continue
				}
				ok.Add(1)
				if !found || string(v) != want {
					t.Errorf("goroutine %d round %d: Get returned (%.40q, %v), want its own %.40q", w, i, v, found, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d reads succeeded, %d were cut off, %d connections dialed", ok.Load(), cut.Load(), dials.n.Load())
	if ok.Load() == 0 || cut.Load() == 0 {
		t.Fatal("the test needs both successful and cut-off reads to mean anything")
	}
	if dials.n.Load() < 2 {
		t.Fatal("no connection was ever discarded: no read was cut off mid-flight, the test proved nothing")
	}
}
