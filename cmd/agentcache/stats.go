package main

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/internal/keyspace"
	"github.com/agentcache/agentcache-go/scope"
)

const statsHelp = `Usage: agentcache stats [flags]

Reports, per resource version, what the cache holds in Redis, from a SCAN of
the keys under the prefix (never KEYS; every master of a cluster):

  ENTRIES    cached calls (values and not-found markers)
  LIVE       entries reachable under the current epochs (read from each
             entry's record header); the others were invalidated, or are
             tombstones, and wait to be reloaded (in place) or for their TTL
  NOT-FOUND  not-found markers (read from each entry's envelope header)
  IDS        distinct users or sessions with entries ("-" for a global resource)
  MEMORY     total memory (MEMORY USAGE)
  TTL        remaining time to live: min / median / max
  LEASES     fleet-lock leases held now (loads in progress)

NOT-FOUND, MEMORY and TTL come from a random sample of -sample entries per
resource and are marked "~" when estimated; -exact reads every entry. The
key-value API's entries are the "(key-value)" row; the epochs line counts the
invalidation epochs. IDs are never printed unless -show-ids is given.

Examples:
  agentcache stats -url redis://localhost:6379
  agentcache stats -cluster 10.0.0.1:7000,10.0.0.2:7000 -prefix shop: -json
  AGENTCACHE_URL=rediss://:secret@cache.internal:6380 agentcache stats -exact -show-ids
`

// resStats is the report of one resource version (or of the key-value API).
type resStats struct {
	Resource string `json:"resource,omitempty"` // name@version; empty for the key-value API
	Name     string `json:"name,omitempty"`
	Version  uint32 `json:"version"`
	// Scope is "global", "user", "session", or "mixed" when entries of
	// several kinds share the name@version.
	Scope    string `json:"scope,omitempty"`
	Entries  int64  `json:"entries"`
	Live     int64  `json:"live"`
	NotFound int64  `json:"not_found"`
	Corrupt  int64  `json:"corrupt,omitempty"` // entries whose value is not an agentcache envelope
	// Sampled is how many entries were read; when it is below Entries,
	// NotFound, Corrupt and MemoryBytes are estimates.
	Sampled     int64     `json:"sampled"`
	Scopes      int       `json:"scope_ids"`
	IDs         []string  `json:"ids,omitempty"` // with -show-ids
	MemoryBytes int64     `json:"memory_bytes"`
	TTL         *ttlStats `json:"ttl,omitempty"`
	NoTTL       int64     `json:"no_ttl,omitempty"` // sampled entries without a TTL (the library never writes one)
	Leases      int64     `json:"leases"`
}

// ttlStats summarizes remaining TTLs of the sampled entries, in
// milliseconds.
type ttlStats struct {
	MinMS    int64 `json:"min_ms"`
	MedianMS int64 `json:"median_ms"`
	MaxMS    int64 `json:"max_ms"`
}

type epochCounts struct {
	Total         int64 `json:"total"`
	Global        int64 `json:"global"`
	Resource      int64 `json:"resource"`
	Scope         int64 `json:"scope"`
	ResourceScope int64 `json:"resource_scope"`
}

type statsReport struct {
	Prefix      string      `json:"prefix"`
	Server      string      `json:"server"`
	Masters     int         `json:"masters"`
	KeysScanned int64       `json:"keys_scanned"`
	Exact       bool        `json:"exact"`
	SampleSize  int         `json:"sample_size,omitempty"`
	Resources   []resStats  `json:"resources"`
	KeyValue    resStats    `json:"key_value"`
	Epochs      epochCounts `json:"epochs"`
	OtherKeys   int64       `json:"other_keys"`
	ElapsedMS   int64       `json:"elapsed_ms"`
}

// genGroup is the entries of one resource in one scope whose records have
// one generation (0: tombstones and bytes that are not records).
type genGroup struct {
	kind scope.Kind
	esc  string
	gen  uint64
}

// resAgg accumulates one resource version while the scan runs.
type resAgg struct {
	out   resStats
	kinds map[scope.Kind]bool
	ids   map[string]struct{} // scope segments
	gens  map[genGroup]int64
	kv    bool

	sample []string // reservoir of entry keys (without -exact)
	seen   int64

	probed, notFound, corrupt, mem, memN int64
	ttls                                 []int64
	noExpiry                             int64
}

func newAgg(kv bool) *resAgg {
	return &resAgg{kinds: map[scope.Kind]bool{}, ids: map[string]struct{}{}, gens: map[genGroup]int64{}, kv: kv}
}

// offer puts key in the reservoir of n.
func (a *resAgg) offer(key string, n int) {
	a.seen++
	if len(a.sample) < n {
		a.sample = append(a.sample, key)
		return
	}
	if j := rand.Int64N(a.seen); j < int64(n) {
		a.sample[j] = key
	}
}

func (a *resAgg) add(p probe) {
	if !p.exists {
		return
	}
	a.probed++
	env, err := keyspace.OpenEnvelope(p.head)
	switch {
	case err != nil:
		a.corrupt++
	case env.Kind == keyspace.KindNotFound:
		a.notFound++
	}
	if p.size > 0 {
		a.mem += p.size
		a.memN++
	}
	if p.pttl == -1 {
		a.noExpiry++
	} else if p.pttl >= 0 {
		a.ttls = append(a.ttls, p.pttl.Milliseconds())
	}
}

// stats walks the keyspace.
type stats struct {
	c      *conn
	exact  bool
	sample int

	mu      sync.Mutex // guards everything below
	res     map[string]*resAgg
	kv      *resAgg
	epochs  epochCounts
	other   int64
	scanned int64
}

func (s *stats) agg(k *keyspace.Key) *resAgg {
	if k.Resource == "" {
		return s.kv
	}
	a := s.res[k.Resource]
	if a == nil {
		a = newAgg(false)
		a.out.Resource, a.out.Name, a.out.Version = k.Resource, k.Name, k.Version
		s.res[k.Resource] = a
	}
	return a
}

// page handles one SCAN page from node.
func (s *stats) page(ctx context.Context, node goredis.UniversalClient, keys []string) error {
	parsed := make([]keyspace.Key, len(keys))
	for i, k := range keys {
		parsed[i] = keyspace.Parse(k)
	}
	var probeKeys []string
	var probeAggs []*resAgg
	var groups []genGroup // of probeKeys
	s.mu.Lock()
	s.scanned += int64(len(keys))
	for i := range parsed {
		k := &parsed[i]
		switch k.Type {
		case keyspace.Entry, keyspace.KVEntry:
			a := s.agg(k)
			a.out.Entries++
			if k.Type == keyspace.Entry {
				a.kinds[k.Scope] = true
			}
			if k.EscID != "" {
				a.ids[k.Seg()] = struct{}{}
			}
			// Every entry's generation is read (LIVE is never estimated):
			// with -exact by the probe, otherwise by a header read.
			probeKeys = append(probeKeys, keys[i])
			probeAggs = append(probeAggs, a)
			groups = append(groups, genGroup{kind: k.Scope, esc: k.EscID})
			if !s.exact {
				a.offer(keys[i], s.sample)
			}
		case keyspace.Lease:
			s.agg(k).out.Leases++
		case keyspace.EpochGlobal:
			s.epochs.Global++
		case keyspace.EpochResource:
			s.epochs.Resource++
		case keyspace.EpochScope:
			s.epochs.Scope++
		case keyspace.EpochResourceScope:
			s.epochs.ResourceScope++
		default:
			s.other++
		}
	}
	s.mu.Unlock()
	if len(probeKeys) == 0 {
		return nil
	}
	// Read the page's entries from the node that holds them: with -exact
	// everything the report needs (the header holds the generation),
	// otherwise only their generations.
	if !s.exact {
		gens, err := s.c.readGens(ctx, node, probeKeys)
		if err != nil {
			return err
		}
		s.mu.Lock()
		for i, g := range groups {
			g.gen = gens[i]
			probeAggs[i].gens[g]++
		}
		s.mu.Unlock()
		return nil
	}
	got, err := s.c.probeKeys(ctx, node, probeKeys, probeOpts{memory: true})
	if err != nil {
		return err
	}
	s.mu.Lock()
	for i, p := range got {
		g := groups[i]
		g.gen = recordGen(p.head)
		probeAggs[i].gens[g]++
		probeAggs[i].add(p)
	}
	s.mu.Unlock()
	return nil
}

func runStats(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error {
	asJSON := fs.Bool("json", false, "print the report as JSON")
	exact := fs.Bool("exact", false, "read every entry instead of a sample (exact not-found counts, memory and TTLs)")
	sample := fs.Int("sample", 200, "entries read per resource without -exact")
	showIDs := fs.Bool("show-ids", false, "list the user and session IDs seen (they are personal data: handle the output accordingly)")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if *sample < 1 {
		return usageError("-sample must be at least 1")
	}
	c, err := connect(e.conn)
	if err != nil {
		return err
	}
	defer c.close()

	start := time.Now()
	s := &stats{c: c, exact: *exact, sample: *sample, res: map[string]*resAgg{}, kv: newAgg(true)}
	if err := c.scan(ctx, "*", "", s.page); err != nil {
		return err
	}
	all := make([]*resAgg, 0, len(s.res)+1)
	for _, a := range s.res {
		all = append(all, a)
	}
	slices.SortFunc(all, func(a, b *resAgg) int { return strings.Compare(a.out.Resource, b.out.Resource) })
	all = append(all, s.kv)

	if !*exact {
		var keys []string
		var owners []*resAgg
		for _, a := range all {
			keys = append(keys, a.sample...)
			for range a.sample {
				owners = append(owners, a)
			}
		}
		got, err := c.probeKeys(ctx, c.client, keys, probeOpts{memory: true})
		if err != nil {
			return err
		}
		for i, p := range got {
			owners[i].add(p)
		}
	}
	if err := s.countLive(ctx, all); err != nil {
		return err
	}

	rep := statsReport{
		Prefix: c.prefix, Server: c.where, Masters: c.nodes(ctx), KeysScanned: s.scanned,
		Exact: *exact, Epochs: s.epochs, OtherKeys: s.other,
	}
	if !*exact {
		rep.SampleSize = *sample
	}
	rep.Epochs.Total = s.epochs.Global + s.epochs.Resource + s.epochs.Scope + s.epochs.ResourceScope
	for _, a := range all {
		a.finish(*showIDs)
		if a.kv {
			rep.KeyValue = a.out
		} else {
			rep.Resources = append(rep.Resources, a.out)
		}
	}
	if rep.Resources == nil {
		rep.Resources = []resStats{}
	}
	rep.ElapsedMS = time.Since(start).Milliseconds()
	if *asJSON {
		return writeJSON(e.stdout, rep)
	}
	printStats(e, &rep)
	return nil
}

// countLive reads the epochs of every group of entries and counts the
// entries whose generation is the current one.
func (s *stats) countLive(ctx context.Context, all []*resAgg) error {
	need := map[string]struct{}{}
	keysOf := func(a *resAgg, g genGroup) []string {
		k := keyspace.Key{Type: keyspace.Entry, Resource: a.out.Resource, Scope: g.kind, EscID: g.esc}
		if a.kv {
			k.Type = keyspace.KVEntry
		}
		return k.EpochKeys()
	}
	for _, a := range all {
		for g := range a.gens {
			if g.gen == 0 {
				continue // dead whatever the epochs
			}
			for _, k := range keysOf(a, g) {
				need[k] = struct{}{}
			}
		}
	}
	if len(need) == 0 {
		return nil
	}
	vals, err := s.c.epochValues(ctx, slices.Sorted(maps.Keys(need)))
	if err != nil {
		return err
	}
	for _, a := range all {
		for g, n := range a.gens {
			if isLive(g.gen, keysOf(a, g), vals) {
				a.out.Live += n
			}
		}
	}
	return nil
}

// finish turns the accumulated counts into the report.
func (a *resAgg) finish(showIDs bool) {
	o := &a.out
	switch len(a.kinds) {
	case 0:
	case 1:
		for k := range a.kinds {
			o.Scope = k.String()
		}
	default:
		o.Scope = "mixed"
	}
	o.Scopes = len(a.ids)
	if showIDs && len(a.ids) > 0 {
		for seg := range a.ids {
			k := keyspace.Key{EscID: seg[2:]}
			kind := "user"
			if seg[0] == 's' {
				kind = "session"
			}
			o.IDs = append(o.IDs, kind+":"+k.ID())
		}
		slices.Sort(o.IDs)
	}
	o.Sampled = a.probed
	if a.probed > 0 {
		scale := func(n int64) int64 {
			if a.probed >= o.Entries {
				return n
			}
			return (n*o.Entries + a.probed/2) / a.probed
		}
		o.NotFound, o.Corrupt = scale(a.notFound), scale(a.corrupt)
	}
	if a.memN > 0 {
		o.MemoryBytes = a.mem
		if a.memN < o.Entries {
			o.MemoryBytes = a.mem * o.Entries / a.memN
		}
	}
	o.NoTTL = a.noExpiry
	if len(a.ttls) > 0 {
		slices.Sort(a.ttls)
		o.TTL = &ttlStats{MinMS: a.ttls[0], MedianMS: a.ttls[len(a.ttls)/2], MaxMS: a.ttls[len(a.ttls)-1]}
	}
}

func printStats(e *env, r *statsReport) {
	w := e.stdout
	servers := "1 server"
	if r.Masters != 1 {
		servers = strconv.Itoa(r.Masters) + " masters"
	}
	fmt.Fprintf(w, "prefix %q on %s (%s): %d keys scanned in %s\n\n", r.Prefix, r.Server, servers, r.KeysScanned, fmtTTL(time.Duration(r.ElapsedMS)*time.Millisecond))
	t := &table{header: []string{"RESOURCE", "SCOPE", "ENTRIES", "LIVE", "NOT-FOUND", "IDS", "MEMORY", "TTL MIN / MEDIAN / MAX", "LEASES"}}
	estimated := false
	row := func(name string, s *resStats) {
		exact := s.Sampled >= s.Entries
		estimated = estimated || !exact
		ids := "-"
		if s.Scope != "global" && s.Resource != "" {
			ids = strconv.Itoa(s.Scopes)
		}
		mem := "-"
		if s.MemoryBytes > 0 {
			mem = fmtBytes(s.MemoryBytes)
			if !exact {
				mem = "~" + mem
			}
		}
		ttl := "-"
		if s.TTL != nil {
			ms := func(v int64) string { return fmtTTL(time.Duration(v) * time.Millisecond) }
			ttl = ms(s.TTL.MinMS) + " / " + ms(s.TTL.MedianMS) + " / " + ms(s.TTL.MaxMS)
		}
		scopeKind := s.Scope
		if scopeKind == "" {
			scopeKind = "-"
		}
		t.add(name, scopeKind, strconv.FormatInt(s.Entries, 10), strconv.FormatInt(s.Live, 10),
			fmtCount(s.NotFound, exact), ids, mem, ttl, strconv.FormatInt(s.Leases, 10))
		if len(s.IDs) > 0 {
			t.note("ids: " + strings.Join(s.IDs, ", "))
		}
		if s.NoTTL > 0 {
			t.note(fmt.Sprintf("%d sampled entries have no TTL (the library always sets one)", s.NoTTL))
		}
		if s.Corrupt > 0 {
			t.note(fmtCount(s.Corrupt, exact) + " entries hold bytes that are not an agentcache value")
		}
	}
	for i := range r.Resources {
		row(r.Resources[i].Resource, &r.Resources[i])
	}
	if r.KeyValue.Entries > 0 || r.KeyValue.Leases > 0 || len(r.Resources) == 0 {
		row("(key-value)", &r.KeyValue)
	}
	t.write(w)
	ep := r.Epochs
	fmt.Fprintf(w, "\nepochs: %d (%d global, %d resource, %d scope, %d resource-in-scope)\n",
		ep.Total, ep.Global, ep.Resource, ep.Scope, ep.ResourceScope)
	if r.OtherKeys > 0 {
		fmt.Fprintf(w, "other keys under the prefix: %d (not written by agentcache)\n", r.OtherKeys)
	}
	if estimated {
		fmt.Fprintf(w, "~ estimated from a sample of up to %d entries per resource; -exact reads every entry\n", r.SampleSize)
	}
}
