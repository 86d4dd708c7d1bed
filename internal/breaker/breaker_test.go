package breaker

import (
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestBreakerCycle(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	var changes []string
	b := New(Options{Failures: 3, OpenFor: time.Second, MaxOpenFor: 4 * time.Second, Now: clk.now,
		OnChange: func(from, to State) { changes = append(changes, from.String()+">"+to.String()) }})
	b.Allow()
	b.Success() // the remote has answered once: from now on it takes 3 failures

	for i := 0; i < 2; i++ {
		if !b.Allow() {
			t.Fatal("closed breaker refused")
		}
		b.Failure()
	}
	b.Success() // resets the run
	for i := 0; i < 2; i++ {
		b.Allow()
		b.Failure()
	}
	if b.State() != Closed {
		t.Fatal("opened before 3 consecutive failures")
	}
	b.Allow()
	b.Failure()
	if b.State() != Open {
		t.Fatalf("state %v after 3 failures, want open", b.State())
	}
	if b.Allow() {
		t.Fatal("open breaker allowed a call")
	}
	clk.add(time.Second)
	if !b.Allow() {
		t.Fatal("no probe after the pause")
	}
	if b.State() != HalfOpen || b.Allow() {
		t.Fatal("half-open breaker allowed a second probe")
	}
	b.Failure() // probe failed: pause doubles to 2s
	clk.add(time.Second)
	if b.Allow() {
		t.Fatal("probe allowed before the doubled pause")
	}
	clk.add(time.Second)
	if !b.Allow() {
		t.Fatal("no probe after the doubled pause")
	}
	b.Cancel() // the probe's caller gave up: another probe may go
	if !b.Allow() {
		t.Fatal("cancelled probe kept the slot")
	}
	b.Success()
	if b.State() != Closed || !b.Allow() {
		t.Fatal("successful probe did not close the breaker")
	}
	want := []string{"closed>open", "open>half-open", "half-open>open", "open>half-open", "half-open>closed"}
	if len(changes) != len(want) {
		t.Fatalf("changes = %v, want %v", changes, want)
	}
	for i := range want {
		if changes[i] != want[i] {
			t.Fatalf("changes = %v, want %v", changes, want)
		}
	}
}

func TestBreakerPauseIsCapped(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	b := New(Options{Failures: 1, OpenFor: time.Second, MaxOpenFor: 3 * time.Second, Now: clk.now})
	b.Allow()
	b.Failure()
	for i := 0; i < 5; i++ {
		clk.add(3 * time.Second)
		if !b.Allow() {
			t.Fatalf("round %d: no probe after the maximum pause", i)
		}
		b.Failure()
	}
}

func TestBreakerConcurrent(t *testing.T) {
	b := New(Options{Failures: 2, OpenFor: time.Millisecond})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				if b.Allow() {
					switch i % 3 {
					case 0:
						b.Failure()
					case 1:
						b.Success()
					default:
						b.Cancel()
					}
				}
			}
		}()
	}
	wg.Wait()
}

// Until the remote has answered once, one failure opens the breaker: a cache
// that starts with its remote down pays one timeout, not Failures of them.
func TestBreakerOpensAtFirstFailureUntilAnswered(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	b := New(Options{Failures: 5, OpenFor: time.Second, Now: clk.now})
	if !b.Allow() {
		t.Fatal("new breaker refused")
	}
	b.Failure()
	if b.State() != Open {
		t.Fatalf("state %v after the first failure of a remote that never answered, want open", b.State())
	}
	clk.add(time.Second)
	if !b.Allow() {
		t.Fatal("no probe after the pause")
	}
	b.Success()
	for i := 0; i < 4; i++ {
		b.Allow()
		b.Failure()
	}
	if b.State() != Closed {
		t.Fatal("opened before 5 consecutive failures once the remote had answered")
	}
}
