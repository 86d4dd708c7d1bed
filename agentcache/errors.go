package agentcache

import (
	"errors"

	"github.com/agentcache/agentcache-go/internal/flight"
)

// ErrNotFound is what a loader returns (wrapping is fine) when the thing it
// was asked for does not exist. The cache remembers that answer for the
// resource's negative TTL and returns ErrNotFound from the cache as well. A
// miss of the cache itself is never an error.
var ErrNotFound = errors.New("agentcache: not found")

// ErrClosed is returned by every call on a Cache after Close.
var ErrClosed = errors.New("agentcache: cache is closed")

// ErrInvalidKey is wrapped by the error for an empty, oversized or reserved
// key.
var ErrInvalidKey = errors.New("agentcache: invalid key")

// ErrValueTooLarge is counted, not returned: a value whose encoding exceeds
// Options.MaxValueSize stays in L1 but is not written to L2.
var ErrValueTooLarge = errors.New("agentcache: value exceeds MaxValueSize")

// PanicError is returned to every caller waiting on a load that panicked.
// It carries the panic value and the stack of the loader.
type PanicError = flight.PanicError

// FleetError is returned by Invalidate, Delete and Clear when the local
// cache was updated but the fleet could not be told (the remote tier is down
// or refused the write). Other instances then stop serving the old value no
// later than Options.MaxEpochAge after they next reach the remote tier.
type FleetError struct {
	Op  string // "invalidate", "delete" or "clear"
	Err error  // why the remote tier was not updated
}

// Error says what was applied locally and why the fleet was not told.
func (e *FleetError) Error() string {
	return "agentcache: " + e.Op + " applied locally; the fleet was not told: " + e.Err.Error()
}

// Unwrap returns the L2 error.
func (e *FleetError) Unwrap() error { return e.Err }
