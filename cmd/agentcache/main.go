package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/otel"
)

func main() {
	// go-redis logs failed dials on its own; the CLI reports errors itself,
	// in one line.
	goredis.SetLogger(quietLog{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type quietLog struct{}

func (quietLog) Printf(context.Context, string, ...any) {}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the command failed: Redis unreachable, refused, ...
	exitUsage = 2 // the command line is wrong
)

// usageErr is a mistake on the command line.
type usageErr struct{ msg string }

func (e *usageErr) Error() string { return e.msg }

func usageError(format string, args ...any) error {
	return &usageErr{msg: fmt.Sprintf(format, args...)}
}

// command is one subcommand.
type command struct {
	name, summary string
	help          string // usage line, description and examples
	// run parses args with fs (on which the connection flags are already
	// registered into conn) and does the work.
	run func(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error
	// noConn: the command takes no connection flags.
	noConn bool
}

// env is what a command runs with.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	conn           connFlags // after merge
	before         connFlags // connection flags given before the command
}

var commands = []*command{
	{name: "stats", summary: "per-resource entries, not-found markers, scopes, memory, TTLs and leases", help: statsHelp, run: runStats},
	{name: "inspect", summary: "list what is cached for a resource and/or a user or session", help: inspectHelp, run: runInspect},
	{name: "invalidate", summary: "invalidate a resource, a user, a session, one call, or everything", help: invalidateHelp, run: runInvalidate},
	{name: "version", summary: "print the library and Go versions", help: versionHelp, run: runVersion, noConn: true},
}

func findCommand(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

const mainHelp = `agentcache is the operator CLI of the agentcache library: it reads what the
cache keeps in Redis and invalidates slices of it exactly as the library does.

Usage:
  agentcache [connection flags] <command> [flags]

Commands:
%s
Connection flags (also accepted after the command):
  -url URL         one server: redis://[user:password@]host:port[/db], rediss:// for TLS
                   (default $AGENTCACHE_URL)
  -cluster SEEDS   a Redis Cluster: host:port,host:port,... or a redis:// URL with more
                   seeds as ?addr=host:port (default $AGENTCACHE_CLUSTER)
  -prefix P        the cache's key prefix (default $AGENTCACHE_PREFIX, else "agentcache:")

Exit status: 0 on success, 1 when the command fails, 2 for a wrong command line.
Run 'agentcache <command> -h' for a command's flags and examples.
`

func printMainHelp(w io.Writer) {
	var b strings.Builder
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, mainHelp, b.String())
}

// run is the whole CLI: it returns the exit status. Errors are one line on
// stderr starting with "agentcache:".
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	fail := func(cmd string, err error) int {
		msg := strings.ReplaceAll(err.Error(), "\n", "; ")
		if cmd != "" {
			msg = cmd + ": " + msg
		}
		fmt.Fprintln(stderr, "agentcache: "+msg)
		var ue *usageErr
		if errors.As(err, &ue) {
			return exitUsage
		}
		return exitError
	}

	top := flag.NewFlagSet("agentcache", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	e.before.register(top)
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printMainHelp(stdout)
			return exitOK
		}
		return fail("", usageError("%v (see 'agentcache -h')", err))
	}
	rest := top.Args()
	if len(rest) == 0 {
		return fail("", usageError("no command (see 'agentcache -h')"))
	}
	name, rest := rest[0], rest[1:]
	if name == "help" {
		if len(rest) == 0 {
			printMainHelp(stdout)
			return exitOK
		}
		name, rest = rest[0], []string{"-h"}
	}
	cmd := findCommand(name)
	if cmd == nil {
		return fail("", usageError("unknown command %q (want stats, inspect, invalidate or version)", name))
	}
	fs := flag.NewFlagSet("agentcache "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if !cmd.noConn {
		e.conn.register(fs)
	}
	err := cmd.run(ctx, e, fs, rest)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, cmd.help)
		fmt.Fprintln(stdout, "\nFlags:")
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return exitOK
	}
	return fail(cmd.name, err)
}

// parse parses a command's flags, takes no positional arguments, and
// completes the connection flags.
func (e *env) parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError("%v (see '%s -h')", err, fs.Name())
	}
	if fs.NArg() > 0 {
		return usageError("unexpected argument %q (see '%s -h')", fs.Arg(0), fs.Name())
	}
	e.conn.merge(e.before, os.Getenv)
	return nil
}

const versionHelp = `Usage: agentcache version

Prints the agentcache library version and the Go version the CLI was built with.
`

func runVersion(_ context.Context, e *env, fs *flag.FlagSet, args []string) error {
	if err := e.parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "agentcache %s (%s %s/%s)\n", otel.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
