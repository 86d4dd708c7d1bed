//go:build !race

package agentcache

const raceEnabled = false
