//go:build pending

package reliability

const runPending = true
