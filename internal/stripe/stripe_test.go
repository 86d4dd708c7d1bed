package stripe

import (
	"sync"
	"testing"
)

func TestCounterSums(t *testing.T) {
	var c Counter
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10_000 {
				c.Inc()
			}
			c.Add(5)
		}()
	}
	wg.Wait()
	if got := c.Load(); got != 8*10_005 {
		t.Fatalf("Load = %d, want %d", got, 8*10_005)
	}
}

func BenchmarkCounterParallel(b *testing.B) {
	var c Counter
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Inc()
		}
	})
}

// TestGoroutinesSpread checks that concurrent goroutines, their stacks grown
// as a busy server's are, add to different cells rather than one shared
// cache line.
func TestGoroutinesSpread(t *testing.T) {
	var c Counter
	const goroutines = 16
	var ready, done sync.WaitGroup
	release := make(chan struct{})
	for range goroutines {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			deep(64, func() { // about 256 KiB of stack
				ready.Done()
				<-release // all alive at once: no stack is reused
				c.Inc()
			})
		}()
	}
	ready.Wait()
	close(release)
	done.Wait()
	used := 0
	for i := range c.c {
		if c.c[i].n.Load() > 0 {
			used++
		}
	}
	if used < 4 {
		t.Fatalf("%d goroutines added to %d of %d cells; want them spread", goroutines, used, cells)
	}
}

// deep calls f under n frames of 4 KiB each.
func deep(n int, f func()) {
	var pad [4096]byte
	if n == 0 {
		f()
		return
	}
	deep(n-1, f)
	pad[n%len(pad)] = 1
	_ = pad
}

// TestStacksSizeApartSpread checks the pick for stacks that lie a power of
// two apart, as grown stacks can: masking the low bits of the address would
// put them all on one cell.
func TestStacksSizeApartSpread(t *testing.T) {
	const base = uintptr(0xc000_0000_00) + 0x1f6e // a frame offset within a stack
	for shift := 13; shift <= 20; shift++ {
		seen := map[uint64]bool{}
		for k := range uintptr(16) {
			seen[cellOf(base+k<<shift)] = true
		}
		if len(seen) < 6 {
			t.Errorf("16 stacks 1<<%d bytes apart use %d of %d cells; want them spread", shift, len(seen), cells)
		}
	}
}
