//go:build race

package store

// raceEnabled skips the memory measurements: the race detector slows them
// tenfold and its own allocations distort the heap they measure.
const raceEnabled = true
