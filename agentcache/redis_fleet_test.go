package agentcache

// Real-Redis tests of the fleet (issue 7): a stampede of separate OS
// processes. The fleet's promises over every backend (the fleet lock,
// stale-while-revalidate) are in fleet_test.go.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// rcFleetReport is what internal/testkit/fleetproc prints.
type rcFleetReport struct {
	PID    int      `json:"pid"`
	Runs   int64    `json:"runs"`
	Values []string `json:"values"`
	Errors []string `json:"errors"`
}

func TestRedisFleetMultiProcess(t *testing.T) {
	const procs, callers = 4, 25
	e := rcStart(t)
	bin := rcBuildFleetProc(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	type proc struct {
		cmd    *exec.Cmd
		lines  chan string
		stderr *bytes.Buffer
	}
	ps := make([]*proc, procs)
	for i := range ps {
		cmd := exec.CommandContext(ctx, bin, "-addr", e.Srv.Addr(), "-prefix", e.Prefix, "-start", "go",
			"-query", "redis cluster slots", "-callers", fmt.Sprint(callers), "-delay", "300ms")
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		p := &proc{cmd: cmd, lines: make(chan string, 4), stderr: &bytes.Buffer{}}
		cmd.Stderr = p.stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("process %d stderr:\n%s", i, p.stderr)
			}
		})
		go func() {
			defer close(p.lines)
			sc := bufio.NewScanner(out)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				p.lines <- sc.Text()
			}
		}()
		ps[i] = p
	}
	next := func(i int) string {
		t.Helper()
		select {
		case l, ok := <-ps[i].lines:
			if !ok {
				t.Fatalf("process %d ended its output early", i)
			}
			return l
		case <-time.After(90 * time.Second):
			t.Fatalf("process %d said nothing for 90s", i)
		}
		return ""
	}
	for i := range ps {
		if l := next(i); l != "ready" {
			t.Fatalf("process %d: %q, want ready", i, l)
		}
	}
	// Every process has its Cache open on the cold key: start them at once.
	if err := e.Raw.Set(ctx, e.Prefix+"go", "1", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	var runs int64
	for i, p := range ps {
		var rep rcFleetReport
		if err := json.Unmarshal([]byte(next(i)), &rep); err != nil {
			t.Fatalf("process %d: %v", i, err)
		}
		for range p.lines { // until the process closes its output
		}
		if err := p.cmd.Wait(); err != nil {
			t.Fatalf("process %d: %v\n%s", i, err, p.stderr)
		}
		t.Logf("process %d (pid %d): tool ran %d times", i, rep.PID, rep.Runs)
		runs += rep.Runs
		if len(rep.Values) != callers {
			t.Fatalf("process %d reported %d callers, want %d", i, len(rep.Values), callers)
		}
		for j, v := range rep.Values {
			if v != "results for redis cluster slots" || rep.Errors[j] != "" {
				t.Errorf("process %d caller %d: %q, error %q", i, j, v, rep.Errors[j])
			}
		}
	}
	if runs != 1 {
		t.Fatalf("%d processes x %d callers ran the tool %d times, want 1", procs, callers, runs)
	}
}

// rcBuildFleetProc builds internal/testkit/fleetproc into a temporary directory,
// with the race detector when this test binary has it (so the build reuses
// the packages the test build compiled).
func rcBuildFleetProc(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "fleetproc")
	args := []string{"build", "-o", bin}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" && s.Value == "true" {
				args = append(args, "-race")
			}
		}
	}
	args = append(args, "github.com/agentcache/agentcache-go/internal/testkit/fleetproc")
	cmd := exec.Command(goTool, args...)
	cmd.Dir = ".." // the module root; tests run in the package's directory
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %v: %v\n%s", args, err, out)
	}
	return bin
}
