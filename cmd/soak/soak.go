package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/internal/redistest"
	"github.com/agentcache/agentcache-go/internal/testkit/workload"
	acredis "github.com/agentcache/agentcache-go/tier/redis"
)

// Leak thresholds. While the caches are open their goroutines vary a
// little (background refreshes, lease renewals, a resubscription); their
// heap holds L1, which the warm-up has mostly filled. After Close
// everything the caches started must be gone.
const (
	liveGoroutineSlack   = 25
	closedGoroutineSlack = 2
	liveHeapSlack        = 64 << 20
	closedHeapSlack      = 16 << 20
)

func soak(ctx context.Context, cfg config, stderr io.Writer) (*report, error) {
	rep := &report{
		Duration: cfg.duration.String(), Instances: cfg.instances, Workers: cfg.workers,
		Seed: cfg.seed, Redis: "external",
	}
	url := cfg.redisURL
	var srv *redistest.Server
	if url == "" {
		var err error
		if srv, err = redistest.Launch(redistest.Config{}); err != nil {
			return nil, fmt.Errorf("soak: %w", err)
		}
		defer srv.Close()
		url, rep.Redis = srv.URL(), "redis-server "+srv.Addr()+" started by the soak"
	}
	rep.Baseline = measure(0)

	var id [6]byte
	_, _ = rand.Read(id[:])
	prefix := "soak-" + hex.EncodeToString(id[:]) + ":"
	logs := &logCounter{}
	var logger *slog.Logger
	if cfg.verbose {
		logger = slog.New(teeHandler{logs, slog.NewTextHandler(stderr, nil)})
	} else {
		logger = slog.New(logs)
	}

	t := &workload.Tools{}
	var stores []*acredis.Store
	var caches []*agentcache.Cache
	l := workload.New(nil)
	closeAll := func() error {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var first error
		if cfg.redisURL != "" && len(caches) > 0 {
			if err := caches[0].Clear(cctx); err != nil {
				fmt.Fprintf(stderr, "soak: clearing the soak's keys: %v\n", err)
			}
		}
		for _, c := range caches {
			if err := c.Close(cctx); err != nil && first == nil {
				first = err
			}
		}
		for _, s := range stores {
			_ = s.Close()
		}
		caches, stores = nil, nil
		return first
	}
	defer closeAll()
	for i := range cfg.instances {
		s, err := acredis.NewFromURL(url, acredis.Options{Prefix: prefix})
		if err != nil {
			return nil, fmt.Errorf("soak: %w", err)
		}
		stores = append(stores, s)
		c, err := agentcache.New(agentcache.Options{L2: s, Logger: logger, Telemetry: agentcache.TelemetryOptions{Name: fmt.Sprintf("soak-%d", i)}})
		if err != nil {
			return nil, fmt.Errorf("soak: %w", err)
		}
		caches = append(caches, c)
		in, err := workload.Wrap(fmt.Sprintf("i%d", i), c, t)
		if err != nil {
			return nil, fmt.Errorf("soak: %w", err)
		}
		l.Insts = append(l.Insts, in)
	}

	// Warm-up: fill L1 and L2, so the start figures are those of a
	// running service.
	warm := min(cfg.duration/10, 3*time.Second)
	wctx, cancel := context.WithTimeout(ctx, warm)
	l.Run(wctx, cfg.workers, cfg.seed^0x5eed)
	cancel()
	rep.Start = measure(0)
	warmOps := l.Ops.Load()

	// The load, with Redis restarts spread over it.
	began := time.Now()
	lctx, cancel := context.WithTimeout(ctx, cfg.duration)
	defer cancel()
	var wg sync.WaitGroup
	var restartErr error
	var l2AtLastRestart atomic.Uint64
	if srv != nil && cfg.restarts > 0 {
		wg.Go(func() {
			for i := range cfg.restarts {
				at := cfg.duration*time.Duration(i+1)/time.Duration(cfg.restarts+1) - cfg.outage/2
				if !sleepUntil(lctx, began.Add(at)) {
					return
				}
				srv.Kill()
				if !sleepUntil(lctx, time.Now().Add(cfg.outage)) {
					restartErr = srv.Restart()
					return
				}
				if err := srv.Restart(); err != nil {
					restartErr = err
					return
				}
				rep.Restarts++
				l2AtLastRestart.Store(l2Hits(caches))
			}
		})
	}
	l.Run(lctx, cfg.workers, cfg.seed)
	wg.Wait()
	elapsed := time.Since(began)
	if restartErr != nil {
		return nil, fmt.Errorf("soak: restarting Redis: %w", restartErr)
	}
	if ctx.Err() != nil {
		rep.Interrupted = true
	}
	rep.End = measure(200 * time.Millisecond)

	// Figures.
	rep.Ops = l.Ops.Load() - warmOps
	rep.Elapsed = elapsed.Round(time.Millisecond).String()
	rep.OpsPerSec = float64(rep.Ops) / elapsed.Seconds()
	rep.CallerErrors, rep.FirstErrors = l.Failed()
	rep.NotFound = l.NotFound.Load()
	rep.FleetErrors = l.FleetErrors.Load()
	rep.ToolRuns = t.Runs.Load()
	rep.Mix = map[string]int64{}
	for op := range workload.NumOps {
		rep.Mix[workload.OpNames[op]] = l.ByKind[op].Load()
	}
	s := workload.SumStats(l.Insts)
	rep.Cache.L1Hits, rep.Cache.L2Hits, rep.Cache.NegativeHits, rep.Cache.StaleHits = s.L1Hits, s.L2Hits, s.NegativeHits, s.StaleHits
	rep.Cache.Loads, rep.Cache.L2Errors, rep.Cache.L2Corrupt = s.Loads, s.L2Errors, s.L2Corrupt
	rep.Cache.WritesDone, rep.Cache.WritesSkipped, rep.Cache.WritesFailed, rep.Cache.WritesDropped = s.WritesDone, s.WritesSkipped, s.WritesFailed, s.WritesDropped
	rep.Cache.Invalidations, rep.Cache.FleetWaits = s.Invalidations, s.FleetWaits
	for _, c := range caches {
		if c.Stats().Breaker != "closed" {
			rep.BreakersOpenAtEnd++
		}
	}
	rep.BreakerOpened, rep.BreakerClosed = logs.breaker()
	rep.Warnings = logs.total()
	if rep.Restarts > 0 {
		rep.L2HitsAfterLastRestart = rep.Cache.L2Hits - l2AtLastRestart.Load()
	}

	if err := closeAll(); err != nil {
		rep.Leaks = append(rep.Leaks, "Close: "+err.Error())
	}
	rep.AfterClose = settle(rep.Baseline.Goroutines+closedGoroutineSlack, 5*time.Second)

	// Verdict.
	if rep.End.Goroutines > rep.Start.Goroutines+liveGoroutineSlack {
		rep.Leaks = append(rep.Leaks, fmt.Sprintf("goroutines grew from %d to %d under load", rep.Start.Goroutines, rep.End.Goroutines))
	}
	if rep.End.HeapBytes > rep.Start.HeapBytes+liveHeapSlack {
		rep.Leaks = append(rep.Leaks, fmt.Sprintf("heap grew from %s to %s under load", mib(rep.Start.HeapBytes), mib(rep.End.HeapBytes)))
	}
	if rep.AfterClose.Goroutines > rep.Baseline.Goroutines+closedGoroutineSlack {
		rep.Leaks = append(rep.Leaks, fmt.Sprintf("%d goroutines after Close, %d before the caches existed", rep.AfterClose.Goroutines, rep.Baseline.Goroutines))
	}
	if rep.AfterClose.HeapBytes > rep.Baseline.HeapBytes+closedHeapSlack {
		rep.Leaks = append(rep.Leaks, fmt.Sprintf("heap %s after Close, %s before the caches existed", mib(rep.AfterClose.HeapBytes), mib(rep.Baseline.HeapBytes)))
	}
	var problems []string
	if rep.CallerErrors > 0 {
		problems = append(problems, fmt.Sprintf("%d caller errors", rep.CallerErrors))
	}
	if len(rep.Leaks) > 0 {
		problems = append(problems, "leaks")
	}
	if rep.Restarts > 0 && rep.L2HitsAfterLastRestart == 0 {
		problems = append(problems, "L2 not used again after the last restart")
	}
	if rep.BreakersOpenAtEnd > 0 && rep.Restarts > 0 {
		problems = append(problems, fmt.Sprintf("%d breakers still open at the end", rep.BreakersOpenAtEnd))
	}
	if rep.Interrupted {
		problems = append(problems, "interrupted")
	}
	rep.Problems = problems
	rep.OK = len(problems) == 0
	return rep, nil
}

func l2Hits(caches []*agentcache.Cache) uint64 {
	var n uint64
	for _, c := range caches {
		n += c.Stats().L2Hits
	}
	return n
}

// sleepUntil waits until t, reporting false if ctx ends first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// usage is a measurement of the process.
type usage struct {
	Goroutines int    `json:"goroutines"`
	HeapBytes  uint64 `json:"heap_bytes"` // live heap after a GC
}

// measure waits, collects garbage and reads the goroutine count and the
// live heap.
func measure(wait time.Duration) usage {
	time.Sleep(wait)
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return usage{Goroutines: runtime.NumGoroutine(), HeapBytes: m.HeapAlloc}
}

// settle measures until the goroutines are down to want or d has passed.
func settle(want int, d time.Duration) usage {
	deadline := time.Now().Add(d)
	for {
		u := measure(0)
		if u.Goroutines <= want || time.Now().After(deadline) {
			return u
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// logCounter is a slog handler that counts the caches' warnings, and the
// breaker's state changes apart.
type logCounter struct {
	mu     sync.Mutex
	n      int
	opened int
	closed int
}

func (h *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *logCounter) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logCounter) WithGroup(string) slog.Handler            { return h }
func (h *logCounter) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n++
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "to" {
			switch a.Value.String() {
			case "open":
				h.opened++
			case "closed":
				h.closed++
			}
		}
		return true
	})
	return nil
}

func (h *logCounter) breaker() (opened, closed int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.opened, h.closed
}

func (h *logCounter) total() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// teeHandler counts and prints.
type teeHandler struct {
	count *logCounter
	out   slog.Handler
}

func (h teeHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.out.Enabled(ctx, l) }
func (h teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return teeHandler{h.count, h.out.WithAttrs(as)}
}
func (h teeHandler) WithGroup(g string) slog.Handler { return teeHandler{h.count, h.out.WithGroup(g)} }
func (h teeHandler) Handle(ctx context.Context, r slog.Record) error {
	_ = h.count.Handle(ctx, r)
	return h.out.Handle(ctx, r)
}
