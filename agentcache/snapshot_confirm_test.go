// The snapshot promise (finding 4 of the consistency issue): restored
// entries are served once confirmed against L2, and while L2 is unreachable.

package agentcache

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/internal/testkit/wait"
)

// Promise 3 (fleet bound) after a restart from a snapshot: entries that
// another instance invalidated exactly, overwrote (Set) or deleted while
// this instance was down must stop being served within MaxEpochAge of the
// restart, while an untouched entry is still served without its loader.
func TestSnapshotRestartHonoursChangesMadeWhileDown(t *testing.T) {
	const maxAge = 300 * time.Millisecond
	e := rcStart(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "l1.snapshot")
	withSnapshot := func() Options {
		return Options{L2: e.store(), MaxEpochAge: maxAge, Snapshot: SnapshotOptions{Path: path}}
	}
	a1 := rcNew(t, withSnapshot())
	b := rcNew(t, Options{L2: e.store(), MaxEpochAge: maxAge})
	rcSubscribed(t, a1, b)
	truth := newCtTruth()
	old := ctCall(t, ctWrap(t, a1, truth), "alice")
	snapSetAndClose(t, a1, "overwritten", "deleted", "kept")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("no snapshot after Close: %v", err)
	}

	// While A is down, B changes three of its entries.
	truth.bump("alice")
	if err := b.Invalidate(ctx, TargetCall(ctCartRes, "alice", ctQ)); err != nil {
		t.Fatal(err)
	}
	if err := b.Set(ctx, "overwritten", "new overwritten", time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, "deleted"); err != nil {
		t.Fatal(err)
	}
	ctWaitDrained(t, b)

	a2 := rcNew(t, withSnapshot())
	getA2 := ctWrap(t, a2, truth)
	loader := func(_ context.Context, k string) (string, error) { return "loaded " + k, nil }
	if v, err := Get(ctx, a2, "kept", loader); err != nil || v != "old kept" {
		t.Fatalf("the untouched entry after the restart: %q, %v; want it served without its loader", v, err)
	}
	wait.Until(t, 5*maxAge, func() string {
		var stale []string
		if v := ctCall(t, getA2, "alice"); v == old {
			stale = append(stale, fmt.Sprintf("the exact-invalidated call (%q)", v))
		}
		if v, err := Get(ctx, a2, "overwritten", loader); err != nil || v != "new overwritten" {
			stale = append(stale, fmt.Sprintf("the overwritten key (%q, %v; want %q)", v, err, "new overwritten"))
		}
		if v, err := Get(ctx, a2, "deleted", loader); err != nil || v != "loaded deleted" {
			stale = append(stale, fmt.Sprintf("the deleted key (%q, %v)", v, err))
		}
		if len(stale) > 0 {
			return "the restarted instance still serves what changed while it was down: " + strings.Join(stale, "; ")
		}
		return ""
	})
}

// Availability first: an instance that restarts from its snapshot while L2
// is unreachable serves the restored entries without running their tools;
// once L2 answers again, they are served only as L2 has them.
func TestSnapshotRestartServesRestoredEntriesWhileL2Unreachable(t *testing.T) {
	e := rcStart(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "l1.snapshot")
	p := e.Proxy()
	withSnapshot := func() Options {
		return Options{L2: e.storeVia(p.Addr()), MaxEpochAge: time.Hour, L2Timeout: 100 * time.Millisecond,
			Snapshot: SnapshotOptions{Path: path}}
	}
	a1 := rcNew(t, withSnapshot())
	snapSetAndClose(t, a1, "kept", "changed")
	// While A is down, another instance changes one entry; then L2 becomes
	// unreachable for A.
	b := rcNew(t, Options{L2: e.store()})
	if err := b.Set(ctx, "changed", "new changed", time.Hour); err != nil {
		t.Fatal(err)
	}
	ctWaitDrained(t, b)
	p.Blackhole(true)

	a2 := rcNew(t, withSnapshot())
	var loads atomic.Int32
	loader := func(_ context.Context, k string) (string, error) {
		loads.Add(1)
		return "loaded " + k, nil
	}
	for _, k := range []string{"kept", "changed"} {
		if v, err := Get(ctx, a2, k, loader); err != nil || v != "old "+k {
			t.Fatalf("restored %q with L2 unreachable: %q, %v; want %q from the snapshot", k, v, err, "old "+k)
		}
	}
	if n := loads.Load(); n != 0 {
		t.Fatalf("the loader ran %d times with L2 unreachable; the snapshot should have answered", n)
	}

	// L2 answers again: the entry changed while A was down is no longer
	// served from the snapshot.
	p.Blackhole(false)
	wait.Until(t, 10*time.Second, func() string {
		if v, err := Get(ctx, a2, "changed", loader); err != nil || v != "new changed" {
			return fmt.Sprintf("after L2 came back, %q is %q (%v); want %q from L2", "changed", v, err, "new changed")
		}
		return ""
	})
	if v, err := Get(ctx, a2, "kept", loader); err != nil || v != "old kept" {
		t.Fatalf("the untouched entry after L2 came back: %q, %v", v, err)
	}
}

// snapSetAndClose sets each key to "old <key>" on c, lets L2 take the
// writes and closes c, which saves its snapshot.
func snapSetAndClose(t *testing.T, c *Cache, keys ...string) {
	t.Helper()
	ctx := context.Background()
	for _, k := range keys {
		if err := c.Set(ctx, k, "old "+k, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	ctWaitDrained(t, c)
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := c.Close(cctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
