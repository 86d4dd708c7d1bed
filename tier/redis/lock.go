package redis

import (
	"context"
	"errors"
	"time"

	"github.com/agentcache/agentcache-go/tier"

	goredis "github.com/redis/go-redis/v9"
)

// luaHolds is tier.LeaseHeld: the value of a lease key is the holder's
// token, or the token, a NUL byte and the lease's generation.
const luaHolds = `
local function holds(v, tok)
	return v == tok or type(v) == 'string' and string.len(v) > string.len(tok) and string.sub(v, 1, string.len(tok) + 1) == tok .. '\0'
end
`

// The lease scripts compare the token before touching the key, atomically,
// so a holder whose lease expired and was taken by someone else cannot
// extend or release the new holder's lease.
var (
	extendScript = goredis.NewScript(luaHolds + `
if holds(redis.call("GET", KEYS[1]), ARGV[1]) then
	return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0`)

	tagScript = goredis.NewScript(luaHolds + `
if holds(redis.call("GET", KEYS[1]), ARGV[1]) then
	redis.call("SET", KEYS[1], ARGV[2], "PX", ARGV[3])
	return 1
end
return 0`)

	// tryLockScript is SET NX PX, except that a key with no expiry, or
	// of another type than a string, is no lease (it would block the key
	// forever): it is taken over, as the read script does.
	tryLockScript = goredis.NewScript(`
if redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then
	return 1
end
if redis.call("PTTL", KEYS[1]) == -1 or redis.call("TYPE", KEYS[1]).ok ~= "string" then
	redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
	return 1
end
return 0`)

	unlockScript = goredis.NewScript(luaHolds + `
if holds(redis.call("GET", KEYS[1]), ARGV[1]) then
	return redis.call("DEL", KEYS[1])
end
return 0`)
)

// TryLock implements [tier.Locker] with a script that runs SET NX PX and,
// when the key is there without an expiry (or is not a string), takes it
// over: one command, as SET NX PX was. ttl must be positive: a lease that
// never expires would outlive a crashed holder.
func (s *Store) TryLock(ctx context.Context, key, token string, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		return false, errLeaseTTL
	}
	return s.runLease(ctx, "try lock", tryLockScript, key, token, expiry(ttl).Milliseconds())
}

// Extend implements [tier.Locker] with a script that sets the new expiry
// only if token still holds the lease.
func (s *Store) Extend(ctx context.Context, key, token string, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		return false, errLeaseTTL
	}
	return s.runLease(ctx, "extend", extendScript, key, token, expiry(ttl).Milliseconds())
}

// TagLease implements [tier.LeaseTagger] with a script that rewrites the
// lease, tagged with gen, only if token still holds it.
func (s *Store) TagLease(ctx context.Context, key, token string, gen uint64, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		return false, errLeaseTTL
	}
	if gen == 0 {
		return false, errLeaseGen
	}
	return s.runLease(ctx, "tag lease", tagScript, key, token, tier.LeaseValue(token, gen), expiry(ttl).Milliseconds())
}

var errLeaseGen = errors.New("redis: a lease's generation must be known (> 0)")

// Unlock implements [tier.Locker] with a script that deletes the key only if
// token still holds the lease.
func (s *Store) Unlock(ctx context.Context, key, token string) (bool, error) {
	return s.runLease(ctx, "unlock", unlockScript, key, token)
}

func (s *Store) runLease(ctx context.Context, op string, script *goredis.Script, key string, args ...any) (bool, error) {
	if err := s.begin(ctx, op); err != nil {
		return false, err
	}
	// As the record scripts: the first use carries the script's body.
	cmds, _ := s.runScripts(ctx, []call{{script: script, keys: []string{s.prefix + key}, args: args}})
	n, err := cmds[0].Int64()
	if err != nil {
		return false, s.fail(ctx, op, err)
	}
	return n == 1, nil
}
