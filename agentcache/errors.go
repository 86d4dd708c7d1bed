package agentcache

import (
	"errors"
	"fmt"
	"strings"

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

// PanicError is returned to every caller waiting on a load whose tool (or
// loader) panicked. Its message is one line that names the resource, fit
// for an agent framework to hand to a model; the stack is in Stack, for
// logs.
type PanicError struct {
	Resource string // the resource whose tool panicked; empty for a key-value loader
	Value    any    // what the tool panicked with
	Stack    []byte // the stack of the panicking goroutine
}

// Error returns one line: the resource and the panic value (its first line,
// at most 200 bytes).
func (e *PanicError) Error() string {
	v := fmt.Sprint(e.Value)
	if i := strings.IndexAny(v, "\r\n"); i >= 0 {
		v = v[:i] + " …"
	}
	if len(v) > 200 {
		v = strings.ToValidUTF8(v[:200], "") + " …"
	}
	if e.Resource == "" {
		return "agentcache: the loader panicked: " + v
	}
	return "agentcache: " + e.Resource + ": the tool panicked: " + v
}

// Unwrap returns the panic value when it is an error, so errors.Is sees it.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// asPanic turns the flight's own record of a panic (one outside a tool,
// which runTool did not catch) into a PanicError.
func asPanic(err error) error {
	var fp *flight.PanicError
	if errors.As(err, &fp) {
		return &PanicError{Value: fp.Value, Stack: fp.Stack}
	}
	return err
}

// errNilCache is returned by the wrappers given a nil *Cache.
var errNilCache = errors.New("agentcache: nil *Cache")

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
