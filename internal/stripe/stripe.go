// Package stripe has a counter that many goroutines can add to without
// fighting over one cache line: adds go to one of several padded cells, and
// a read sums them. The cache counts every L1 hit, and a single atomic would
// make parallel hits contend.
//
// The cell is picked from the address of the adding goroutine's stack: each
// goroutine has a stack of its own, so concurrent goroutines land on
// different cells most of the time, and the pick costs a shift and a multiplication
// where a random number costs several times more on the hit path.
package stripe

import (
	"sync/atomic"
	"unsafe"
)

const (
	cellBits = 4
	cells    = 1 << cellBits
)

type cell struct {
	n atomic.Uint64
	_ [56]byte // keep each cell on its own 64-byte line
}

// Counter is a striped counter. The zero value is ready to use.
type Counter struct {
	// Each cell's count is followed by its padding; this keeps the first
	// count off the cache line of whatever precedes the Counter.
	_ [56]byte
	c [cells]cell
}

// Add adds d.
func (s *Counter) Add(d uint64) {
	var probe byte
	// Stacks are at least 8 KiB apart, so the bits above 13 tell goroutines
	// apart; but a grown stack is as large as 1 MiB and aligned to its size,
	// so those bits are mixed (Fibonacci hashing) and the top ones taken,
	// rather than the low ones masked.
	s.c[cellOf(uintptr(unsafe.Pointer(&probe)))].n.Add(d)
}

// cellOf picks the cell for an address on a goroutine's stack.
func cellOf(addr uintptr) uint64 {
	return uint64(addr>>13) * 0x9E3779B97F4A7C15 >> (64 - cellBits)
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
