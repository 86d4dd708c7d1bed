package redis

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
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
// the server's clock, below 2^53, so Lua's numbers hold them exactly; a
// record's generation is compared as its 8 raw bytes, never as a number.
const luaHelpers = `
local function isrec(b)
	if type(b) ~= 'string' or string.len(b) < 18 or string.byte(b, 1) ~= 165 then return false end
	local k = string.byte(b, 2)
	return k >= 1 and k <= 4
end
local function stamp(b)
	local s = 0
	for i = 3, 10 do s = s * 256 + string.byte(b, i) end
	return s
end
local function gen(b)
	return string.sub(b, 11, 18)
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
local function holds(v, tok) -- tier.LeaseHeld
	return v == tok or type(v) == 'string' and string.len(v) > string.len(tok) and string.sub(v, 1, string.len(tok) + 1) == tok .. '\0'
end
local function notify(ch, msg)
	if ch ~= '' then redis.call('PUBLISH', ch, msg) end
end
`

// readScript reads KEYS[1] with the server's clock and, given KEYS[2],
// takes the lease ARGV[1] (tier.LeaseValue) for ARGV[2] ms unless KEYS[1]
// holds a value or marker of the generation ARGV[3] (8 raw bytes; empty:
// any generation): if KEYS[2] is free, or holds a lease of a known
// generation other than ARGV[4] (base 36; empty: unknown). A lease key of
// another type, or without an expiry, is replaced.
var readScript = goredis.NewScript(luaHelpers + `
local v, repaired = get(KEYS[1])
local leased = 0
if KEYS[2] then
	local live = isrec(v) and string.byte(v, 2) ~= 3 and (ARGV[3] == '' or gen(v) == ARGV[3])
	if not live then
		local l, bad = get(KEYS[2])
		if bad == 0 and l and redis.call('PTTL', KEYS[2]) < 0 then
			redis.call('DEL', KEYS[2])
			bad = 1
		end
		if bad == 1 then repaired = 1 end
		if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
			leased = 1
		elseif ARGV[4] ~= '' and bad == 0 and l then -- tier.LeaseTakesOver
			local i = string.find(l, '\0', 1, true)
			if i and string.sub(l, i + 1) ~= ARGV[4] then
				redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
				leased = 1
			end
		end
	end
end
return {v, now(), leased, repaired}`)

// writeScript writes the record ARGV[1] at KEYS[1] for ARGV[2] ms (0: no
// expiry) by the rules of tier.Landed (ARGV[4] "0") or tier.LandedReplace
// ("1"), as the kind and with the stamp they say (its generation and
// payload kept), with the floor ARGV[6] (tier.WithFloor), unless the
// server's clock is more than ARGV[3] µs past the record's stamp; then
// releases the lease KEYS[2] if ARGV[5] holds it, then publishes ARGV[8] on
// the channel ARGV[7] (empty: none). It returns 0 written, 1 fenced, 2 too
// old.
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
		elseif kind == 2 and (ck == 1 or ck == 4) and gen(cur) == gen(rec) then out = 1 -- a marker never replaces a value of its generation
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
if KEYS[2] and holds(get(KEYS[2]), ARGV[5]) then redis.call('DEL', KEYS[2]) end
notify(ARGV[7], ARGV[8])
return out`)

// tombstoneScript replaces KEYS[1] with a tombstone stamped with the
// server's clock (after any stamp the key held) for ARGV[1] ms, and
// publishes ARGV[3], the stamp and ARGV[4] on the channel ARGV[2] (empty:
// none).
var tombstoneScript = goredis.NewScript(luaHelpers + `
local s = now()
local cur = get(KEYS[1])
if isrec(cur) and stamp(cur) >= s then s = stamp(cur) + 1 end
redis.call('SET', KEYS[1], string.char(165, 3) .. be8(s) .. be8(0), 'PX', ARGV[1])
notify(ARGV[2], ARGV[3] .. string.format('%.0f', s) .. ARGV[4])
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
// key held less), creating it from the server's clock when missing, with
// the expiry ARGV[2] ms (0: none).
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
// ARGV[1], and after the server's clock, with the expiry ARGV[2] ms (0:
// none), and publishes ARGV[4], the value and ARGV[5] on the channel
// ARGV[3] (empty: none).
var bumpEpochScript = goredis.NewScript(luaEpoch + `
local n = math.max((epoch(KEYS[1]) or 0) + 1, known + 1, now())
put(KEYS[1], n, ttl)
notify(ARGV[3], ARGV[4] .. string.format('%.0f', n) .. ARGV[5])
return result(n)`)

// maxEpoch is the largest epoch the scripts hold exactly.
const maxEpoch = 1<<53 - 1

// call is one script call of a pipeline.
type call struct {
	script *goredis.Script
	keys   []string // at least one: the first routes the call
	args   []any
}

// scriptNode names a script and a server that has it cached: one that ran
// it, or was sent its body, for this store.
type scriptNode struct{ hash, node string }

// nodeOf names the server that runs a call whose first key is key, as the
// store tells its servers apart for its script cache; ok is false when it
// cannot tell (a cluster whose slot map cannot be loaded).
func (s *Store) nodeOf(ctx context.Context, key string) (node string, ok bool) {
	switch c := s.client.(type) {
	case *goredis.ClusterClient:
		n, err := c.MasterForKey(ctx, key)
		if err != nil {
			return "", false
		}
		return n.Options().Addr, true
	case *goredis.Ring:
		n, err := c.GetShardClientForKey(key)
		if err != nil {
			return "", false
		}
		return n.Options().Addr, true
	}
	return "", true // one server
}

func (s *Store) scriptKnown(k scriptNode) bool {
	s.scriptsMu.RLock()
	defer s.scriptsMu.RUnlock()
	_, ok := s.scripts[k]
	return ok
}

func (s *Store) setScriptKnown(k scriptNode, known bool) {
	s.scriptsMu.Lock()
	defer s.scriptsMu.Unlock()
	if known {
		s.scripts[k] = struct{}{}
	} else {
		delete(s.scripts, k)
	}
}

// runScripts sends calls as one pipeline (one round trip per node on a
// cluster) and returns each call's command. See runScriptsOn.
func (s *Store) runScripts(ctx context.Context, calls []call) ([]*goredis.Cmd, error) {
	return s.runScriptsOn(ctx, s.client, s.nodeOf, calls, nil)
}

// pipeliner is what runs a pipeline: a client, a node's client or one
// connection.
type pipeliner interface {
	Pipelined(ctx context.Context, fn func(goredis.Pipeliner) error) ([]goredis.Cmder, error)
}

// runScriptsOn sends calls as one pipeline on on, followed by what tail
// adds (if set), and returns each call's command. node names the server of
// a call by its first key.
//
// A call goes by hash (EVALSHA) to a server that has run its script for
// this store before; the first call of a script to any other server carries
// the script's body (EVAL), which also caches it there, so that the first
// use of a script costs no round trip of its own, and the calls after it in
// the same pipeline, which the server runs after it on the same
// connection, go by hash again. The calls that still reach a server that
// does not know the script (NOSCRIPT: a restarted node, a new master, a
// redirect) are sent again, and only those, with the body, followed by
// tail again: a call that ran must not run twice (a lease it took would
// read as held by someone else). Loading the script with SCRIPT LOAD
// instead would not do: on a Ring it reaches one shard only, and on a
// cluster it fails the whole call when one node is down. err reports a
// failure of the whole pipeline.
func (s *Store) runScriptsOn(ctx context.Context, on pipeliner, node func(context.Context, string) (string, bool), calls []call, tail func(goredis.Pipeliner)) ([]*goredis.Cmd, error) {
	cmds := make([]*goredis.Cmd, len(calls))
	targets := make([]scriptNode, len(calls))
	known := make([]bool, len(calls)) // the target is named (else: always EVAL)
	var sending []scriptNode          // targets this pipeline sends the body to
	_, _ = on.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, c := range calls {
			n, ok := node(ctx, c.keys[0])
			targets[i], known[i] = scriptNode{hash: c.script.Hash(), node: n}, ok
			switch {
			case ok && (s.scriptKnown(targets[i]) || slices.Contains(sending, targets[i])):
				cmds[i] = c.script.EvalSha(ctx, p, c.keys, c.args...)
			default:
				if ok {
					sending = append(sending, targets[i])
				}
				cmds[i] = c.script.Eval(ctx, p, c.keys, c.args...)
			}
		}
		if tail != nil {
			tail(p)
		}
		return nil
	})
	var retry []int
	for i, c := range cmds {
		err := c.Err()
		switch {
		case err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT"):
			retry = append(retry, i)
			if known[i] {
				s.setScriptKnown(targets[i], false)
			}
		case known[i] && (err == nil || errors.Is(err, goredis.Nil)) && slices.Contains(sending, targets[i]):
			s.setScriptKnown(targets[i], true)
		}
	}
	if len(retry) == 0 {
		return cmds, nil
	}
	_, _ = on.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, i := range retry {
			cmds[i] = calls[i].script.Eval(ctx, p, calls[i].keys, calls[i].args...)
		}
		if tail != nil {
			tail(p)
		}
		return nil
	})
	for _, i := range retry {
		if err := cmds[i].Err(); known[i] && (err == nil || errors.Is(err, goredis.Nil)) {
			s.setScriptKnown(targets[i], true)
		}
	}
	return cmds, nil
}

// cmdErr is a command's error, nil for a nil reply.
func cmdErr(c *goredis.Cmd) error {
	if err := c.Err(); err != nil && !errors.Is(err, goredis.Nil) {
		return err
	}
	return nil
}

// notice is a notice to publish: on a Ring, after the scripts (see
// scriptNotice).
type notice struct {
	channel string // full
	payload []byte
}

// scriptNotice returns the channel (full; empty for none) and the parts of
// the payload a script publishes n with. On a Ring a script runs on the
// shard of its key, which is not the shard of the channel, where the
// subscribers are: there the script publishes nothing (ring is true) and
// the caller publishes the notice after the scripts.
func (s *Store) scriptNotice(n *tier.Notice) (channel string, before, after []byte, ring bool) {
	if n == nil {
		return "", nil, nil, false
	}
	if _, ok := s.client.(*goredis.Ring); ok {
		return "", nil, nil, true
	}
	return s.prefix + n.Channel, n.Before, n.After, false
}

// publishAfter publishes notices as Publish does, pipelined: on a Ring,
// the notices the scripts could not publish.
func (s *Store) publishAfter(ctx context.Context, op string, notices []notice) error {
	if len(notices) == 0 {
		return nil
	}
	cmds, err := s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, n := range notices {
			_ = p.Process(ctx, publishCmd(ctx, n.channel, n.payload))
		}
		return nil
	})
	if err := firstErr(cmds, err); err != nil {
		return s.fail(ctx, op+": publish", err)
	}
	return nil
}

// genArg is how the read script takes a generation: 8 raw bytes, empty
// for 0 (any).
func genArg(gen uint64) string {
	if gen == 0 {
		return ""
	}
	return string(binary.BigEndian.AppendUint64(nil, gen))
}

// ReadRecords implements [tier.Fencer]: one script call per epoch and per
// key, pipelined together (one round trip per node).
func (s *Store) ReadRecords(ctx context.Context, epochs []tier.EpochOp, ops []tier.ReadOp) ([]uint64, []tier.ReadResult, error) {
	const op = "read records"
	if err := s.begin(ctx, op); err != nil {
		return nil, nil, err
	}
	calls, err := s.epochCalls(op, loadEpochScript, epochs, make([]call, 0, len(epochs)+len(ops)), nil)
	if err != nil {
		return nil, nil, err
	}
	if s.singleNode && len(ops) > 1 && !slices.ContainsFunc(ops, func(o tier.ReadOp) bool { return o.Lease != nil }) {
		return s.readMany(ctx, op, epochs, ops, calls)
	}
	for _, o := range ops {
		if o.Lease == nil {
			calls = append(calls, call{script: readScript, keys: []string{s.prefix + o.Key}})
			continue
		}
		if o.Lease.TTL <= 0 {
			return nil, nil, errLeaseTTL
		}
		calls = append(calls, call{script: readScript, keys: []string{s.prefix + o.Key, s.prefix + o.Lease.Key},
			args: []any{tier.LeaseValue(o.Lease.Token, o.Lease.Gen), expiry(o.Lease.TTL).Milliseconds(), genArg(o.Gen), leaseGenArg(o.Lease.Gen)}})
	}
	vals := make([]uint64, len(epochs))
	out := make([]tier.ReadResult, len(ops))
	if len(calls) == 0 {
		return vals, out, nil
	}
	cmds, err := s.runScripts(ctx, calls)
	if err != nil {
		return nil, nil, s.fail(ctx, op, err)
	}
	if err := s.epochReplies(ctx, op, cmds[:len(epochs)], vals); err != nil {
		return nil, nil, err
	}
	failed := 0
	var first error
	for i, c := range cmds[len(epochs):] {
		if err := cmdErr(c); err != nil {
			failed++
			out[i].Err = s.fail(ctx, op, err)
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
	if len(ops) > 0 && failed == len(ops) {
		return nil, nil, first
	}
	return vals, out, nil
}

// readMany is ReadRecords of reads without leases on a single node: the
// epoch loads, the server's clock and one MGET, in one pipeline, which
// costs the server what a bare MGET does (a script per key cost it about
// three times as much). The clock is read just before the keys, so a write
// stamped with it never postdates what the read saw. MGET reads a key of
// another type as a miss; the write of the value loaded for it replaces it
// (writeScript), so such a key is repaired by the write, not the read.
func (s *Store) readMany(ctx context.Context, op string, epochs []tier.EpochOp, ops []tier.ReadOp, calls []call) ([]uint64, []tier.ReadResult, error) {
	keys := make([]string, len(ops))
	for i, o := range ops {
		keys[i] = s.prefix + o.Key
	}
	var clock *goredis.TimeCmd
	var mget *goredis.SliceCmd
	cmds, err := s.runScriptsOn(ctx, s.client, s.nodeOf, calls, func(p goredis.Pipeliner) {
		clock, mget = p.Time(ctx), p.MGet(ctx, keys...)
	})
	if err != nil {
		return nil, nil, s.fail(ctx, op, err)
	}
	vals := make([]uint64, len(epochs))
	if err := s.epochReplies(ctx, op, cmds, vals); err != nil {
		return nil, nil, err
	}
	now, err := clock.Result()
	if err != nil {
		return nil, nil, s.fail(ctx, op, err)
	}
	got, err := mget.Result()
	if err != nil {
		return nil, nil, s.fail(ctx, op, err)
	}
	if len(got) != len(ops) {
		return nil, nil, fmt.Errorf("redis: read records: %d values for %d keys", len(got), len(ops))
	}
	out := make([]tier.ReadResult, len(ops))
	for i, v := range got {
		out[i].Now = now.UnixMicro()
		if b, ok := v.(string); ok {
			out[i].Value, out[i].Found = []byte(b), true
		}
	}
	return vals, out, nil
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

// WriteRecords implements [tier.Fencer]: one script call per write, which
// writes, releases and publishes, pipelined.
func (s *Store) WriteRecords(ctx context.Context, writes []tier.RecordWrite) ([]tier.WriteResult, error) {
	const op = "write records"
	if err := s.begin(ctx, op); err != nil {
		return nil, err
	}
	out := make([]tier.WriteResult, len(writes))
	calls := make([]call, 0, len(writes))
	idx := make([]int, 0, len(writes))
	var after []notice // on a Ring
	for i, w := range writes {
		if w.TTL < 0 {
			out[i] = tier.WriteResult{Outcome: tier.Failed, Err: errNegativeTTL}
			continue
		}
		if _, ok := tier.ParseRecord(w.Record); !ok {
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
		channel, before, tail, _ := s.scriptNotice(w.Notice)
		c := call{script: writeScript, keys: []string{s.prefix + w.Key},
			args: []any{w.Record, expiry(w.TTL).Milliseconds(), w.Horizon.Microseconds(), replace, token, w.Floor, channel, noticePayload(before, tail)}}
		if w.Release != nil {
			c.keys = append(c.keys, s.prefix+w.Release.Key)
		}
		calls = append(calls, c)
		idx = append(idx, i)
	}
	if len(calls) == 0 {
		return out, nil
	}
	cmds, err := s.runScripts(ctx, calls)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	failed := 0
	var first error
	for j, c := range cmds {
		i := idx[j]
		if err := cmdErr(c); err != nil {
			failed++
			out[i] = tier.WriteResult{Outcome: tier.Failed, Err: s.fail(ctx, op, err)}
			first = cmp(first, out[i].Err)
			continue
		}
		n, _ := c.Val().(int64)
		out[i].Outcome = [...]tier.Outcome{tier.Written, tier.Fenced, tier.TooOld}[min(max(n, 0), 2)]
		if _, _, _, ring := s.scriptNotice(writes[i].Notice); ring {
			after = append(after, notice{channel: s.prefix + writes[i].Notice.Channel, payload: writes[i].Notice.Payload(-1)})
		}
	}
	if failed == len(calls) {
		return nil, first
	}
	// The writes are made: a notice that cannot be published leaves the
	// waiters to their leases' expiry, and is no error of the writes.
	_ = s.publishAfter(ctx, op, after)
	return out, nil
}

// noticePayload is the payload of a record write's notice: no number.
func noticePayload(before, after []byte) []byte {
	if len(before) == 0 {
		return after
	}
	return append(append([]byte(nil), before...), after...)
}

// Invalidate implements [tier.Fencer]: one script call per tombstone and
// per epoch, each publishing its notice, pipelined together (one round trip
// per node; with Options.WaitReplicas, the WAIT of each master in the same
// round trip, see runDurable).
func (s *Store) Invalidate(ctx context.Context, tombs []tier.TombstoneOp, bumps []tier.EpochOp) ([]int64, []uint64, error) {
	return s.invalidate(ctx, "invalidate", tombs, bumps)
}

// invalidate is Invalidate, and BumpEpochs without tombstones; op names
// the operation in errors.
func (s *Store) invalidate(ctx context.Context, op string, tombs []tier.TombstoneOp, bumps []tier.EpochOp) ([]int64, []uint64, error) {
	for _, t := range tombs {
		if t.TTL <= 0 { // a tombstone without an expiry would fence its key forever
			return nil, nil, fmt.Errorf("redis: %s: tombstone ttl must be positive", op)
		}
	}
	if err := s.begin(ctx, op); err != nil {
		return nil, nil, err
	}
	calls := make([]call, 0, len(tombs)+len(bumps))
	var after []notice // on a Ring
	for _, t := range tombs {
		channel, before, tail, ring := s.scriptNotice(t.Notice)
		calls = append(calls, call{script: tombstoneScript, keys: []string{s.prefix + t.Key},
			args: []any{expiry(t.TTL).Milliseconds(), channel, before, tail}})
		if ring {
			after = append(after, notice{channel: s.prefix + t.Notice.Channel})
		}
	}
	calls, err := s.epochCalls(op, bumpEpochScript, bumps, calls, &after)
	if err != nil {
		return nil, nil, err
	}
	stamps := make([]int64, len(tombs))
	vals := make([]uint64, len(bumps))
	if len(calls) == 0 {
		return stamps, vals, nil
	}
	cmds, err := s.runDurable(ctx, calls)
	if err != nil {
		return nil, nil, s.fail(ctx, op, err)
	}
	for i, c := range cmds[:len(tombs)] {
		n, err := c.Int64()
		if err != nil {
			return nil, nil, s.fail(ctx, op, err)
		}
		stamps[i] = n
	}
	if err := s.epochReplies(ctx, op, cmds[len(tombs):], vals); err != nil {
		return nil, nil, err
	}
	if len(after) > 0 {
		j := 0
		for i, t := range tombs {
			if t.Notice != nil {
				after[j].payload = t.Notice.Payload(stamps[i])
				j++
			}
		}
		for i, b := range bumps {
			if b.Notice != nil {
				after[j].payload = b.Notice.Payload(int64(vals[i]))
				j++
			}
		}
		if err := s.publishAfter(ctx, op, after); err != nil {
			return nil, nil, err // the fleet was not told: the caller retries
		}
	}
	return stamps, vals, nil
}

// runDurable is runScripts for the writes of an invalidation: with
// Options.WaitReplicas, each master's calls run on one connection of its
// own, followed by a WAIT there (WAIT counts the acknowledgements of the
// writes made on its connection), and fewer acknowledgements than asked
// fail the whole call. Masters run in parallel.
func (s *Store) runDurable(ctx context.Context, calls []call) ([]*goredis.Cmd, error) {
	if s.waitReplicas <= 0 {
		return s.runScripts(ctx, calls)
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
			errs <- s.runWaiting(ctx, node, calls, idx, cmds)
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

// waitMargin is how much longer than Options.WaitTimeout a node's read
// timeout must be for the WAIT to share the scripts' pipeline: the reply to
// that pipeline comes only once the WAIT has.
const waitMargin = 100 * time.Millisecond

// runWaiting runs the calls at idx on one connection of node, then WAIT:
// in the same pipeline as the calls (one round trip), unless the node's
// read timeout is too short to cover the WAIT, which then follows as a
// command of its own.
func (s *Store) runWaiting(ctx context.Context, node *goredis.Client, calls []call, idx []int, cmds []*goredis.Cmd) error {
	conn := node.Conn()
	defer conn.Close()
	part := make([]call, len(idx))
	for j, i := range idx {
		part[j] = calls[i]
	}
	addr := ""
	if _, ok := s.client.(*goredis.ClusterClient); ok {
		addr = node.Options().Addr // as nodeOf names it
	}
	on := func(context.Context, string) (string, bool) { return addr, true }
	var wait *goredis.IntCmd
	var tail func(goredis.Pipeliner)
	if rt := node.Options().ReadTimeout; rt <= 0 || rt >= s.waitTimeout+waitMargin {
		tail = func(p goredis.Pipeliner) {
			// WAIT 0 would block forever: the timeout is rounded up.
			wait = goredis.NewIntCmd(ctx, "wait", s.waitReplicas, expiry(s.waitTimeout).Milliseconds())
			_ = p.Process(ctx, wait)
		}
	}
	got, _ := s.runScriptsOn(ctx, conn, on, part, tail)
	for j, i := range idx {
		cmds[i] = got[j]
	}
	if wait == nil {
		wait = conn.Wait(ctx, s.waitReplicas, expiry(s.waitTimeout))
	}
	n, err := wait.Result()
	if err != nil {
		return err
	}
	if n < int64(s.waitReplicas) {
		return fmt.Errorf("redis: %d of %d replicas acknowledged within %v", n, s.waitReplicas, s.waitTimeout)
	}
	return nil
}

// epochCalls appends to calls one call of script per op, after checking
// every op (a negative TTL, a known value above 2^53 fail the call before
// anything is sent). With after set (a bump), each op's notice is an
// argument of its call, or, on a Ring, appended to *after, whose payloads
// the caller fills in.
func (s *Store) epochCalls(op string, script *goredis.Script, ops []tier.EpochOp, calls []call, after *[]notice) ([]call, error) {
	for _, o := range ops {
		if o.TTL < 0 {
			return nil, errNegativeTTL
		}
		if o.Known > maxEpoch {
			return nil, fmt.Errorf("redis: %s: epoch %d is above 2^53", op, o.Known)
		}
	}
	for _, o := range ops {
		c := call{script: script, keys: []string{s.prefix + o.Key}, args: []any{strconv.FormatUint(o.Known, 10), expiry(o.TTL).Milliseconds()}}
		if after != nil {
			channel, before, tail, ring := s.scriptNotice(o.Notice)
			c.args = append(c.args, channel, before, tail)
			if ring {
				*after = append(*after, notice{channel: s.prefix + o.Notice.Channel})
			}
		}
		calls = append(calls, c)
	}
	return calls, nil
}

// epochReplies puts the epoch replies of cmds in vals, counting the keys
// the scripts repaired; any failure fails the whole call.
func (s *Store) epochReplies(ctx context.Context, op string, cmds []*goredis.Cmd, vals []uint64) error {
	for i, c := range cmds {
		v, err := c.Int64()
		if err != nil {
			return s.fail(ctx, op, err)
		}
		if v < 0 { // the script replaced what the key held (see luaEpoch)
			s.repairs.Add(1)
			v = -v
		}
		vals[i] = uint64(v)
	}
	return nil
}

// LoadEpochs implements [tier.Epochs]: one GET per op, pipelined, and a
// script call (which creates, raises or repairs the key) only for the ops
// whose key does not hold an epoch of at least Known. A confirmation of
// epochs that are there, the common case (the background refresh of every
// cell in use), is then one round trip of plain GETs; the others take one
// more. Values are decimal text.
func (s *Store) LoadEpochs(ctx context.Context, ops []tier.EpochOp) ([]uint64, error) {
	const op = "load epochs"
	calls, err := s.epochCalls(op, loadEpochScript, ops, make([]call, 0, len(ops)), nil)
	if err != nil {
		return nil, err
	}
	if err := s.begin(ctx, op); err != nil {
		return nil, err
	}
	vals := make([]uint64, len(ops))
	if len(calls) == 0 {
		return vals, nil
	}
	if s.replicaReads() {
		// A replica may lag behind a bump: only the scripts, which run on
		// masters, confirm.
		cmds, err := s.runScripts(ctx, calls)
		if err != nil {
			return nil, s.fail(ctx, op, err)
		}
		return vals, s.epochReplies(ctx, op, cmds, vals)
	}
	pipe := s.client.Pipeline()
	gets := make([]*goredis.StringCmd, len(ops))
	for i, o := range ops {
		gets[i] = pipe.Get(ctx, s.prefix+o.Key)
	}
	_, _ = pipe.Exec(ctx) // each command's own error is looked at below
	var rest []call
	var at []int
	for i, g := range gets {
		v, err := g.Result()
		if err != nil && err != goredis.Nil && !isServerError(err) {
			return nil, s.fail(ctx, op, err) // the connection, not the key
		}
		if n, ok := parseEpoch(v); err == nil && ok && n >= ops[i].Known {
			vals[i] = n
			continue
		}
		rest, at = append(rest, calls[i]), append(at, i) // missing, lower, or not an epoch
	}
	if len(rest) == 0 {
		return vals, nil
	}
	cmds, err := s.runScripts(ctx, rest)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	got := make([]uint64, len(rest))
	if err := s.epochReplies(ctx, op, cmds, got); err != nil {
		return nil, err
	}
	for j, i := range at {
		vals[i] = got[j]
	}
	return vals, nil
}

// replicaReads reports whether the client may send a plain read to a
// replica (a cluster client with ReadOnly or a route by latency or at
// random).
func (s *Store) replicaReads() bool {
	cc, ok := s.client.(*goredis.ClusterClient)
	if !ok {
		return false
	}
	o := cc.Options()
	return o.ReadOnly || o.RouteByLatency || o.RouteRandomly
}

// parseEpoch parses an epoch as the scripts store it: decimal text without
// a leading zero, 1 to 2^53.
func parseEpoch(v string) (uint64, bool) {
	if len(v) == 0 || len(v) > 16 || v[0] == '0' {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, 64)
	return n, err == nil && n <= maxEpoch
}

// isServerError reports whether err is a reply of the server (WRONGTYPE,
// say) rather than a failure to reach it.
func isServerError(err error) bool {
	var re goredis.Error
	return errors.As(err, &re) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled)
}

// BumpEpochs implements [tier.Epochs] with one script call per op, which
// bumps and publishes its notice, pipelined (with Options.WaitReplicas, as
// Invalidate).
func (s *Store) BumpEpochs(ctx context.Context, ops []tier.EpochOp) ([]uint64, error) {
	_, vals, err := s.invalidate(ctx, "bump epochs", nil, ops)
	return vals, err
}

// Repairs implements [tier.Repairer]: how many epoch keys this store found
// holding something that is not an epoch (another type, garbage text) and
// replaced.
func (s *Store) Repairs() uint64 { return s.repairs.Load() }

// leaseGenArg is a lease's generation as the read script takes it (empty:
// unknown).
func leaseGenArg(gen uint64) string {
	if gen == 0 {
		return ""
	}
	return strconv.FormatUint(gen, 36)
}
