package agentcache

// Real-Redis tests of the fleet (issue 7): stale serving with a background
// refresh, and a stampede of separate OS processes. The fleet lock's
// promises over every backend are in fleet_test.go.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/resource"
)

func TestRedisFleetStaleWhileRevalidate(t *testing.T) {
	e := rcStart(t)
	clk := newTestClockAt(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	o := Options{Now: clk.Now, TTLJitter: -1}
	o.L2 = e.store()
	a := rcNew(t, o)
	o.L2 = e.store()
	b := rcNew(t, o)
	rcSubscribed(t, a, b)
	res := resource.Resource{Name: "rc_rates", TTL: time.Minute, StaleWindow: time.Hour}
	var runs atomic.Int32
	var failing atomic.Bool
	type gate struct{ entered, release chan struct{} }
	var held atomic.Pointer[gate] // when set, the next run waits for release
	tool := func(ctx context.Context, base string) (int32, error) {
		n := runs.Add(1)
		if g := held.Swap(nil); g != nil {
			close(g.entered)
			<-g.release
		}
		if failing.Load() {
			return 0, errors.New("rates API down")
		}
		return n, nil
	}
	getA, _ := Wrap(a, res, tool)
	getB, _ := Wrap(b, res, tool)
	gets := []func(context.Context, string) (int32, error){getA, getB}
	ctx := context.Background()
	if v, err := getA(ctx, "EUR"); err != nil || v != 1 {
		t.Fatalf("A: %d, %v", v, err)
	}
	if v, err := getB(ctx, "EUR"); err != nil || v != 1 || b.Stats().L2Hits != 1 {
		t.Fatalf("B: %d, %v, %d L2 hits", v, err, b.Stats().L2Hits)
	}

	// Past the TTL, inside the stale window: 20 callers on two instances
	// get the old value while the refresh is held, so none waited for it.
	g := &gate{entered: make(chan struct{}), release: make(chan struct{})}
	held.Store(g)
	clk.Advance(2 * time.Minute)
	var wg sync.WaitGroup
	for _, get := range gets {
		for i := 0; i < 10; i++ {
			wg.Go(func() {
				if v, err := get(ctx, "EUR"); err != nil || v != 1 {
					t.Errorf("stale read: %d, %v; want the old value at once", v, err)
				}
			})
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		close(g.release)
		t.Fatal("stale readers waited for the refresh")
	}
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no background refresh started")
	}
	if n := runs.Load(); n != 2 {
		t.Fatalf("%d tool runs, want the first load and one refresh", n)
	}
	for name, c := range map[string]*Cache{"A": a, "B": b} {
		if s := c.Stats(); s.StaleHits == 0 {
			t.Fatalf("%s counted no stale hits: %+v", name, s)
		}
	}
	close(g.release)
	for i, get := range gets {
		waitFor(t, 5*time.Second, fmt.Sprintf("instance %d to serve the refreshed value", i), func() bool {
			v, err := get(ctx, "EUR")
			if err != nil {
				t.Fatalf("instance %d: %v", i, err)
			}
			return v == 2
		})
	}
	for i := 0; i < 10; i++ {
		for _, get := range gets {
			if v, _ := get(ctx, "EUR"); v != 2 {
				t.Fatalf("read after the refresh: %d", v)
			}
		}
	}
	if n := runs.Load(); n != 2 {
		t.Fatalf("the refresh ran the tool %d times across the fleet, want once", n-1)
	}

	// A failing refresh keeps the stale value until the window ends.
	failing.Store(true)
	clk.Advance(2 * time.Minute)
	for i := 0; i < 20; i++ {
		for j, get := range gets {
			if v, err := get(ctx, "EUR"); err != nil || v != 2 {
				t.Fatalf("instance %d with a failing refresh: %d, %v; want the stale value", j, v, err)
			}
		}
	}
	waitFor(t, 5*time.Second, "a refresh attempt", func() bool {
		getA(ctx, "EUR")
		return runs.Load() > 2
	})
	for j, get := range gets {
		if v, err := get(ctx, "EUR"); err != nil || v != 2 {
			t.Fatalf("instance %d after a failed refresh: %d, %v", j, v, err)
		}
	}
	// Once the window is over the error surfaces.
	clk.Advance(2 * time.Hour)
	for j, get := range gets {
		if v, err := get(ctx, "EUR"); err == nil {
			t.Fatalf("instance %d after the stale window: %d and no error", j, v)
		}
	}
}

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
