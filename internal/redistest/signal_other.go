//go:build !unix

package redistest

import (
	"errors"
	"os"
)

var errNoSignals = errors.New("redistest: signals are not supported on this platform")

// terminate falls back to a kill where there is no SIGTERM.
func terminate(p *os.Process) error { return p.Kill() }

func pause(*os.Process) error { return errNoSignals }

func resume(*os.Process) error { return errNoSignals }
