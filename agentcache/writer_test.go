package agentcache

// The write-behind queue, whatever the L2: callers never wait for L2
// writes; a full queue drops writes and counts them, and they stay in L1.
// (Close drains the queue: TestCloseDrainsWriteQueue, close_test.go.)

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/internal/testkit/wait"
)

func TestFullWriteQueueDropsWithoutWaiting(t *testing.T) {
	for _, backend := range l2Backends {
		t.Run(backend.name, func(t *testing.T) {
			e := backend.open(t, 1)
			// A long L2Timeout: a caller that waited for a write would wait for it.
			c := rcNew(t, Options{L2: e.stores[0], L2Timeout: 20 * time.Second, Tuning: TuningOptions{WriteQueueSize: 1, WriteBatchSize: 1}})
			rcSubscribed(t, c)
			ctx := context.Background()
			if err := c.Set(ctx, "warm", -1, 0); err != nil {
				t.Fatal(err)
			}
			wait.For(t, 5*time.Second, "the warm-up write", func() bool { return c.Stats().WritesDone == 1 })

			e.Pause()
			const n = 200
			done := make(chan error, 1)
			go func() {
				for i := 0; i < n; i++ {
					if err := c.Set(ctx, fmt.Sprintf("k%d", i), i, 0); err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Set with a full queue: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Set blocked while L2 was paused and the queue was full; callers must never wait for L2 writes")
			}
			s := c.Stats()
			if s.WritesDropped < n-2 || s.WritesQueued+s.WritesDropped != n+1 {
				t.Fatalf("queue of 1 and a stuck writer: %d queued, %d dropped of %d writes", s.WritesQueued, s.WritesDropped, n+1)
			}
			// What was set is still served from L1.
			if v, err := Get(ctx, c, "k150", func(context.Context, string) (int, error) { return 0, errors.New("not in L1") }); err != nil || v != 150 {
				t.Fatalf("L1 after dropped writes: %d, %v", v, err)
			}

			e.Resume()
			// Not rcDrained: the drops here were never queued, and counting
			// them would call the queue drained while its one write is still
			// in flight.
			wait.For(t, 30*time.Second, "the queued writes", func() bool {
				s := c.Stats()
				return s.WriteQueueDepth == 0 && s.WritesDone+s.WritesFailed+s.WritesSkipped+s.WritesFenced >= s.WritesQueued
			})
			if s := c.Stats(); s.WritesDone != s.WritesQueued {
				t.Fatalf("after Resume: %d of %d queued writes done (stats %+v)", s.WritesDone, s.WritesQueued, s)
			}
		})
	}
}
