//go:build race

package hnsw

// raceEnabled shrinks the heavier tests: the race detector slows the distance loop
// several times over.
const raceEnabled = true
