package agentcache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/agentcache/agentcache-go/internal/epoch"
	"github.com/agentcache/agentcache-go/internal/keyspace"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
	"github.com/agentcache/agentcache-go/tier"
)

// Target names a slice of the cache to invalidate. Build one with the
// Target functions; the zero Target is invalid.
type Target struct {
	kind targetKind
	res  resource.Resource
	sk   scope.Kind
	id   string
	args any    // TargetCall: the call's arguments (json.RawMessage for JSON tools)
	l1   string // TargetCall from a memo: the call's L1 key
}

type targetKind uint8

const (
	targetNone targetKind = iota
	targetAll
	targetResource
	targetScope
	targetResourceScope
	targetCall
)

func (k targetKind) String() string {
	return [...]string{"none", "all", "resource", "scope", "resource_scope", "call"}[k]
}

// countInvalidation counts one invalidation of kind in Stats and metrics.
func (c *Cache) countInvalidation(ctx context.Context, kind string) {
	c.stats.invalidations.Add(1)
	if c.obs.inst.Invalidations.Enabled(ctx) {
		c.obs.inst.Invalidations.Add(ctx, 1, c.obs.invOpts[kind]...)
	}
}

// TargetAll is every entry of every resource and of the key-value API.
func TargetAll() Target { return Target{kind: targetAll} }

// TargetResource is every entry of r, in every scope.
func TargetResource(r resource.Resource) Target { return Target{kind: targetResource, res: r} }

// TargetUser is every entry of every per-user resource for user id (logout).
func TargetUser(id string) Target { return Target{kind: targetScope, sk: scope.User, id: id} }

// TargetSession is every entry of every per-session resource for session id.
func TargetSession(id string) Target {
	return Target{kind: targetScope, sk: scope.Session, id: id}
}

// TargetResourceScope is every entry of r in the scope id (this user's
// cart). For a global resource id is ignored and the target is the whole
// resource.
func TargetResourceScope(r resource.Resource, id string) Target {
	if r.Scope == scope.Global {
		return TargetResource(r)
	}
	return Target{kind: targetResourceScope, res: r, sk: r.Scope, id: id}
}

// TargetResourceIn is TargetResourceScope with the scope ID r needs taken
// from ctx. It fails, like a lookup would, when ctx lacks it.
func TargetResourceIn(ctx context.Context, r resource.Resource) (Target, error) {
	id, err := scope.ID(ctx, r.Scope)
	if err != nil {
		return Target{}, fmt.Errorf("agentcache: invalidate %s: %w", r.Name, err)
	}
	return TargetResourceScope(r, id), nil
}

// TargetCall is the one entry of r for these arguments in scope id ("" for
// a global resource): args as the wrapped tool takes them, or a
// json.RawMessage for a JSON tool.
func TargetCall(r resource.Resource, id string, args any) Target {
	return Target{kind: targetCall, res: r, sk: r.Scope, id: id, args: args}
}

// Invalidate drops the targets' entries on every instance, in O(1) round
// trips whatever their number: each target bumps an epoch that is part of
// its entries' keys (an exact call deletes its one key). All the targets
// travel in one L2 write per shard and one message.
//
// Once Invalidate returns, this instance serves no value loaded before it.
// Other instances stop serving old values when the message reaches them, and
// never later than Options.MaxEpochAge after they next reach L2. If L2 cannot
// be reached the local invalidation applies and a *FleetError says the fleet
// was not told. Bad targets (an invalid resource or scope ID) fail before
// anything is applied.
func (c *Cache) Invalidate(ctx context.Context, targets ...Target) error {
	if c.closed.Load() {
		return ErrClosed
	}
	var cells []*epoch.Cell
	var l1Keys, l2Keys []string
	for _, t := range targets {
		cs, l1, l2, err := c.resolve(ctx, t)
		if err != nil {
			return err
		}
		c.countInvalidation(ctx, t.kind.String())
		cells = append(cells, cs...)
		if l1 != "" {
			l1Keys = append(l1Keys, l1)
			l2Keys = append(l2Keys, l2)
		}
	}
	return c.fleet(ctx, "invalidate", c.invalidate(ctx, cells, l1Keys, l2Keys))
}

// invalidate applies an invalidation here and tells L2 and the fleet, in
// one L2 call (one round trip per node): the exact keys are fenced and
// dropped from L1, replaced in L2 by tombstones (which no write of an older
// load can overwrite), and the cells bumped; the store publishes each one's
// notice with it. The local part always happens; what L2 did not take is
// kept by the repair loop, and the error says the fleet was not told.
func (c *Cache) invalidate(ctx context.Context, cells []*epoch.Cell, l1Keys, l2Keys []string) error {
	for _, k := range l1Keys {
		c.fenceL1(k, 0)
	}
	if c.l2 == nil {
		return c.ep.Bump(ctx, cells, nil)
	}
	tombs := c.tombstones(l2Keys, l1Keys)
	var stamps []int64
	send := func(ctx context.Context, ops []tier.EpochOp) ([]uint64, error) {
		var vals []uint64
		var err error
		stamps, vals, err = c.fencer.Invalidate(ctx, tombs, ops)
		return vals, err
	}
	var err error
	if len(cells) > 0 {
		err = c.ep.Bump(ctx, cells, send)
	} else if len(tombs) > 0 {
		err = c.l2Call(ctx, "invalidate", func(ctx context.Context) error {
			_, err := send(ctx, nil)
			return err
		})
	}
	if err != nil || len(stamps) != len(tombs) {
		// Retried until L2 takes them; meanwhile those keys are not read
		// from L2 here, and the fleet is told once they land.
		for i, k := range l2Keys {
			c.rp.addDelete(k, l1Keys[i])
		}
		return err
	}
	c.tombstoned(l1Keys, stamps)
	return nil
}

// tombstones returns the tombstone ops for the L2 keys l2Keys, whose L1
// keys are l1Keys, each announced with its stamp.
func (c *Cache) tombstones(l2Keys, l1Keys []string) []tier.TombstoneOp {
	tombs := make([]tier.TombstoneOp, len(l2Keys))
	for i, k := range l2Keys {
		tombs[i] = tier.TombstoneOp{Key: k, TTL: fenceHorizon, Notice: c.fenceNotice(l1Keys[i])}
	}
	return tombs
}

// tombstoned records the stamps of tombstones L2 took for the L1 keys
// l1Keys: this instance's fences are raised to them.
func (c *Cache) tombstoned(l1Keys []string, stamps []int64) {
	for i, s := range stamps {
		c.clock.observe(s, c.opts.Now())
		c.fence.raise(l1Keys[i], s)
	}
}

// resolve turns a target into the epoch cells to bump, or for an exact call
// into its L1 and L2 keys.
func (c *Cache) resolve(ctx context.Context, t Target) (cells []*epoch.Cell, l1, l2 string, err error) {
	if t.kind == targetNone {
		return nil, "", "", errors.New("agentcache: invalidate: zero Target (use the Target functions)")
	}
	if t.kind == targetAll {
		return []*epoch.Cell{c.ep.Global()}, "", "", nil
	}
	if t.kind == targetScope {
		if err := scope.Validate(t.id); err != nil {
			return nil, "", "", fmt.Errorf("agentcache: invalidate: %w", err)
		}
		seg := keyspace.Segment(t.sk, t.id)
		return []*epoch.Cell{c.ep.Scoped(keyspace.ScopeEpochKey(seg))}, "", "", nil
	}
	rs, err := c.register(t.res)
	if err != nil {
		return nil, "", "", err
	}
	if rs.segPrefix != "" && t.kind != targetResource {
		if err := scope.Validate(t.id); err != nil {
			return nil, "", "", fmt.Errorf("agentcache: invalidate %s: %w", rs.id, err)
		}
	}
	switch t.kind {
	case targetResource:
		return []*epoch.Cell{rs.cell}, "", "", nil
	case targetResourceScope:
		seg := rs.seg(t.id)
		return []*epoch.Cell{c.ep.Scoped(keyspace.ResourceScopeEpochKey(rs.id, seg))}, "", "", nil
	}
	// targetCall
	id := t.id
	if rs.segPrefix == "" {
		id = ""
	}
	l1 = t.l1
	if l1 == "" {
		args := t.args
		if kf := rs.keyFunc(); kf != nil {
			args, err = kf.key(args) // keyed as the resource's tool keys its calls
		}
		if err == nil {
			l1, err = rs.argsKey(id, args, resource.Limits{}) // a json.RawMessage as a JSON tool's
		}
		if err != nil {
			return nil, "", "", fmt.Errorf("agentcache: invalidate %s: arguments: %w", rs.id, err)
		}
	}
	lk := rs.lookup(l1)
	return nil, lk.l1, lk.l2Key(), nil
}

// epochConfig is what the epoch table needs of c: at most maxScoped
// per-scope cells, and the epoch values a snapshot restored.
func (c *Cache) epochConfig(maxScoped int, restored map[string]uint64) epoch.Config {
	cfg := epoch.Config{
		Call: c.l2Call, Probe: c.l2Probe, Spawn: c.spawn, Base: c.base,
		MaxAge: c.opts.MaxEpochAge, TTL: c.epochTTL,
		Dirty:     c.rp.signal,
		Notice:    c.epochNotice,
		Resets:    c.bus.resets.Load,
		MaxScoped: maxScoped, Restored: restored,
	}
	if c.l2 != nil {
		cfg.Store = tier.EpochsOver(c.l2)
	}
	return cfg
}

// epochTTL returns the L2 expiry of an epoch key: the global and
// per-resource epochs live forever, per-scope ones expire (a new random
// value replaces an expired one, so expiry costs misses, never
// correctness).
func (c *Cache) epochTTL(key string) time.Duration {
	if key == keyspace.GlobalEpochKey || strings.HasPrefix(key, keyspace.ResourceEpochKey("")) {
		return 0
	}
	return c.opts.Tuning.ScopeEpochTTL
}
