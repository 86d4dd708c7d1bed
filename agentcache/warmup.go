package agentcache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// WarmupTask is one thing to load at start: typically a call of a wrapped
// tool or a Get with its loader, so that the result lands in both tiers.
type WarmupTask struct {
	Name string // shown in the report
	Run  func(ctx context.Context) error
}

// WarmupReport says what a Warmup did.
type WarmupReport struct {
	Total    int
	Loaded   int
	Failed   []WarmupFailure // in the order the tasks were given
	Duration time.Duration
}

// WarmupFailure is a task that returned an error (or did not run because ctx
// ended first).
type WarmupFailure struct {
	Name string
	Err  error
}

// Err joins the failures into one error, or returns nil.
func (r WarmupReport) Err() error {
	if len(r.Failed) == 0 {
		return nil
	}
	errs := make([]error, len(r.Failed))
	for i, f := range r.Failed {
		errs[i] = fmt.Errorf("%s: %w", f.Name, f.Err)
	}
	return fmt.Errorf("agentcache: warmup: %d of %d tasks failed: %w", len(r.Failed), r.Total, errors.Join(errs...))
}

// Warmup runs tasks with at most concurrency at a time (<= 0: 8) and reports
// what failed. A task that panics is reported as failed. Tasks not started
// when ctx ends are reported with ctx.Err(). Warmup of a snapshot happens in
// New (Options.Snapshot); this is for everything else.
func (c *Cache) Warmup(ctx context.Context, concurrency int, tasks ...WarmupTask) WarmupReport {
	start := c.opts.Now()
	if concurrency <= 0 {
		concurrency = 8
	}
	errs := make([]error, len(tasks))
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for i, t := range tasks {
		if c.closed.Load() {
			errs[i] = ErrClosed
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			errs[i] = ctx.Err()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			defer func() {
				if r := recover(); r != nil {
					errs[i] = fmt.Errorf("agentcache: warmup task panicked: %v", r)
				}
			}()
			if t.Run == nil {
				errs[i] = errors.New("agentcache: warmup task has no Run")
				return
			}
			errs[i] = t.Run(ctx)
		}()
	}
	wg.Wait()
	rep := WarmupReport{Total: len(tasks), Duration: c.opts.Now().Sub(start)}
	for i, err := range errs {
		if err != nil {
			rep.Failed = append(rep.Failed, WarmupFailure{Name: tasks[i].Name, Err: err})
		} else {
			rep.Loaded++
		}
	}
	return rep
}

// WarmCalls returns one warmup task per argument value, each calling tool
// (a wrapped tool, so the result lands in the cache) with ctx's values — put
// the scope IDs the tool needs in ctx. A "not found" answer counts as
// loaded: it is cached too.
func WarmCalls[A, R any](name string, tool func(ctx context.Context, args A) (R, error), args ...A) []WarmupTask {
	tasks := make([]WarmupTask, len(args))
	for i, a := range args {
		tasks[i] = WarmupTask{
			Name: fmt.Sprintf("%s#%d", name, i),
			Run: func(ctx context.Context) error {
				_, err := tool(ctx, a)
				if errors.Is(err, ErrNotFound) {
					return nil
				}
				return err
			},
		}
	}
	return tasks
}
