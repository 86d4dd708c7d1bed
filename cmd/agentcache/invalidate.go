package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/internal/keyspace"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
)

const invalidateHelp = `Usage: agentcache invalidate TARGET [flags]

Invalidates a slice of the cache on every instance, through the library: it
bumps the slice's epoch in Redis and publishes the invalidation message, so
running instances drop their in-process copies within milliseconds (and
within their MaxEpochAge if they miss the message). Old entries become
unreachable at once and expire by their TTL; nothing is scanned.

Targets:
  -resource NAME[@VER]                        the resource in every scope
  -user ID                                    every per-user resource of the user (logout)
  -session ID                                 every per-session resource of the session
  -resource NAME[@VER] -user ID               the resource in the user's scope (this user's cart)
  -resource NAME[@VER] [-user ID] -args JSON  one call: the entry for exactly these arguments
  -all                                        everything under the prefix (asks to type the prefix)

The version is 0 when @VER is left out, as in resource.Resource. The scope
kind of the resource is taken from -scope, else inferred: user with -user,
session with -session, global otherwise. -args is hashed like the library
hashes a call's arguments (canonical JSON: key order and spacing do not
matter). -user and -session may be given together without -resource.

Examples:
  agentcache invalidate -url redis://localhost:6379 -resource get_weather@2
  agentcache invalidate -url redis://localhost:6379 -resource get_cart@1 -user alice
  agentcache invalidate -url redis://localhost:6379 -resource get_order -user alice -args '{"id":"A-17"}'
  agentcache invalidate -url redis://localhost:6379 -user alice -session 5f1c
  agentcache invalidate -cluster 10.0.0.1:7000 -all -yes
`

// invalidation is a target and what to say once it is done.
type invalidation struct {
	target agentcache.Target
	desc   string
	// epoch is the key (relative to the prefix) of the epoch whose absence
	// means nothing of the target is reachable in Redis: the target was
	// probably misspelled (a wrong version, scope kind or prefix).
	epoch string
}

func runInvalidate(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error {
	res := fs.String("resource", "", "resource `name[@version]` (version 0 when left out)")
	user := fs.String("user", "", "user `ID`")
	session := fs.String("session", "", "session `ID`")
	kind := fs.String("scope", "", "scope kind of -resource: `global|user|session` (default: inferred from -user/-session)")
	callArgs := fs.String("args", "", "`JSON` arguments of one call of -resource")
	all := fs.Bool("all", false, "invalidate everything under the prefix")
	yes := fs.Bool("yes", false, "with -all, do not ask for confirmation")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	todo, err := invalidations(*res, *user, *session, *kind, *callArgs, *all)
	if err != nil {
		return err
	}
	c, err := connect(e.conn)
	if err != nil {
		return err
	}
	defer c.close()
	if *all {
		todo[0].desc = "everything under prefix " + strconv.Quote(c.prefix)
		if !*yes {
			if err := confirm(e, c); err != nil {
				return err
			}
		}
	}
	// Checked before Invalidate, which creates the epochs it bumps.
	for _, t := range todo {
		if t.epoch == "" {
			continue
		}
		n, err := c.client.Exists(ctx, c.prefix+t.epoch).Result()
		if err != nil {
			return fmt.Errorf("checking %s: %w", t.epoch, err)
		}
		if n == 0 {
			fmt.Fprintf(e.stderr, "agentcache: invalidate: note: %s: Redis holds no epoch %s%s, so nothing of it is cached (check the name, @version, scope kind and -prefix); invalidating anyway\n",
				t.desc, c.prefix, t.epoch)
		}
	}

	cache, err := agentcache.New(agentcache.Options{
		L2:           c.store,
		L1MaxEntries: 16,
		L2Timeout:    ioTimeout,
		Logger:       slog.New(slog.DiscardHandler),
		Telemetry:    agentcache.TelemetryOptions{Name: "agentcache-cli"},
	})
	if err != nil {
		return err
	}
	targets := make([]agentcache.Target, len(todo))
	for i, t := range todo {
		targets[i] = t.target
	}
	ierr := cache.Invalidate(ctx, targets...)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ioTimeout)
	defer cancel()
	cerr := cache.Close(cctx)
	if ierr != nil {
		var fe *agentcache.FleetError
		if errors.As(ierr, &fe) {
			// Bumping an epoch again is harmless, so a retry is always safe.
			return fmt.Errorf("the invalidation did not fully reach Redis; instances may serve old entries until it does (retrying is safe): %w", fe.Err)
		}
		return ierr
	}
	for _, t := range todo {
		fmt.Fprintln(e.stdout, "invalidated "+t.desc)
	}
	return cerr
}

// invalidations turns the flags into targets.
func invalidations(res, user, session, kind, callArgs string, all bool) ([]invalidation, error) {
	if all {
		if res != "" || user != "" || session != "" || kind != "" || callArgs != "" {
			return nil, usageError("-all takes no other target flag")
		}
		return []invalidation{{target: agentcache.TargetAll(), desc: "everything under the prefix"}}, nil
	}
	for _, s := range []struct{ flag, id string }{{"user", user}, {"session", session}} {
		if s.id == "" {
			continue
		}
		if err := scope.Validate(s.id); err != nil {
			return nil, usageError("-%s: %v", s.flag, err)
		}
	}
	if res == "" {
		switch {
		case callArgs != "":
			return nil, usageError("-args needs -resource")
		case kind != "":
			return nil, usageError("-scope needs -resource")
		case user == "" && session == "":
			return nil, usageError("nothing to invalidate: give -resource, -user, -session or -all")
		}
		var out []invalidation
		if user != "" {
			out = append(out, invalidation{agentcache.TargetUser(user), "every per-user resource of user " + strconv.Quote(user),
				keyspace.ScopeEpochKey(keyspace.Segment(scope.User, user))})
		}
		if session != "" {
			out = append(out, invalidation{agentcache.TargetSession(session), "every per-session resource of session " + strconv.Quote(session),
				keyspace.ScopeEpochKey(keyspace.Segment(scope.Session, session))})
		}
		return out, nil
	}

	name, ver, ok := keyspace.ParseResource(res)
	if !ok {
		return nil, usageError("-resource %q: want name or name@version (a name is letters, digits, '_', '.' and '-', starting with a letter)", res)
	}
	if user != "" && session != "" {
		return nil, usageError("a resource has one scope kind: give -user or -session, not both")
	}
	id, sk := user, scope.Global
	switch {
	case user != "":
		sk = scope.User
	case session != "":
		id, sk = session, scope.Session
	}
	if kind != "" {
		k, err := scope.ParseKind(kind)
		if err != nil {
			return nil, usageError("-scope: %v", err)
		}
		switch {
		case k == scope.Global && id != "":
			return nil, usageError("-scope global takes no -user or -session")
		case k == scope.User && session != "", k == scope.Session && user != "":
			return nil, usageError("-scope %s does not go with the ID given (-user is for user, -session for session)", k)
		}
		sk = k
	}
	r := resource.Resource{Name: name, Version: ver, Scope: sk}
	where := ""
	epoch := keyspace.ResourceEpochKey(r.ID())
	if id != "" {
		where = " for " + sk.String() + " " + strconv.Quote(id)
		epoch = keyspace.ResourceScopeEpochKey(r.ID(), keyspace.Segment(sk, id))
	}
	if callArgs != "" {
		if sk != scope.Global && id == "" {
			return nil, usageError("-args on a %s resource needs -%s", sk, sk)
		}
		raw := json.RawMessage(callArgs)
		h, err := resource.HashJSON(raw, resource.Limits{})
		if err != nil {
			return nil, usageError("-args: %v", err)
		}
		return []invalidation{{agentcache.TargetCall(r, id, raw), "one call of " + r.ID() + where + " (arguments hash " + h.String() + ")", epoch}}, nil
	}
	if id != "" {
		return []invalidation{{agentcache.TargetResourceScope(r, id), r.ID() + where, epoch}}, nil
	}
	return []invalidation{{agentcache.TargetResource(r), r.ID() + " in every scope", epoch}}, nil
}

// confirm asks the operator to type the prefix before -all.
func confirm(e *env, c *conn) error {
	fmt.Fprintf(e.stderr, "This invalidates EVERY entry under prefix %q on %s, on every instance.\nType the prefix to confirm: ", c.prefix, c.where)
	line, err := bufio.NewReader(e.stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading the confirmation: %w", err)
	}
	if !strings.HasSuffix(line, "\n") {
		fmt.Fprintln(e.stderr)
	}
	if strings.TrimRight(line, "\r\n") != c.prefix {
		return errors.New("the confirmation did not match the prefix; nothing was invalidated")
	}
	return nil
}
