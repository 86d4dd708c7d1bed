// Command benchsuite runs agentcache's benchmark suite against peer libraries
// on a redis-server it starts itself, and prints the results.
//
// Usage:
//
//	cd bench && go run ./cmd/benchsuite [flags]
//
// Flags:
//
//	-json          print one JSON object per result line on stdout instead of the table
//	-out FILE      also write the results as a Markdown table (for BENCHMARKS.md)
//	-chart FILE    write the SVG chart of figures against budgets (default chart.svg; "" for none)
//	-quick         small, fast run for smoke-testing the suite (figures not for quoting)
//	-runs N        runs per timed benchmark, median kept (default 5, 1 with -quick)
//	-benchtime D   target duration of one benchmark run (default 500ms, 20ms with -quick)
//	-cpu N         GOMAXPROCS for the run (default: all cores)
//	-run REGEXP    only the workloads whose name matches
//	-list          list the workloads and exit
//	-cpuprofile F  write a CPU profile of the run to F (for go tool pprof)
//	-v             progress on stderr
//
// redis-server (Redis 7 or later) must be on PATH; on Debian or Ubuntu,
// apt-get install -y redis-server.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/agentcache/agentcache-go/bench/suite"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "benchsuite:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		jsonOut   = flag.Bool("json", false, "print one JSON object per result on stdout instead of the table")
		out       = flag.String("out", "", "also write the results as a Markdown table to this file")
		chart     = flag.String("chart", "chart.svg", `write the SVG chart to this file ("" for none)`)
		quick     = flag.Bool("quick", false, "small, fast run for smoke-testing the suite")
		runs      = flag.Int("runs", 0, "runs per timed benchmark, median kept (default 5, 1 with -quick)")
		benchTime = flag.Duration("benchtime", 0, "target duration of one benchmark run (default 500ms, 20ms with -quick)")
		cpu       = flag.Int("cpu", 0, "GOMAXPROCS for the run (default: all cores)")
		match     = flag.String("run", "", "only the workloads whose name matches this regular expression")
		list      = flag.Bool("list", false, "list the workloads and exit")
		verbose   = flag.Bool("v", false, "progress on stderr")
		cpuProf   = flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	)
	flag.Parse()
	if *list {
		for _, w := range suite.Workloads() {
			fmt.Println(w)
		}
		return nil
	}
	if *cpu > 0 {
		runtime.GOMAXPROCS(*cpu)
	}
	cfg := suite.Config{Quick: *quick, Runs: *runs, BenchTime: *benchTime, Log: io.Discard}
	if *verbose {
		cfg.Log = os.Stderr
	}
	if *match != "" {
		re, err := regexp.Compile(*match)
		if err != nil {
			return fmt.Errorf("-run: %w", err)
		}
		cfg.Match = re
	}
	if *cpuProf != "" {
		f, err := os.Create(*cpuProf)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	start := time.Now()
	rep, err := suite.Run(ctx, cfg)
	if err != nil && rep == nil {
		return err
	}
	if *jsonOut {
		if werr := rep.WriteJSON(os.Stdout); werr != nil {
			return werr
		}
	} else if werr := rep.WriteTable(os.Stdout); werr != nil {
		return werr
	}
	if *out != "" {
		if werr := writeFile(*out, rep.WriteMarkdown); werr != nil {
			return werr
		}
	}
	if *chart != "" {
		if werr := writeFile(*chart, rep.WriteChart); werr != nil {
			return werr
		}
	}
	if *verbose {
		fmt.Fprintf(os.Stderr, "benchsuite: finished in %v\n", time.Since(start).Round(time.Second))
	}
	if err != nil {
		return err
	}
	if len(rep.Failures) > 0 {
		return fmt.Errorf("%d workloads failed", len(rep.Failures))
	}
	return nil
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
