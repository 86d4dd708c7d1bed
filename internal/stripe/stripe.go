// Package stripe has a counter that many goroutines can add to without
// fighting over one cache line: adds go to one of several padded cells picked
// at random, and a read sums them. The cache counts every L1 hit, and a
// single atomic would make parallel hits contend.
package stripe

import (
	"math/rand/v2"
	"sync/atomic"
)

const cells = 16 // a power of two

type cell struct {
	n atomic.Uint64
	_ [56]byte // keep each cell on its own 64-byte line
}

// Counter is a striped counter. The zero value is ready to use.
type Counter struct {
	c [cells]cell
}

// Add adds d.
func (s *Counter) Add(d uint64) { s.c[rand.Uint32()&(cells-1)].n.Add(d) }

// Inc adds one.
func (s *Counter) Inc() { s.Add(1) }

// Load returns the sum. Adds that race with it may or may not be counted.
func (s *Counter) Load() uint64 {
	var t uint64
	for i := range s.c {
		t += s.c[i].n.Load()
	}
	return t
}
