package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/internal/keyspace"
	"github.com/agentcache/agentcache-go/scope"
)

const inspectHelp = `Usage: agentcache inspect [-resource NAME[@VERSION]] [-user ID | -session ID] [flags]

Lists the entries cached for a resource (every version when @VERSION is left
out), a user or session, or a resource in one user's or session's scope:
their kind (value, not-found, or tombstone: an exact invalidation), state,
remaining TTL and size in bytes.

  STATE  live      served to lookups
         stale     past its TTL, served while a refresh runs (stale window)
         orphaned  invalidated, or a tombstone: unreachable until it is
                   reloaded (in place) or its TTL ends

Values are printed only with -values: the payload as stored (JSON with the
default codec), cut at -max-bytes. Keys are printed with the prefix, as
redis-cli needs them; scope IDs appear in them escaped.

Examples:
  agentcache inspect -url redis://localhost:6379 -resource get_cart@1 -user alice
  agentcache inspect -url redis://localhost:6379 -user 'team:{a}' -values -max-bytes 200
  agentcache inspect -cluster 10.0.0.1:7000 -resource search_docs -limit 20 -json
`

type inspectEntry struct {
	Key        string          `json:"key"`
	Resource   string          `json:"resource"`
	Scope      string          `json:"scope"`
	ID         string          `json:"id,omitempty"`
	Kind       string          `json:"kind"`  // "value", "not-found", "tombstone" or "invalid"
	State      string          `json:"state"` // "live", "stale" or "orphaned"
	TTLMS      int64           `json:"ttl_ms"`
	Size       int64           `json:"size"`
	FreshUntil *time.Time      `json:"fresh_until,omitempty"`
	Value      json.RawMessage `json:"value,omitempty"`      // the payload, when it is whole JSON
	ValueText  string          `json:"value_text,omitempty"` // otherwise its text (or base64: bytes), cut at -max-bytes
	ValueBytes int             `json:"value_bytes,omitempty"`
	Truncated  bool            `json:"truncated,omitempty"`
}

type inspectReport struct {
	Prefix  string         `json:"prefix"`
	Filter  string         `json:"filter"`
	Entries []inspectEntry `json:"entries"`
	More    bool           `json:"more"` // more entries match than -limit
}

var errEnough = errors.New("enough keys")

func runInspect(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error {
	res := fs.String("resource", "", "resource `name[@version]`; without @version, every version")
	user := fs.String("user", "", "user `ID`")
	session := fs.String("session", "", "session `ID`")
	values := fs.Bool("values", false, "print the cached values")
	maxBytes := fs.Int("max-bytes", 256, "cut printed values at this many `bytes` (0: no limit)")
	limit := fs.Int("limit", 100, "list at most this many entries (0: no limit)")
	asJSON := fs.Bool("json", false, "print the listing as JSON")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	f, desc, err := inspectFilter(*res, *user, *session)
	if err != nil {
		return err
	}
	if *limit < 0 || *maxBytes < 0 {
		return usageError("-limit and -max-bytes must not be negative")
	}
	c, err := connect(e.conn)
	if err != nil {
		return err
	}
	defer c.close()

	var mu sync.Mutex
	var keys []string
	tag, _ := f.HashTag()
	err = c.scan(ctx, f.Pattern(), tag, func(_ context.Context, _ goredis.UniversalClient, page []string) error {
		mu.Lock()
		defer mu.Unlock()
		for _, k := range page {
			pk := keyspace.Parse(k)
			if f.Match(&pk) {
				keys = append(keys, k)
			}
		}
		if *limit > 0 && len(keys) > *limit {
			return errEnough
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return err
	}
	slices.Sort(keys)
	rep := inspectReport{Prefix: c.prefix, Filter: desc, Entries: []inspectEntry{}}
	if *limit > 0 && len(keys) > *limit {
		keys, rep.More = keys[:*limit], true
	}
	probes, err := c.probeKeys(ctx, c.client, keys, probeOpts{whole: *values})
	if err != nil {
		return err
	}
	parsed := make([]keyspace.Key, len(keys))
	var need []string
	for i, k := range keys {
		parsed[i] = keyspace.Parse(k)
		need = append(need, parsed[i].EpochKeys()...)
	}
	slices.Sort(need)
	epochs, err := c.epochValues(ctx, slices.Compact(need))
	if err != nil {
		return err
	}
	now := time.Now()
	for i, k := range keys {
		p := probes[i]
		if !p.exists {
			continue // expired or deleted since the scan
		}
		pk := &parsed[i]
		ent := inspectEntry{Key: c.prefix + k, Resource: pk.Resource, Scope: pk.Scope.String(), ID: pk.ID(),
			TTLMS: -1, Size: p.size, State: "orphaned", Kind: "invalid"}
		if p.pttl >= 0 {
			ent.TTLMS = p.pttl.Milliseconds()
		}
		env, oerr := keyspace.OpenEnvelope(p.head)
		// The header read (or the whole value) holds the record's
		// generation: no read of its own.
		if oerr == nil && isLive(recordGen(p.head), pk.EpochKeys(), epochs) {
			ent.State = "live"
			if !env.FreshUntil.IsZero() && now.After(env.FreshUntil) {
				ent.State = "stale"
			}
		}
		if oerr == nil {
			switch env.Kind {
			case keyspace.KindNotFound:
				ent.Kind = "not-found"
			case keyspace.KindTombstone:
				ent.Kind = "tombstone"
			default:
				ent.Kind = "value"
			}
			if !env.FreshUntil.IsZero() {
				fu := env.FreshUntil.UTC()
				ent.FreshUntil = &fu
			}
			if *values && env.Kind == keyspace.KindValue {
				ent.ValueBytes = len(env.Payload)
				ent.Value, ent.ValueText, ent.Truncated = renderPayload(env.Payload, *maxBytes)
			}
		}
		rep.Entries = append(rep.Entries, ent)
	}
	if *asJSON {
		return writeJSON(e.stdout, rep)
	}
	printInspect(e, &rep, *values)
	return nil
}

// inspectFilter builds the filter of the inspect flags and describes it.
func inspectFilter(res, user, session string) (keyspace.Filter, string, error) {
	var f keyspace.Filter
	var desc []string
	if res == "" && user == "" && session == "" {
		return f, "", usageError("nothing to inspect: give -resource, -user or -session")
	}
	if user != "" && session != "" {
		return f, "", usageError("give -user or -session, not both")
	}
	if res != "" {
		name, ver, ok := keyspace.ParseResource(res)
		if !ok {
			return f, "", usageError("-resource %q: want name or name@version (a name is letters, digits, '_', '.' and '-', starting with a letter)", res)
		}
		f.Name, f.Version, f.AnyVer = name, ver, !strings.Contains(res, "@")
		desc = append(desc, "resource "+res)
	}
	for _, s := range []struct {
		flag, id string
		kind     scope.Kind
	}{{"user", user, scope.User}, {"session", session, scope.Session}} {
		if s.id == "" {
			continue
		}
		if err := scope.Validate(s.id); err != nil {
			return f, "", usageError("-%s: %v", s.flag, err)
		}
		f.Scope, f.ID = s.kind, s.id
		desc = append(desc, s.flag+" "+strconv.Quote(s.id))
	}
	return f, strings.Join(desc, ", "), nil
}

// renderPayload returns a payload for printing: as JSON if it is whole,
// valid JSON; otherwise as text, or base64 when it is not UTF-8, cut at max
// bytes (0: no limit).
func renderPayload(p []byte, max int) (raw json.RawMessage, text string, truncated bool) {
	if max == 0 || len(p) <= max {
		if json.Valid(p) {
			var b bytes.Buffer
			if json.Compact(&b, p) == nil {
				return b.Bytes(), "", false
			}
		}
	}
	cut := p
	if max > 0 && len(p) > max {
		cut, truncated = p[:max], true
	}
	if utf8.Valid(p) {
		for len(cut) > 0 && !utf8.Valid(cut) { // do not split a character
			cut = cut[:len(cut)-1]
		}
		return nil, string(cut), truncated
	}
	return nil, "base64:" + base64.StdEncoding.EncodeToString(cut), truncated
}

func printInspect(e *env, r *inspectReport, values bool) {
	w := e.stdout
	var nv, nn int
	for _, en := range r.Entries {
		switch en.Kind {
		case "value":
			nv++
		case "not-found":
			nn++
		}
	}
	noun := "entries"
	if len(r.Entries) == 1 {
		noun = "entry"
	}
	fmt.Fprintf(w, "%d %s for %s (%d values, %d not-found)\n", len(r.Entries), noun, r.Filter, nv, nn)
	if len(r.Entries) == 0 {
		return
	}
	fmt.Fprintln(w)
	t := &table{header: []string{"KIND", "STATE", "TTL", "SIZE", "SCOPE", "KEY"}}
	for _, en := range r.Entries {
		ttl := "none"
		if en.TTLMS >= 0 {
			ttl = fmtTTL(time.Duration(en.TTLMS) * time.Millisecond)
		}
		sc := en.Scope
		if en.ID != "" {
			sc += " " + en.ID
		}
		t.add(en.Kind, en.State, ttl, strconv.FormatInt(en.Size, 10), sc, en.Key)
		if !values || en.Kind != "value" {
			continue
		}
		v := en.ValueText
		if strings.ContainsFunc(v, unicode.IsControl) {
			v = strconv.Quote(v)
		}
		if en.Value != nil {
			v = string(en.Value)
		}
		if en.Truncated {
			v += fmt.Sprintf(" ... (%d bytes)", en.ValueBytes)
		}
		t.note(v)
	}
	t.write(w)
	if r.More {
		fmt.Fprintf(w, "\nmore entries match; raise -limit to list them\n")
	}
}
