//go:build race

package media

// raceEnabled: the race detector makes sync.Pool drop items at random, so tests that count
// allocations through a pool (x/net's sendmmsg) skip under it.
const raceEnabled = true
