package redis

import (
	"context"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/tier"
)

// GetMulti implements [tier.BatchGetter]: one MGET on a single server; on a
// cluster, a pipeline of GETs that go-redis sends as one round trip per
// master. A key on a cluster node that failed gets that error in its
// Lookup.Err while the other keys are served; if every key failed, GetMulti
// returns (nil, err) instead.
func (s *Store) GetMulti(ctx context.Context, keys []string) ([]tier.Lookup, error) {
	if err := s.begin(ctx, "get multi"); err != nil {
		return nil, err
	}
	out := make([]tier.Lookup, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	full := s.fullKeys(keys)
	if s.singleNode {
		vals, err := s.client.MGet(ctx, full...).Result()
		if err != nil {
			return nil, s.fail(ctx, "get multi", err)
		}
		if len(vals) != len(keys) {
			return nil, fmt.Errorf("redis: get multi: %d replies for %d keys", len(vals), len(keys))
		}
		for i, v := range vals {
			switch v := v.(type) {
			case nil:
			case string:
				out[i] = tier.Lookup{Value: []byte(v), Found: true}
			default:
				out[i].Err = fmt.Errorf("redis: get multi: unexpected reply type %T", v)
			}
		}
		return out, nil
	}

	cmds := make([]*goredis.StringCmd, len(keys))
	_, _ = s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, k := range full {
			cmds[i] = p.Get(ctx, k)
		}
		return nil
	})
	failed := 0
	var first error
	for i, c := range cmds {
		v, err := c.Bytes()
		switch {
		case errors.Is(err, goredis.Nil):
		case err != nil:
			failed++
			out[i].Err = s.fail(ctx, "get multi", err)
			if first == nil {
				first = out[i].Err
			}
		default:
			out[i] = tier.Lookup{Value: v, Found: true}
		}
	}
	if failed == len(keys) {
		return nil, first
	}
	return out, nil
}

// SetMulti implements [tier.BatchWriter] with one pipeline of SET (SET NX for
// IfAbsent writes), one round trip per master on a cluster. A write with a
// negative TTL gets its own error and is not sent. A write on a cluster node
// that failed gets that node's error; if every write that was sent failed,
// SetMulti returns (nil, err) instead.
func (s *Store) SetMulti(ctx context.Context, writes []tier.Write) ([]error, error) {
	if err := s.begin(ctx, "set multi"); err != nil {
		return nil, err
	}
	errs := make([]error, len(writes))
	cmds := make([]goredis.Cmder, len(writes))
	sent := 0
	for i, w := range writes {
		if w.TTL < 0 {
			errs[i] = errNegativeTTL
			continue
		}
		sent++
	}
	if sent == 0 {
		return errs, nil
	}
	_, _ = s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, w := range writes {
			if errs[i] != nil {
				continue
			}
			if w.IfAbsent {
				cmds[i] = p.SetNX(ctx, s.prefix+w.Key, w.Value, expiry(w.TTL))
			} else {
				cmds[i] = p.Set(ctx, s.prefix+w.Key, w.Value, expiry(w.TTL))
			}
		}
		return nil
	})
	failed := 0
	var first error
	for i, c := range cmds {
		if c == nil {
			continue
		}
		// A SET NX that found the key present replies nil: not an error.
		if err := c.Err(); err != nil && !errors.Is(err, goredis.Nil) {
			failed++
			errs[i] = s.fail(ctx, "set multi", err)
			if first == nil {
				first = errs[i]
			}
		}
	}
	if failed == sent {
		return nil, first
	}
	return errs, nil
}

// SetIfAbsent implements [tier.Adder] with SET NX PX.
func (s *Store) SetIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	if ttl < 0 {
		return false, errNegativeTTL
	}
	if err := s.begin(ctx, "set if absent"); err != nil {
		return false, err
	}
	ok, err := s.client.SetNX(ctx, s.prefix+key, value, expiry(ttl)).Result()
	if err != nil {
		return false, s.fail(ctx, "set if absent", err)
	}
	return ok, nil
}
