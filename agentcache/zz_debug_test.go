package agentcache

import (
	"context"
	"testing"
	"time"
)

func TestRedisZZDebugLease(t *testing.T) {
	e := rcStart(t)
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			ks := e.keys("lk:*")
			for _, k := range ks {
				t.Logf("%s lease %s pttl %v", time.Now().Format("05.000"), k[len(k)-10:], e.raw.PTTL(context.Background(), k).Val())
			}
		}
	}()
	defer close(stop)
	t.Run("x", func(t *testing.T) { TestRedisFleetLeaseHolderDies(t) })
}
