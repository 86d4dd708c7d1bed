// Package agentcache caches the results of LLM agent tool calls in two tiers:
// an in-process L1 and a remote L2 (Redis) shared by every instance of the
// application.
//
// Make one [Cache] per process with [New] (give it an L2 from package
// tier/redis to share entries across the fleet), wrap each read tool once
// with [Wrap], each write tool with [WrapMutation], and call the returned
// functions where the tools were called:
//
//	c, err := agentcache.New(agentcache.Options{L2: store})
//	getCart := resource.Resource{Name: "get_cart", Scope: scope.User, TTL: 2 * time.Minute}
//	cart, err := agentcache.Wrap(c, getCart, shop.GetCart)
//	add, err := agentcache.WrapMutation(c, []resource.Resource{getCart}, shop.AddToCart)
//	v, err := cart(scope.WithUser(ctx, "alice"), args)
//
// # Tools and resources
//
// A [resource.Resource] names what a tool returns (get_cart), whose it is
// (its scope), and how long it lives. [Wrap] caches a tool of one argument
// value: calls with equal arguments (by their canonical JSON form, or by
// [KeyFunc]) share an entry. Arguments of type json.RawMessage are keyed by
// their canonical JSON text, which is what the tool then receives. [WrapBatch]
// caches a tool that takes many IDs at once, fetching only the missing ones
// ([Batch.GetMany]); [Memoize] memoizes a plain function, in process or
// through a Cache. [Get], [Cache.Set], [Cache.Delete] and [Cache.Clear] are a
// key-value API over the same tiers, for values that are not tool results.
// Tool options ([ToolOption]) tune one tool; an option that does not apply
// to a wrapper is refused, not ignored.
//
// # Scopes and isolation
//
// A per-user or per-session resource keys every entry by the scope ID it
// takes from the context ([scope.WithUser], [scope.WithSession]). Called
// without that ID it fails with an error wrapping [scope.ErrMissing]: the
// tool is not called and nothing is cached, so a missing ID never falls back
// to a shared entry. IDs are validated and escaped and arguments are hashed,
// so no input can reach another key segment, in L1 or in L2; a value is only
// ever served under the key it was loaded for.
//
// # Reading
//
// A lookup tries L1, then L2, then the loader (the real tool):
//
//	v, err := agentcache.Get(ctx, c, "weather:paris", fetchForecast)
//
// An L1 hit returns the stored value itself — no decoding, no allocation.
// An L2 hit decodes the value (JSON by default) and fills L1. On a miss the
// loader runs once for every concurrent caller of the key on this instance
// (singleflight), on its own goroutine: a caller whose context ends leaves
// with its own ctx.Err() while the load goes on for the others, and a
// loader panic becomes a *[PanicError] for every waiter. Loader errors are
// returned and never cached.
//
// # Writing
//
// A loaded value is written to L1 at once and to L2 through a bounded
// write-behind queue that pipelines writes: the caller never waits for Redis
// and never sees an L2 error — also with the fleet lock, whose lease the
// queued write releases, and whose fill it announces. Only the WriteThrough
// tool option makes a caller wait for its L2 write. A full queue drops the
// write and counts it (Stats.WritesDropped). Close drains the queue.
//
// Set is an explicit replacement: its L2 write replaces whatever a load
// stored, is refused only by an exact invalidation made after it, and is
// stored stamped with the L2 clock when it lands, so a load that began
// before it landed never replaces it. Two instances' Sets of one key land in
// the order L2 receives them.
//
// # Invalidation
//
// [Cache.Invalidate] drops entries by [Target]: everything ([TargetAll]), a
// resource ([TargetResource]), a user or session across resources
// ([TargetUser], [TargetSession]), a resource in one scope
// ([TargetResourceScope], [TargetResourceIn]) or one call ([TargetCall]). A
// scoped target costs O(1) whatever the number of entries: it bumps an epoch
// (see Consistency). A tool wrapped with [WrapMutation] invalidates its
// resources in the caller's scope when it succeeds. Every instance's L1
// follows, as the guarantees below bound. Invalidate returns a *[FleetError]
// when it applied locally but could not tell the fleet.
//
// # Failure behaviour
//
// Redis errors never reach a caller on the read path: they are logged (each
// kind at most once per Options.Tuning.LogInterval) and counted, and the lookup
// goes on to the next tier. A circuit breaker opens after
// Options.Breaker.Failures consecutive L2 failures or timeouts, so a dead or
// blackholed Redis costs one timeout, not one per call; half-open probes
// close it again. Undecodable L2 data is a miss: counted, and deleted in the
// background only while the key still holds the same bytes. A wrong-typed or
// unparsable epoch or lease key is replaced and counted, never an L2
// failure. A corrupt snapshot is moved aside and the cache starts cold.
//
// Starting without Redis is a degraded start: New does not fail (the
// tier/redis constructors do not dial; Store.Ping checks), an L1 hit never
// waits for L2, and the breaker opens at the first failure until L2 has
// answered once, so the first lookups pay one timeout in all.
//
// # Values and keys
//
// Every tier returns the same value for a key: a loaded value is encoded
// and decoded back once, and that copy is what L1 keeps and what every
// caller gets, including the one whose call ran the tool (see [Codec]). A
// result type the codec cannot carry is refused by Wrap, or by Get at its
// first miss, with an error naming the part (see [TypeChecker]); a value it
// cannot encode at run time is returned uncached and counted
// (Stats.Unencodable). Two calls share a key only if the tool gets the same
// input: argument types with parts their JSON form leaves out are refused
// unless a [KeyFunc] keys them, tools of JSON arguments get the canonical
// bytes that were hashed, and a resource caches one tool.
//
// # Returned values are shared
//
// L1 holds values, not copies: every caller of a key gets the same value
// (the same map, slice or pointer). Treat what the cache returns as
// immutable; copy it before changing it.
//
// # Observability
//
// Tracing uses the OpenTelemetry API (package otel names its spans and
// metrics). A lookup is a span only when its context carries a recording
// span, or with Options.Telemetry.RootSpans: then it is a span
// "agentcache.lookup <resource>" that says which tier answered (l1, l2,
// negative, loader), whether it was served stale, the resource and the
// scope kind; its L2 round trips and the tool run ("execute_tool <name>",
// after the GenAI conventions) are child spans. With Options.Telemetry.L1HitEvents a
// fresh L1 hit is an event on the caller's span instead, at about a quarter
// of the cost. Metrics count lookups by resource, tier and outcome, and
// record latency per tier, tool duration, tool time saved, L1 entries,
// write-queue depth, breaker state and invalidations. Arguments, results,
// keys and scope IDs stay out of telemetry unless Options.Telemetry.RecordScopeIDs or
// Options.Telemetry.RecordArgs turn them on (as hashes). With no SDK installed an L1
// hit pays nothing for any of it. With or without an SDK, a context from
// [run.Start] collects an agent run's summary: which tier answered each
// tool call, the tool time spent and the tool time saved.
//
// # Snapshots
//
// With Options.Snapshot, L1 is saved to disk at Close (and periodically) and
// restored by New. A restored entry is served once L2 is seen to hold the
// same value for it — one batched read at start confirms them all — so an
// entry invalidated, deleted or overwritten while the instance was down is
// dropped. While L2 is unreachable, restored entries are served as they are
// (availability first, as guarantee 3 under Consistency); once L2 answers,
// an unconfirmed one is read from L2 instead.
//
// # Consistency
//
// Every entry carries invalidation epochs (for the whole cache, and with
// resources for the resource, the scope and the resource in the scope),
// mixed into its L2 record's generation. Invalidating bumps an epoch:
// entries under the old one become unreachable at once, whatever their
// number — a record of another generation is a miss, overwritten by the
// reload, or ages out of Redis by TTL. Epoch values
// only grow: L2 makes them from its clock, an instance never adopts a value
// older than one it has seen, and it raises L2 back when L2 holds less (a
// write lost in a failover that some instance saw), so an epoch evicted or
// lost becomes a new namespace, never an old one. A failover that loses a
// bump nobody else saw can still let the old entries be served; the
// tier/redis option WaitReplicas makes a bump (and a tombstone) wait for
// replica acknowledgements and fail without them, which leaves only
// unacknowledged writes, whose callers got an error, to such a failover.
//
// Every L2 entry is a record stamped with the L2 clock when its load began;
// an exact invalidation (TargetCall, Delete) leaves a tombstone, and no write
// of a load that began before it lands after it (see package tier). The
// instance that invalidates (and every instance its message reaches) also
// fences the key locally: a lookup that begins after the invalidation never
// joins a load that began before it, that load stores nothing, and an L2
// record stamped before the invalidation is a miss there even when it
// escaped the tombstone (written under epochs adopted later). Stamps of
// loads are readings of the L2 server's clock; a Set's is this instance's
// estimate of it, a lower bound learned from L2's replies. On Redis Cluster
// each key's stamps come from the clock of the node that holds it, so the
// order of two writes of one key never depends on clock skew between nodes;
// a failover to a replica whose clock is behind can only make new writes
// lose to older stamps (a miss), never the reverse, as long as the skew is
// below the tombstones' life (10 minutes). The guarantees:
//
//  1. On the instance that invalidated: once Invalidate (or Delete or Clear)
//     returns, no value loaded or set before it is served. A load that
//     started before it stores nothing: not in L1, and in L2 its write is
//     refused by the tombstone or, of the old epochs' generation, is a miss
//     for every reader.
//  2. On every other instance: as soon as the invalidation message arrives
//     (milliseconds on a LAN), and never later than Options.MaxEpochAge
//     after the instance next reaches L2, even when messages are lost: an
//     instance confirms each epoch it relies on with L2 at least that often,
//     and a reconnect of its subscription marks every epoch unconfirmed.
//     An exact-call invalidation (TargetCall) or a key-value Delete has no
//     epoch: other instances drop their L1 copy on its message. Redis loses
//     pub/sub messages only with the subscriber's connection, and every
//     reconnect drops this instance's L1 (entries come back from L2, where
//     the tombstone is), so the bound holds as long as the subscription
//     reconnects; otherwise such an L1 copy lives until its TTL. Prefer
//     scoped targets where the bound matters. Invalidations L2 did not take
//     are retried on their own cadence (at least every MaxEpochAge/4), not
//     the breaker's, so they reach the fleet within MaxEpochAge of L2
//     answering again.
//  3. If L2 is unreachable, an invalidation applies locally and returns a
//     *FleetError saying the fleet was not told. An instance cut off from
//     L2 keeps serving its L1 until the entries' TTLs end: availability is
//     chosen over a bound nobody could enforce without L2.
//
// # Round trips
//
// Counted on one Redis (on a cluster: per node, the nodes in parallel), with
// the fleet lock on:
//
//   - An L1 hit makes none. Every MaxEpochAge/2 one background pipeline per
//     instance confirms (with plain GETs) the epochs used in the last
//     MaxEpochAge and those its L1 entries were stamped with (for the
//     entry's TTL, at most 8 × MaxEpochAge), so a hit waits for a
//     confirmation only when its epochs went unused for longer; then
//     concurrent lookups share one.
//   - An L2 hit makes one, also for a user or resource this instance has not
//     seen: the read carries the loads of the epochs it does not know.
//   - A miss makes one before the tool (the read takes the fleet lease in
//     the same script) and none after it on the caller's path: one
//     background pipeline writes the value, releases the lease and
//     announces the fill.
//   - A lookup that waits for another instance's load reads once more when
//     the fill is announced (or Options.Tuning.LockPoll passes first).
//   - Invalidate, a mutation and Delete make one: tombstones, epoch bumps
//     and the messages that announce them go in one pipeline. Set is one
//     background write; Clear also deletes the prefix's keys.
//
// Besides: a pooled connection's handshake when go-redis opens it; one more
// read when a lookup that did not know its epochs finds an entry they
// invalidated (the lease is then taken on its own), or finds the lease held
// while its epochs turn out to have been behind (it reads again at once,
// taking over a lease of the older generation); one background call when a
// load that took its lease before it knew the entry's generation runs
// longer than 16 × Options.Tuning.LockPoll (it tags the lease with it, so that a
// load after an invalidation does not wait for it); a lease renewal every
// third of Options.Tuning.LockLease while a tool runs; and, with the tier/redis
// option WaitReplicas, the WAIT of an invalidation.
//
// The L2 layout of this version (one key per entry, the generation in the
// record, the generation in the lease key) is not the layout of earlier
// versions, whose instances neither read its entries nor honour its
// leases. Do not run the two side by side on one prefix: drain the old
// instances first, or give the new ones a prefix of their own.
//
// # Threat model
//
// The cache trusts its process and the application's code. It does not
// trust what callers pass (arguments, scope IDs: validated, escaped,
// hashed, bounded) nor, within limits, what it reads from L2. Every value it
// writes names its key in a tag, and a read refuses a value found under
// another key (copied by an operator, a script or a bug), one fresh for
// longer than its resource's TTL, one larger than MaxValueSize, and one
// that does not decode: each is a miss, counted in Stats.L2Corrupt or
// Stats.Oversize, and replaced. Without Options.Secret the tag is a plain
// hash, so someone who can write to Redis can still forge a value for a key
// of their choosing; with it, the tag is an HMAC of the key and the value,
// and nobody without the secret can make a value a reader accepts (a forged
// tombstone, which carries no tag, only causes a miss). Give every instance
// of the fleet the same secret: an instance with another one (or none)
// refuses, and overwrites, what the others write. Whoever can write Redis
// can always delete entries, raise epochs and hold leases, which costs tool
// calls, never a wrong answer. The snapshot file is trusted like the
// process's own disk.
package agentcache
