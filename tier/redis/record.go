package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/tier"
)

// Every capability the cache's consistency rests on.
var (
	_ tier.Fencer   = (*Store)(nil)
	_ tier.Epochs   = (*Store)(nil)
	_ tier.Repairer = (*Store)(nil)
)

// The scripts share these helpers. Stamps and epochs are microseconds of
// the server's clock, below 2^53, so Lua's numbers hold them exactly.
const luaHelpers = `
local function isrec(b)
	if type(b) ~= 'string' or string.len(b) < 10 or string.byte(b, 1) ~= 165 then return false end
	local k = string.byte(b, 2)
	return k >= 1 and k <= 4
end
local function stamp(b)
	local s = 0
	for i = 3, 10 do s = s * 256 + string.byte(b, i) end
	return s
end
local function be8(n)
	local b = {}
	for i = 8, 1, -1 do
		b[i] = n % 256
		n = math.floor(n / 256)
	end
	return string.char(unpack(b))
end
local function now()
	local t = redis.call('TIME')
	return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function get(k)
	local v = redis.pcall('GET', k)
	if type(v) == 'table' and v.err then
		redis.call('DEL', k)
		return false, 1
	end
	return v, 0
end
`

// readScript reads KEYS[1] with the server's clock and, given KEYS[2],
// takes the lease ARGV[1] for ARGV[2] ms unless a value or marker is there.
// A lease key of another type, or without an expiry, is replaced.
var readScript = goredis.NewScript(luaHelpers + `
local v, repaired = get(KEYS[1])
local leased = 0
if KEYS[2] then
	local live = isrec(v) and string.byte(v, 2) ~= 3
	if not live then
		local l, bad = get(KEYS[2])
		if bad == 0 and l and redis.call('PTTL', KEYS[2]) < 0 then
			redis.call('DEL', KEYS[2])
			bad = 1
		end
		if bad == 1 then repaired = 1 end
		if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then leased = 1 end
	end
end
return {v, now(), leased, repaired}`)

// writeScript writes the record ARGV[1] at KEYS[1] for ARGV[2] ms (0: no
// expiry) by the rules of tier.Landed (ARGV[4] "0") or tier.LandedReplace
// ("1"), as the kind and with the stamp they say, with the floor ARGV[6]
// (tier.WithFloor), unless the server's clock is more than ARGV[3] µs past
// the record's stamp; then releases the lease KEYS[2] if ARGV[5] holds it.
// It returns 0 written, 1 fenced, 2 too old.
var writeScript = goredis.NewScript(luaHelpers + `
local rec = ARGV[1]
local s = stamp(rec)
local kind = string.byte(rec, 2)
if kind == 4 then kind = 1 end
local h = tonumber(ARGV[3])
local t = now()
local out = 0
if h > 0 and t - s > h then
	out = 2
else
	local sk, st = kind, s
	local cur = get(KEYS[1])
	if h > 0 and isrec(cur) and stamp(cur) - t > h then cur = false end -- stamped ahead of any writer: absent
	if isrec(cur) then
		local ck, cs = string.byte(cur, 2), stamp(cur)
		if ARGV[4] == '1' then -- a replacement: only a newer fence refuses it
			if ck ~= 1 and cs >= s then out = 1 else sk, st = 4, math.max(s, t, cs + 1) end
		elseif kind == 2 and (ck == 1 or ck == 4) then out = 1 -- a marker never replaces a value
		elseif cs >= s then out = 1
		elseif kind == 2 then st = cs -- a marker carries on the fence it replaces
		elseif kind == 1 and ck ~= 1 and cs > 0 then sk, st = 4, cs -- so does a value, as a fenced value
		end
	elseif ARGV[4] == '1' then sk, st = 4, math.max(s, t)
	elseif kind == 2 then st = 0
	end
	local fl = math.min(tonumber(ARGV[6]) or 0, s)
	if out == 0 and ARGV[4] ~= '1' and fl > 0 and (sk == 1 or sk == 4) then -- tier.WithFloor
		if sk == 1 then sk, st = 4, fl elseif fl > st then st = fl end
	end
	if out == 0 then
		rec = string.char(165, sk) .. be8(st) .. string.sub(rec, 11)
		local ttl = tonumber(ARGV[2])
		if ttl > 0 then redis.call('SET', KEYS[1], rec, 'PX', ttl) else redis.call('SET', KEYS[1], rec) end
	end
end
if KEYS[2] and get(KEYS[2]) == ARGV[5] then redis.call('DEL', KEYS[2]) end
return out`)

// tombstoneScript replaces KEYS[1] with a tombstone stamped with the
// server's clock (after any stamp the key held) for ARGV[1] ms.
var tombstoneScript = goredis.NewScript(luaHelpers + `
local s = now()
local cur = get(KEYS[1])
if isrec(cur) and stamp(cur) >= s then s = stamp(cur) + 1 end
redis.call('SET', KEYS[1], string.char(165, 3) .. be8(s), 'PX', ARGV[1])
return s`)

// The epoch scripts: an epoch is decimal text of at most 2^53; anything else
// at the key reads as missing and is replaced.
const luaEpoch = luaHelpers + `
local repaired = false
local function epoch(k)
	local cur, bad = get(k)
	if bad == 1 then repaired = true end
	if type(cur) == 'string' and string.len(cur) <= 16 and string.match(cur, '^[1-9]%d*$') then
		local n = tonumber(cur)
		if n <= 9007199254740991 then return n end
	end
	if cur then repaired = true end
	return nil
end
local function result(n)
	if repaired then return -n end
	return n
end
local function put(k, v, ttl)
	if ttl > 0 then redis.call('SET', k, string.format('%.0f', v), 'PX', ttl)
	else redis.call('SET', k, string.format('%.0f', v)) end
end
local known, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
`

// loadEpochScript returns KEYS[1]'s epoch, at least ARGV[1] (stored if the
// key held less), creating it from the server's clock when missing.
var loadEpochScript = goredis.NewScript(luaEpoch + `
local n = epoch(KEYS[1])
if n == nil then
	n = math.max(now(), known + 1)
	put(KEYS[1], n, ttl)
elseif n < known then
	n = known
	put(KEYS[1], n, ttl)
end
return result(n)`)

// bumpEpochScript sets KEYS[1] to a value after both what it holds and
// ARGV[1], and after the server's clock.
var bumpEpochScript = goredis.NewScript(luaEpoch + `
local n = math.max((epoch(KEYS[1]) or 0) + 1, known + 1, now())
put(KEYS[1], n, ttl)
return result(n)`)

// maxEpoch is the largest epoch the scripts hold exactly.
const maxEpoch = 1<<53 - 1

// call is one script call of a pipeline.
type call struct {
	keys []string
	args []any
}

// runScripts sends calls of script as one pipeline (one round trip per
// node on a cluster) and returns each call's command. The calls that reach
// a server that does not know the script yet (NOSCRIPT: a new or restarted
// node, a Ring shard) are sent again, and only those, with the script's
// body, which also caches it there: a call that ran must not run twice (a
// lease it took would read as held by someone else). Loading the script
// with SCRIPT LOAD instead would not do: on a Ring it reaches one shard
// only, and on a cluster it fails the whole call when one node is down.
// err reports a failure of the whole pipeline.
func (s *Store) runScripts(ctx context.Context, script *goredis.Script, calls []call) ([]*goredis.Cmd, error) {
	return runScriptsOn(ctx, s.client, script, calls)
}

// pipeliner is what runs a pipeline: a client, a node's client or one
// connection.
type pipeliner interface {
	Pipelined(ctx context.Context, fn func(goredis.Pipeliner) error) ([]goredis.Cmder, error)
}

func runScriptsOn(ctx context.Context, on pipeliner, script *goredis.Script, calls []call) ([]*goredis.Cmd, error) {
	cmds := make([]*goredis.Cmd, len(calls))
	_, _ = on.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, c := range calls {
			cmds[i] = script.EvalSha(ctx, p, c.keys, c.args...)
		}
		return nil
	})
	var retry []int
	for i, c := range cmds {
		if err := c.Err(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			retry = append(retry, i)
		}
	}
	if len(retry) == 0 {
		return cmds, nil
	}
	_, _ = on.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, i := range retry {
			cmds[i] = script.Eval(ctx, p, calls[i].keys, calls[i].args...)
		}
		return nil
	})
	return cmds, nil
}

// cmdErr is a command's error, nil for a nil reply.
func cmdErr(c *goredis.Cmd) error {
	if err := c.Err(); err != nil && !errors.Is(err, goredis.Nil) {
		return err
	}
	return nil
}

// ReadRecords implements [tier.Fencer]: one script call per key, pipelined.
func (s *Store) ReadRecords(ctx context.Context, ops []tier.ReadOp) ([]tier.ReadResult, error) {
	if err := s.begin(ctx, "read records"); err != nil {
		return nil, err
	}
	out := make([]tier.ReadResult, len(ops))
	if len(ops) == 0 {
		return out, nil
	}
	calls := make([]call, len(ops))
	for i, op := range ops {
		if op.Lease == nil {
			calls[i] = call{keys: []string{s.prefix + op.Key}}
			continue
		}
		if op.Lease.TTL <= 0 {
			return nil, errLeaseTTL
		}
		calls[i] = call{keys: []string{s.prefix + op.Key, s.prefix + op.Lease.Key},
			args: []any{op.Lease.Token, expiry(op.Lease.TTL).Milliseconds()}}
	}
	cmds, err := s.runScripts(ctx, readScript, calls)
	if err != nil {
		return nil, s.fail(ctx, "read records", err)
	}
	failed := 0
	var first error
	for i, c := range cmds {
		if err := cmdErr(c); err != nil {
			failed++
			out[i].Err = s.fail(ctx, "read records", err)
			first = cmp(first, out[i].Err)
			continue
		}
		r, perr := parseRead(c.Val())
		if perr != nil {
			failed++
			out[i].Err = perr
			first = cmp(first, perr)
			continue
		}
		out[i] = r
	}
	if failed == len(ops) {
		return nil, first
	}
	return out, nil
}

func cmp(first, err error) error {
	if first == nil {
		return err
	}
	return first
}

func parseRead(v any) (tier.ReadResult, error) {
	a, ok := v.([]any)
	if !ok || len(a) != 4 {
		return tier.ReadResult{}, fmt.Errorf("redis: read records: unexpected reply %T", v)
	}
	var r tier.ReadResult
	if b, ok := a[0].(string); ok {
		r.Value, r.Found = []byte(b), true
	}
	now, _ := a[1].(int64)
	leased, _ := a[2].(int64)
	repaired, _ := a[3].(int64)
	r.Now, r.Leased, r.Repaired = now, leased == 1, repaired == 1
	return r, nil
}

// WriteRecords implements [tier.Fencer]: one script call per write,
// pipelined.
func (s *Store) WriteRecords(ctx context.Context, writes []tier.RecordWrite) ([]tier.WriteResult, error) {
	if err := s.begin(ctx, "write records"); err != nil {
		return nil, err
	}
	out := make([]tier.WriteResult, len(writes))
	calls := make([]call, 0, len(writes))
	idx := make([]int, 0, len(writes))
	for i, w := range writes {
		if w.TTL < 0 {
			out[i] = tier.WriteResult{Outcome: tier.Failed, Err: errNegativeTTL}
			continue
		}
		if _, _, _, ok := tier.ParseRecord(w.Record); !ok {
			out[i] = tier.WriteResult{Outcome: tier.Failed, Err: errors.New("redis: write records: bytes that are not a record")}
			continue
		}
		replace := "0"
		if w.Replace {
			replace = "1"
		}
		token := ""
		if w.Release != nil {
			token = w.Release.Token
		}
		c := call{keys: []string{s.prefix + w.Key}, args: []any{w.Record, expiry(w.TTL).Milliseconds(), w.Horizon.Microseconds(), replace, token, w.Floor}}
		if w.Release != nil {
			c.keys = append(c.keys, s.prefix+w.Release.Key)
		}
		calls = append(calls, c)
		idx = append(idx, i)
	}
	if len(calls) == 0 {
		return out, nil
	}
	cmds, err := s.runScripts(ctx, writeScript, calls)
	if err != nil {
		return nil, s.fail(ctx, "write records", err)
	}
	failed := 0
	var first error
	for j, c := range cmds {
		i := idx[j]
		if err := cmdErr(c); err != nil {
			failed++
			out[i] = tier.WriteResult{Outcome: tier.Failed, Err: s.fail(ctx, "write records", err)}
			first = cmp(first, out[i].Err)
			continue
		}
		n, _ := c.Val().(int64)
		out[i].Outcome = [...]tier.Outcome{tier.Written, tier.Fenced, tier.TooOld}[min(max(n, 0), 2)]
	}
	if failed == len(calls) {
		return nil, first
	}
	return out, nil
}

// Tombstone implements [tier.Fencer]: one script call per key, pipelined.
func (s *Store) Tombstone(ctx context.Context, keys []string, ttl time.Duration) ([]int64, error) {
	if ttl <= 0 {
		return nil, errors.New("redis: tombstone: ttl must be positive")
	}
	if err := s.begin(ctx, "tombstone"); err != nil {
		return nil, err
	}
	calls := make([]call, len(keys))
	for i, k := range keys {
		calls[i] = call{keys: []string{s.prefix + k}, args: []any{expiry(ttl).Milliseconds()}}
	}
	return s.int64s(ctx, "tombstone", tombstoneScript, calls)
}

// runDurable is runScripts for the writes of an invalidation: with
// Options.WaitReplicas, each master's calls run on one connection of its
// own, followed by a WAIT there (WAIT counts the acknowledgements of the
// writes made on its connection), and fewer acknowledgements than asked
// fail the whole call. Masters run in parallel.
func (s *Store) runDurable(ctx context.Context, script *goredis.Script, calls []call) ([]*goredis.Cmd, error) {
	if s.waitReplicas <= 0 {
		return s.runScripts(ctx, script, calls)
	}
	nodes := map[*goredis.Client][]int{}
	switch c := s.client.(type) {
	case *goredis.Client:
		nodes[c] = make([]int, len(calls))
		for i := range calls {
			nodes[c][i] = i
		}
	case *goredis.ClusterClient:
		for i, cl := range calls {
			node, err := c.MasterForKey(ctx, cl.keys[0])
			if err != nil {
				return nil, err
			}
			nodes[node] = append(nodes[node], i)
		}
	default:
		return nil, fmt.Errorf("redis: WaitReplicas needs a single-node, failover or cluster client, not %T", s.client)
	}
	cmds := make([]*goredis.Cmd, len(calls))
	errs := make(chan error, len(nodes))
	for node, idx := range nodes {
		go func() {
			errs <- s.runWaiting(ctx, node, script, calls, idx, cmds)
		}()
	}
	var first error
	for range nodes {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return cmds, first
}

// runWaiting runs the calls at idx on one connection of node, then WAIT.
func (s *Store) runWaiting(ctx context.Context, node *goredis.Client, script *goredis.Script, calls []call, idx []int, cmds []*goredis.Cmd) error {
	conn := node.Conn()
	defer conn.Close()
	part := make([]call, len(idx))
	for j, i := range idx {
		part[j] = calls[i]
	}
	got, _ := runScriptsOn(ctx, conn, script, part)
	for j, i := range idx {
		cmds[i] = got[j]
	}
	n, err := conn.Wait(ctx, s.waitReplicas, s.waitTimeout).Result()
	if err != nil {
		return err
	}
	if n < int64(s.waitReplicas) {
		return fmt.Errorf("redis: %d of %d replicas acknowledged within %v", n, s.waitReplicas, s.waitTimeout)
	}
	return nil
}

// int64s runs calls and returns their integer replies; any failure fails
// the whole call.
func (s *Store) int64s(ctx context.Context, op string, script *goredis.Script, calls []call) ([]int64, error) {
	out := make([]int64, len(calls))
	if len(calls) == 0 {
		return out, nil
	}
	run := s.runScripts
	if script == bumpEpochScript || script == tombstoneScript {
		run = s.runDurable
	}
	cmds, err := run(ctx, script, calls)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	for i, c := range cmds {
		n, err := c.Int64()
		if err != nil {
			return nil, s.fail(ctx, op, err)
		}
		out[i] = n
	}
	return out, nil
}

// LoadEpochs implements [tier.Epochs] with one script call per key,
// pipelined. Values are decimal text.
func (s *Store) LoadEpochs(ctx context.Context, keys []string, known []uint64, ttl time.Duration) ([]uint64, error) {
	return s.epochs(ctx, "load epochs", loadEpochScript, keys, known, ttl)
}

// BumpEpochs implements [tier.Epochs] with one script call per key,
// pipelined.
func (s *Store) BumpEpochs(ctx context.Context, keys []string, known []uint64, ttl time.Duration) ([]uint64, error) {
	return s.epochs(ctx, "bump epochs", bumpEpochScript, keys, known, ttl)
}

func (s *Store) epochs(ctx context.Context, op string, script *goredis.Script, keys []string, known []uint64, ttl time.Duration) ([]uint64, error) {
	if len(keys) != len(known) {
		return nil, fmt.Errorf("redis: %s: %d keys but %d known values", op, len(keys), len(known))
	}
	if ttl < 0 {
		return nil, errNegativeTTL
	}
	if err := s.begin(ctx, op); err != nil {
		return nil, err
	}
	calls := make([]call, len(keys))
	for i, k := range keys {
		if known[i] > maxEpoch {
			return nil, fmt.Errorf("redis: %s: epoch %d is above 2^53", op, known[i])
		}
		calls[i] = call{keys: []string{s.prefix + k}, args: []any{strconv.FormatUint(known[i], 10), expiry(ttl).Milliseconds()}}
	}
	vals, err := s.int64s(ctx, op, script, calls)
	if err != nil {
		return nil, err
	}
	out := make([]uint64, len(vals))
	for i, v := range vals {
		if v < 0 { // the script replaced what the key held (see luaEpoch)
			s.repairs.Add(1)
			v = -v
		}
		out[i] = uint64(v)
	}
	return out, nil
}

// Repairs implements [tier.Repairer]: how many epoch keys this store found
// holding something that is not an epoch (another type, garbage text) and
// replaced.
func (s *Store) Repairs() uint64 { return s.repairs.Load() }
