package layers

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/agentcache/agentcache-go/"

// allowed lists, for each building block, the packages of this module it
// may depend on (directly or not); internal/glob, internal/jsontype and
// internal/ratelog are leaves (they import nothing of this module).
var allowed = map[string][]string{
	"scope":       {},
	"resource":    {"scope", "internal/jsontype"},
	"tier":        {},
	"tier/memory": {"tier"},
	"tier/fake":   {"tier"},
	"tier/redis":  {"tier", "internal/glob", "internal/ratelog"},
	"tier/disk":   {},
	"otel":        {},
	// Per-run summaries name their tiers by otel's values; the Cache
	// records into them, never the other way round.
	"run": {"otel"},
	// The epoch table holds no *Cache: it reaches L2 through functions.
	"internal/epoch": {"tier", "internal/keyspace", "resource", "scope", "internal/glob", "internal/jsontype"},
}

func TestBuildingBlocksKeepTheirLayers(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list dependencies: %v", err)
	}
	for pkg, ok := range allowed {
		out, err := exec.Command(goTool, "list", "-deps", module+pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		permitted := map[string]bool{pkg: true}
		for _, p := range ok {
			permitted[p] = true
		}
		for _, dep := range strings.Fields(string(out)) {
			rel, in := strings.CutPrefix(dep, module)
			if in && !permitted[rel] {
				t.Errorf("%s depends on %s; DESIGN.md's layering does not allow it", pkg, rel)
			}
		}
	}
}
