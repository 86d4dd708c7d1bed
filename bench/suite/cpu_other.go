//go:build !unix

package suite

// processCPU cannot tell here: memory_1m falls back to the runtime's estimate.
func processCPU() (float64, bool) { return 0, false }
