//go:build !amd64 || purego

package hnsw

// dotU8 returns sum(a[i]*b[i]). len(a) must equal len(b).
func dotU8(a, b []uint8) uint64 { return dotU8Generic(a, b) }
