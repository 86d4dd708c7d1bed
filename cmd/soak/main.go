// Command soak runs a bounded, mixed load against agentcache on several
// instances that share one Redis, restarts Redis in the middle of it, and
// reports what callers saw.
//
//	go run ./cmd/soak                      # 60s, 3 instances, its own redis-server, 2 restarts
//	go run ./cmd/soak -duration 10m -instances 5 -workers 64
//	go run ./cmd/soak -redis-url redis://localhost:6379/0 -restarts 0
//
// Each instance is a Cache on its own tier/redis store (NewFromURL, as an
// application would open it). Workers call per-user, per-session and global
// tools, a batch tool (GetMany and the DataLoader Get), the key-value API,
// a mutation, invalidations and deletes, and check every answer: it must
// belong to the user, session and arguments asked for. A "not found" answer
// where the tool says the thing does not exist is an answer, not an error;
// a *FleetError from Invalidate while Redis is down is the documented
// outcome and is counted apart.
//
// Without -redis-url the soak starts a redis-server of its own (it must be
// installed) and kills and restarts it -restarts times, evenly spread, each
// outage lasting -outage. With -redis-url it uses that server under a
// random prefix, cannot restart it, and clears its keys at the end.
//
// The report gives operations, errors seen by callers, tiers, faults
// survived, and goroutines and heap (after GC): before the caches exist,
// once they are warm, at the end of the load, and after Close. The command
// exits 1 if any caller saw an error or a wrong answer, or if goroutines or
// heap leaked; 2 on a bad command line.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

func main() {
	// go-redis logs every failed dial while Redis is down; the report
	// counts what matters.
	goredis.SetLogger(quietLog{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type quietLog struct{}

func (quietLog) Printf(context.Context, string, ...any) {}

// config is the command line.
type config struct {
	duration  time.Duration
	instances int
	workers   int
	redisURL  string
	restarts  int
	outage    time.Duration
	seed      uint64
	json      bool
	verbose   bool
}

func parse(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&c.duration, "duration", 60*time.Second, "how long the load runs")
	fs.IntVar(&c.instances, "instances", 3, "cache instances sharing Redis")
	fs.IntVar(&c.workers, "workers", 16, "goroutines calling the instances")
	fs.StringVar(&c.redisURL, "redis-url", "", "Redis to use (redis:// or rediss://); default: start a redis-server")
	restarts := &optionalInt{}
	fs.Var(restarts, "restarts", "`number` of Redis kills and restarts during the run; needs the soak's own server (default 2, or 0 with -redis-url)")
	fs.DurationVar(&c.outage, "outage", time.Second, "how long Redis stays down at each restart")
	fs.Uint64Var(&c.seed, "seed", 0, "seed of the workload (default: a random one, printed in the report)")
	fs.BoolVar(&c.json, "json", false, "print the report as JSON")
	fs.BoolVar(&c.verbose, "v", false, "log the caches' warnings")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	c.restarts = -1
	if restarts.set {
		c.restarts = restarts.n
	}
	if c.seed == 0 {
		c.seed = uint64(time.Now().UnixNano())
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("soak: unexpected argument %q", fs.Arg(0))
	case c.duration <= 0:
		return c, errors.New("soak: -duration must be positive")
	case c.instances < 1:
		return c, errors.New("soak: -instances must be at least 1")
	case c.workers < 1:
		return c, errors.New("soak: -workers must be at least 1")
	case c.outage <= 0:
		return c, errors.New("soak: -outage must be positive")
	case restarts.set && c.restarts < 0:
		return c, errors.New("soak: -restarts must not be negative")
	case c.redisURL != "" && c.restarts > 0:
		return c, errors.New("soak: -restarts needs the soak's own redis-server (leave out -redis-url)")
	}
	if c.restarts < 0 {
		c.restarts = 2
		if c.redisURL != "" {
			c.restarts = 0
		}
	}
	if need := time.Duration(c.restarts) * c.outage; c.restarts > 0 && need >= c.duration/2 {
		return c, fmt.Errorf("soak: %d outages of %v do not fit in %v", c.restarts, c.outage, c.duration)
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	rep, err := soak(ctx, cfg, stderr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if cfg.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		rep.print(stdout)
	}
	if !rep.OK {
		return 1
	}
	return 0
}

// optionalInt is an int flag that knows whether it was set.
type optionalInt struct {
	n   int
	set bool
}

func (o *optionalInt) String() string {
	if o == nil || !o.set {
		return ""
	}
	return strconv.Itoa(o.n)
}

func (o *optionalInt) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return errors.New("not a number")
	}
	o.n, o.set = n, true
	return nil
}
