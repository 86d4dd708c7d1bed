package reliability

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// soakReport is the part of cmd/soak's -json report the test checks.
type soakReport struct {
	Ops                    int64    `json:"ops"`
	CallerErrors           int64    `json:"caller_errors"`
	FirstErrors            []string `json:"first_errors"`
	NotFound               int64    `json:"not_found"`
	FleetErrors            int64    `json:"fleet_errors"`
	Restarts               int      `json:"restarts"`
	BreakerOpened          int      `json:"breaker_opened"`
	BreakerClosed          int      `json:"breaker_closed"`
	L2HitsAfterLastRestart uint64   `json:"l2_hits_after_last_restart"`
	Leaks                  []string `json:"leaks"`
	Problems               []string `json:"problems"`
	OK                     bool     `json:"ok"`
	Cache                  struct {
		L1Hits uint64 `json:"l1_hits"`
		L2Hits uint64 `json:"l2_hits"`
	} `json:"cache"`
}

// TestSoakShort builds cmd/soak (with the race detector when this test has
// it) and runs it for 10s with three instances and one Redis restart, as CI
// would run the full soak.
//
// Promise checked: the command exits 0, and its report says callers saw no
// error, the load ran, Redis was restarted, the breakers opened and closed,
// L2 served again after the restart, and nothing leaked.
func TestSoakShort(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build cmd/soak: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "soak")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command(goTool, append(args, "./cmd/soak")...)
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/soak: %v\n%s", err, out)
	}
	var stdout, stderr bytes.Buffer
	run := exec.Command(bin, "-duration", "10s", "-instances", "3", "-workers", "8", "-restarts", "1", "-json")
	run.Stdout, run.Stderr = &stdout, &stderr
	start := time.Now()
	err = run.Run()
	t.Logf("soak ran %v; stderr:\n%s", time.Since(start).Round(time.Millisecond), stderr.String())
	var rep soakReport
	if jerr := json.Unmarshal(stdout.Bytes(), &rep); jerr != nil {
		t.Fatalf("soak: %v; its report does not parse (%v):\n%s", err, jerr, stdout.String())
	}
	if err != nil || !rep.OK {
		t.Fatalf("soak failed (%v): %v; first errors %v; leaks %v", err, rep.Problems, rep.FirstErrors, rep.Leaks)
	}
	if rep.CallerErrors != 0 || rep.Ops < 1000 || rep.Restarts != 1 || rep.BreakerOpened == 0 || rep.BreakerClosed == 0 ||
		rep.L2HitsAfterLastRestart == 0 || rep.Cache.L2Hits == 0 || len(rep.Leaks) != 0 {
		t.Fatalf("the report does not show a soak that held: %+v", rep)
	}
	t.Logf("%d operations, %d caller errors, %d not found, %d fleet errors, %d restart, breaker opened %d / closed %d, %d L2 hits after the restart",
		rep.Ops, rep.CallerErrors, rep.NotFound, rep.FleetErrors, rep.Restarts, rep.BreakerOpened, rep.BreakerClosed, rep.L2HitsAfterLastRestart)
}
