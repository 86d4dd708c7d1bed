package redistest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
)

// process is one run of redis-server. A Server has at most one at a time;
// Restart replaces it.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has been reaped
	err  error         // the result of Wait; read it only after done

	// The log files are shared by every run of a server; the offsets say
	// where this run's output starts.
	logPath, outPath string
	logOff, outOff   int64
}

// spawn starts binary with the config file at conf. Stdout and stderr (where
// redis-server reports config errors before it opens its log file) go to
// outPath.
func spawn(binary, conf, dir, logPath, outPath string) (*process, error) {
	out, err := os.OpenFile(outPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	p := &process{
		done:    make(chan struct{}),
		logPath: logPath,
		outPath: outPath,
		logOff:  fileSize(logPath),
		outOff:  fileSize(outPath),
	}
	p.cmd = exec.Command(binary, conf)
	p.cmd.Dir = dir
	p.cmd.Stdout = out
	p.cmd.Stderr = out
	p.cmd.SysProcAttr = sysProcAttr()

	started := make(chan error, 1)
	go func() {
		// The parent-death signal (see sysProcAttr) fires when the OS thread
		// that forked the child exits, not when the test binary does. Keep
		// this goroutine on its thread until the child is reaped, and never
		// unlock it, so the runtime retires the thread only after that.
		runtime.LockOSThread()
		if err := p.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	err = <-started
	// The child has its own copy of the descriptor.
	out.Close()
	if err != nil {
		return nil, fmt.Errorf("redistest: start %s: %w", binary, err)
	}
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL (which also ends a stopped process) and waits until the
// process is reaped.
func (p *process) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// logTail returns the last n lines this run wrote to its log and to
// stdout/stderr.
func (p *process) logTail(n int) string {
	return logTail(p.outPath, p.outOff, p.logPath, p.logOff, n)
}

// logTail returns the last n lines of stdout/stderr and of the redis log,
// each read from its offset on.
func logTail(outPath string, outOff int64, logPath string, logOff int64, n int) string {
	var parts []string
	for _, t := range []string{tailFile(outPath, outOff, n), tailFile(logPath, logOff, n)} {
		if t != "" {
			parts = append(parts, t)
		}
	}
	if len(parts) == 0 {
		return "(redis-server wrote nothing)"
	}
	return strings.Join(parts, "\n")
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func tailFile(path string, off int64, n int) string {
	data, err := os.ReadFile(path)
	if err != nil || off > int64(len(data)) {
		return ""
	}
	data = bytes.TrimRight(data[off:], "\n")
	if len(data) == 0 {
		return ""
	}
	lines := bytes.Split(data, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
