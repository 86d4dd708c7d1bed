// Package stripe has a counter that many goroutines can add to without
// fighting over one cache line: adds go to one of several padded cells, and
// a read sums them. The cache counts every L1 hit, and a single atomic would
// make parallel hits contend.
//
// The cell is picked from the address of the adding goroutine's stack: each
// goroutine has a stack of its own, so concurrent goroutines land on
// different cells most of the time, and the pick costs a shift and a mask
// where a random number costs several times more on the hit path.
package stripe

import (
	"sync/atomic"
	"unsafe"
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
func (s *Counter) Add(d uint64) {
	var probe byte
	// Stacks are at least 8 KiB apart: bits above 13 tell goroutines apart.
	i := (uintptr(unsafe.Pointer(&probe)) >> 13) & (cells - 1)
	s.c[i].n.Add(d)
}

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
