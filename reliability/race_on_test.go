//go:build race

package reliability

// raceEnabled reports a build with the race detector, which makes CPU-bound
// work several times slower; the few time bounds of the suite scale with it.
const raceEnabled = true
