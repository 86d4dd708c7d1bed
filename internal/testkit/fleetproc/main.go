// Command fleetproc is one pod of the multi-process fleet test,
// TestFleetLockHoldsAcrossProcesses in agentcache/fleet_test.go. It opens a
// Cache on a Redis server under a key prefix shared with the other
// processes, prints "ready", waits until a start key appears in Redis,
// calls one cold key from many goroutines at once, and prints one line of
// JSON: how often its tool ran and what every caller got.
//
//	fleetproc -addr 127.0.0.1:6379 -prefix test: -start go -callers 25
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/resource"
	acredis "github.com/agentcache/agentcache-go/tier/redis"
)

// Report is what a process prints when its callers are done.
type Report struct {
	PID    int      `json:"pid"`
	Runs   int64    `json:"runs"`   // times this process ran the tool
	Values []string `json:"values"` // what each caller got ("" on error)
	Errors []string `json:"errors"` // each caller's error, if any
}

type config struct {
	addr, prefix, start, query string
	callers                    int
	delay, timeout             time.Duration
}

func main() {
	var cfg config
	flag.StringVar(&cfg.addr, "addr", "", "address of the Redis server")
	flag.StringVar(&cfg.prefix, "prefix", "", "key prefix shared by the fleet")
	flag.StringVar(&cfg.start, "start", "start", "key, under the prefix, whose appearance starts the calls")
	flag.StringVar(&cfg.query, "query", "q", "the tool's argument")
	flag.IntVar(&cfg.callers, "callers", 25, "concurrent callers")
	flag.DurationVar(&cfg.delay, "delay", 200*time.Millisecond, "how long the tool takes")
	flag.DurationVar(&cfg.timeout, "timeout", time.Minute, "give up after this long")
	flag.Parse()
	if cfg.addr == "" || cfg.prefix == "" || cfg.callers < 1 {
		fmt.Fprintln(os.Stderr, "fleetproc: -addr and -prefix are required, and -callers must be positive")
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "fleetproc:", err)
		os.Exit(1)
	}
}

func run(cfg config) (err error) {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	client := goredis.NewClient(&goredis.Options{Addr: cfg.addr, ContextTimeoutEnabled: true})
	defer client.Close()
	store, err := acredis.New(client, acredis.Options{Prefix: cfg.prefix})
	if err != nil {
		return err
	}
	defer store.Close()
	c, err := agentcache.New(agentcache.Options{
		L2:        store,
		L2Timeout: 2 * time.Second, // a busy test machine is not a sick Redis
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		return err
	}
	defer func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		err = errors.Join(err, c.Close(cctx))
	}()

	var runs atomic.Int64
	search, err := agentcache.Wrap(c, resource.Resource{Name: "fleet_search", TTL: time.Minute},
		func(ctx context.Context, q string) (string, error) {
			runs.Add(1)
			select {
			case <-time.After(cfg.delay): // a slow, paid tool
			case <-ctx.Done():
				return "", ctx.Err()
			}
			return "results for " + q, nil
		})
	if err != nil {
		return err
	}
	if err := client.Ping(ctx).Err(); err != nil {
		return err
	}
	fmt.Println("ready")
	for {
		n, err := client.Exists(ctx, cfg.prefix+cfg.start).Result()
		if err != nil {
			return fmt.Errorf("waiting for the start key: %w", err)
		}
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}

	rep := Report{PID: os.Getpid(), Values: make([]string, cfg.callers), Errors: make([]string, cfg.callers)}
	var wg sync.WaitGroup
	for i := range cfg.callers {
		wg.Go(func() {
			v, err := search(ctx, cfg.query)
			rep.Values[i] = v
			if err != nil {
				rep.Errors[i] = err.Error()
			}
		})
	}
	wg.Wait()
	rep.Runs = runs.Load()
	return json.NewEncoder(os.Stdout).Encode(rep)
}
