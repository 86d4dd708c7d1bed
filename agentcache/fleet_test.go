package agentcache

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

	"github.com/agentcache/agentcache-go/internal/redistest"
	"github.com/agentcache/agentcache-go/internal/testkit/wait"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/tier"
	"github.com/agentcache/agentcache-go/tier/fake"
)

// fleet opens n caches sharing one L2, as n pods would.
func fleet(t *testing.T, l2 func() tier.Remote, n int, o Options) []*Cache {
	t.Helper()
	cs := make([]*Cache, n)
	for i := range cs {
		oo := o
		oo.L2 = l2()
		cs[i] = newL1(t, oo)
	}
	return cs
}

func memFleet(t *testing.T, n int, o Options) []*Cache {
	b := fake.NewBackend(fake.BackendOptions{})
	t.Cleanup(func() { b.Close() })
	return fleet(t, func() tier.Remote { return b.Remote("fleet:") }, n, o)
}

// stampede runs callers concurrent calls of one cold key on every cache and
// returns how often the tool ran; every caller must get the value.
func stampede(t *testing.T, cs []*Cache, callers int, opts ...ToolOption) int32 {
	t.Helper()
	var runs atomic.Int32
	res := resource.Resource{Name: "search_docs", TTL: time.Minute}
	tools := make([]func(context.Context, string) (string, error), len(cs))
	for i, c := range cs {
		tools[i], _ = Wrap(c, res, func(ctx context.Context, q string) (string, error) {
			runs.Add(1)
			time.Sleep(50 * time.Millisecond) // a slow, paid tool
			return "results for " + q, nil
		}, opts...)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range cs {
		for j := 0; j < callers; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				v, err := tools[i](context.Background(), "redis cluster slots")
				if err != nil || v != "results for redis cluster slots" {
					t.Errorf("instance %d caller %d: %q, %v", i, j, v, err)
				}
			}()
		}
	}
	close(start)
	wg.Wait()
	return runs.Load()
}

// The fleet lock: 8 instances sharing one L2, 50 concurrent callers of one
// cold key on each, run the tool once, and every caller gets its value.
func TestFleetLockRunsTheToolOnceFor400Callers(t *testing.T) {
	const instances, callers = 8, 50
	for _, backend := range l2Backends {
		t.Run(backend.name, func(t *testing.T) {
			stores := backend.stores(t, instances)
			res := resource.Resource{Name: "rc_search", TTL: time.Minute}
			var runs atomic.Int32
			tools := make([]func(context.Context, string) (string, error), instances)
			cs := make([]*Cache, instances)
			for i := range cs {
				cs[i] = rcNew(t, Options{L2: stores[i]})
				tools[i], _ = Wrap(cs[i], res, func(ctx context.Context, q string) (string, error) {
					runs.Add(1)
					time.Sleep(100 * time.Millisecond) // a slow, paid tool
					return "results for " + q, nil
				})
			}
			start := make(chan struct{})
			var got atomic.Int32
			var wg sync.WaitGroup
			for i := range cs {
				for j := 0; j < callers; j++ {
					wg.Go(func() {
						<-start
						v, err := tools[i](context.Background(), "redis cluster slots")
						if err != nil || v != "results for redis cluster slots" {
							t.Errorf("instance %d caller %d: %q, %v", i, j, v, err)
							return
						}
						got.Add(1)
					})
				}
			}
			close(start)
			wg.Wait()
			var waits, l2Hits uint64
			for _, c := range cs {
				s := c.Stats()
				waits += s.FleetWaits
				l2Hits += s.L2Hits
			}
			t.Logf("%d callers got the value; %d fleet waits, %d L2 hits", got.Load(), waits, l2Hits)
			if n := runs.Load(); n != 1 {
				t.Fatalf("%d instances x %d callers ran the tool %d times, want 1", instances, callers, n)
			}
			if got.Load() != instances*callers {
				t.Fatalf("%d of %d callers got the value", got.Load(), instances*callers)
			}
		})
	}
}

func TestWithoutFleetLockEachInstanceLoads(t *testing.T) {
	cs := memFleet(t, 4, Options{})
	if n := stampede(t, cs, 10, NoFleetLock()); n < 2 {
		t.Fatalf("without the fleet lock the tool ran %d times; the test cannot tell the lock works", n)
	}
}

// A fleet-lock holder that dies mid-load (its pod closed, or cut off from
// L2 so that it can neither renew nor release its lease) does not block
// the key: the waiter on another instance takes the lease over once it
// lapses and loads, within a few leases.
func TestFleetLeaseOfADeadHolderIsTakenOver(t *testing.T) {
	for _, c := range []struct {
		name, how string
		backend   l2Backend
		lease     time.Duration
		bound     time.Duration // how long B may take once A died
	}{
		{"in-memory/closed", "closed", l2Backends[0], 300 * time.Millisecond, 5 * time.Second},
		{"one server/closed", "closed", l2Backends[1], 500 * time.Millisecond, 2 * time.Second},
		{"one server/partitioned", "partitioned", l2Backends[1], 500 * time.Millisecond, 2 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := Options{L2Timeout: time.Second, Tuning: TuningOptions{LockLease: c.lease}}
			var a, b *Cache
			var p *redistest.Proxy
			if c.how == "partitioned" {
				// A reaches Redis through a proxy that will blackhole it:
				// A can then neither renew nor release its lease.
				e := rcStart(t)
				p = e.Proxy()
				o.L2 = e.storeVia(p.Addr())
				a = rcNew(t, o)
				o.L2 = e.store()
				b = rcNew(t, o)
			} else {
				stores := c.backend.stores(t, 2)
				o.L2 = stores[0]
				a = rcNew(t, o)
				o.L2 = stores[1]
				b = rcNew(t, o)
			}
			if c.backend.name != "in-memory" {
				rcSubscribed(t, a, b)
			}
			res := resource.Resource{Name: "rc_slow_llm", TTL: time.Minute}
			var aRuns, bRuns atomic.Int32
			started := make(chan struct{})
			hold, _ := Wrap(a, res, func(ctx context.Context, q string) (string, error) {
				aRuns.Add(1)
				close(started)
				<-ctx.Done() // A's pod goes away mid-load
				return "", ctx.Err()
			})
			other, _ := Wrap(b, res, func(ctx context.Context, q string) (string, error) {
				bRuns.Add(1)
				return "answer to " + q, nil
			})
			aDone := make(chan error, 1)
			go func() {
				_, err := hold(context.Background(), "q")
				aDone <- err
			}()
			<-started
			type result struct {
				v   string
				err error
				at  time.Time
			}
			bDone := make(chan result, 1)
			go func() {
				v, err := other(context.Background(), "q")
				bDone <- result{v, err, time.Now()}
			}()
			wait.For(t, 5*time.Second, "B to find A's lease", func() bool { return b.Stats().FleetWaits >= 1 })
			select {
			case r := <-bDone:
				t.Fatalf("the waiter finished while the lease was held: %q, %v", r.v, r.err)
			default:
			}
			if bRuns.Load() != 0 {
				t.Fatal("B ran the tool while A held the lease")
			}

			if p != nil {
				p.Blackhole(true)
			}
			died := time.Now()
			closed := make(chan struct{})
			go func() {
				defer close(closed)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
				defer cancel()
				_ = a.Close(ctx) // gives the load 10ms, then cancels it
			}()
			select {
			case r := <-bDone:
				if r.err != nil || r.v != "answer to q" {
					t.Fatalf("B: %q, %v", r.v, r.err)
				}
				t.Logf("B completed the load %v after A died", r.at.Sub(died).Round(time.Millisecond))
			case <-time.After(c.bound):
				t.Fatalf("no instance completed the load within %v of the holder's death (lease %v)", c.bound, c.lease)
			}
			<-closed
			if err := <-aDone; err == nil {
				t.Fatal("A's caller got no error from a cancelled load")
			}
			if aRuns.Load() != 1 || bRuns.Load() != 1 {
				t.Fatalf("tool runs: A %d, B %d; want 1 and 1 (the dead holder and the taker)", aRuns.Load(), bRuns.Load())
			}
		})
	}
}

func TestFleetWaiterRespectsItsContext(t *testing.T) {
	cs := memFleet(t, 2, Options{})
	res := resource.Resource{Name: "slow_llm", TTL: time.Minute}
	release := make(chan struct{})
	started := make(chan struct{})
	a, _ := Wrap(cs[0], res, func(ctx context.Context, q string) (string, error) {
		close(started)
		<-release
		return "x", nil
	})
	b, _ := Wrap(cs[1], res, func(ctx context.Context, q string) (string, error) { return "y", nil })
	go a(context.Background(), "q")
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := b(ctx, "q"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiter got %v, want its own deadline", err)
	}
	close(release)
}

func TestStaleWhileRevalidateWithoutL2(t *testing.T) {
	clk := newTestClock()
	cs := memFleet(t, 1, Options{Now: clk.Now, TTLJitter: -1})
	c := cs[0]
	res := resource.Resource{Name: "get_weather", TTL: time.Minute, StaleWindow: time.Hour}
	var version atomic.Int32
	var fail atomic.Bool
	refreshed := make(chan struct{}, 1000)
	get, _ := Wrap(c, res, func(ctx context.Context, city string) (int32, error) {
		defer func() { refreshed <- struct{}{} }()
		if fail.Load() {
			return 0, errors.New("weather API down")
		}
		return version.Add(1), nil
	})
	ctx := context.Background()
	if v, _ := get(ctx, "oslo"); v != 1 {
		t.Fatalf("first = %d", v)
	}
	<-refreshed
	clk.Advance(2 * time.Minute) // past TTL, inside the stale window
	if v, err := get(ctx, "oslo"); v != 1 || err != nil {
		t.Fatalf("stale read = %d, %v; want the old value at once", v, err)
	}
	<-refreshed // one background refresh
	wait.For(t, 5*time.Second, "the refreshed value", func() bool { v, _ := get(ctx, "oslo"); return v == 2 })
	if s := c.Stats(); s.StaleHits < 1 || s.Refreshes != 1 {
		t.Fatalf("stats %+v", s)
	}
	// A failing refresh keeps serving stale until the window ends.
	fail.Store(true)
	clk.Advance(2 * time.Minute)
	for i := 0; i < 3; i++ {
		// Each stale read starts a refresh unless one is still running.
		wait.For(t, 5*time.Second, "a refresh per stale read", func() bool {
			if v, err := get(ctx, "oslo"); v != 2 || err != nil {
				t.Fatalf("stale read with a failing tool = %d, %v", v, err)
			}
			return c.Stats().Refreshes >= uint64(2+i)
		})
	}
	clk.Advance(2 * time.Hour) // the window is over: the error surfaces
	if _, err := get(ctx, "oslo"); err == nil {
		t.Fatal("after the stale window a failing tool still gave a value")
	}
}

// Stale-while-revalidate across the fleet: past the TTL and inside the
// stale window, every instance serves the old value at once while one
// refresh runs for the fleet; the refreshed value reaches every instance;
// a failing refresh keeps the stale value until the window ends, and then
// the error surfaces. (Without L2: TestStaleWhileRevalidateWithoutL2.)
func TestStaleWhileRevalidateAcrossTheFleet(t *testing.T) {
	for _, backend := range l2Backends {
		t.Run(backend.name, func(t *testing.T) {
			stores := backend.stores(t, 2)
			clk := newTestClockAt(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
			a := rcNew(t, Options{L2: stores[0], Now: clk.Now, TTLJitter: -1})
			b := rcNew(t, Options{L2: stores[1], Now: clk.Now, TTLJitter: -1})
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
				wait.For(t, 5*time.Second, fmt.Sprintf("instance %d to serve the refreshed value", i), func() bool {
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
			wait.For(t, 5*time.Second, "a refresh attempt", func() bool {
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
		})
	}
}

func TestRefreshAhead(t *testing.T) {
	clk := newTestClock()
	c := newL1(t, Options{Now: clk.Now, TTLJitter: -1})
	var version atomic.Int32
	get, _ := Wrap(c, resource.Resource{Name: "get_rates", TTL: time.Minute}, func(ctx context.Context, _ struct{}) (int32, error) {
		return version.Add(1), nil
	}, RefreshAhead(0.8))
	ctx := context.Background()
	get(ctx, struct{}{})
	clk.Advance(30 * time.Second)
	get(ctx, struct{}{})
	if version.Load() != 1 {
		t.Fatal("refreshed before 80% of the TTL")
	}
	clk.Advance(20 * time.Second) // 50s of 60s
	if v, _ := get(ctx, struct{}{}); v != 1 {
		t.Fatalf("refresh-ahead read = %d, want the current value", v)
	}
	wait.For(t, 5*time.Second, "the refresh ahead of expiry", func() bool { return version.Load() == 2 })
	wait.For(t, 5*time.Second, "the refreshed value", func() bool { v, _ := get(ctx, struct{}{}); return v == 2 })
}

func TestTTLJitterSpreadsExpiry(t *testing.T) {
	c := newL1(t, Options{TTLJitter: 0.5})
	seen := map[time.Duration]bool{}
	for i := 0; i < 50; i++ {
		d := c.jitter(time.Hour)
		if d > time.Hour || d <= 30*time.Minute {
			t.Fatalf("jittered TTL %v outside (30m, 1h]", d)
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Fatalf("only %d distinct TTLs out of 50", len(seen))
	}
	off := newL1(t, Options{TTLJitter: -1})
	if d := off.jitter(time.Hour); d != time.Hour {
		t.Fatalf("jitter off: %v", d)
	}
}

// An instance that cannot learn the epochs from L2 works from L1 alone: it
// must not write entries under epochs only it knows, where no other
// instance would ever find them.
func TestUnsharedEpochsStayOutOfL2(t *testing.T) {
	b := fake.NewBackend(fake.BackendOptions{})
	t.Cleanup(func() { b.Close() })
	b.SetError(errors.New("L2 down"))
	c := newL1(t, Options{L2: b.Remote("x:"), Tuning: TuningOptions{Breaker: BreakerOptions{Failures: 1000}}})
	get, _ := Wrap(c, getWeather, func(ctx context.Context, city string) (string, error) { return "sun", nil })
	if v, err := get(context.Background(), "rome"); err != nil || v != "sun" {
		t.Fatalf("with L2 down: %q, %v", v, err)
	}
	if s := c.Stats(); s.WritesQueued != 0 {
		t.Fatalf("%d L2 writes queued under epochs L2 never had", s.WritesQueued)
	}
	b.SetError(nil)
	// Once the breaker's pause (L2 never answered, so one failure opened
	// it) is over, a lookup confirms the epochs and its entry reaches L2.
	wait.For(t, 5*time.Second, "the entry's write once the epochs are confirmed", func() bool { get(context.Background(), "lima"); return c.Stats().WritesDone >= 1 })
}

// rcFleetReport is what internal/testkit/fleetproc prints.
type rcFleetReport struct {
	PID    int      `json:"pid"`
	Runs   int64    `json:"runs"`
	Values []string `json:"values"`
	Errors []string `json:"errors"`
}

// Four OS processes, 25 callers each, ask for one cold key at the same
// moment: the fleet lock lets one of the 100 run the tool and the others
// read its value. Separate processes share nothing but Redis, so this runs
// on one redis-server only (internal/testkit/fleetproc dials an address).
func TestFleetLockHoldsAcrossProcesses(t *testing.T) {
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
