package redistest

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
	"time"
)

// sysProcAttr makes the kernel SIGKILL redis-server when the test binary
// dies without running its cleanups (a -timeout panic, os.Exit, a crash).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// waitStopped waits until the kernel reports pid as stopped, so that a
// request sent right after Pause is not served. SIGSTOP is delivered
// asynchronously.
func waitStopped(pid int) {
	path := "/proc/" + strconv.Itoa(pid) + "/stat"
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		data, err := os.ReadFile(path)
		if err != nil {
			return
		}
		// The state follows the command name, which is in parentheses.
		if i := bytes.LastIndexByte(data, ')'); i >= 0 && i+2 < len(data) {
			if s := data[i+2]; s == 'T' || s == 't' {
				return
			}
		}
		time.Sleep(time.Millisecond)
	}
}
