//go:build !amd64 || purego

package hnsw

// dotVariants lists the SIMD versions of dotU8: none in this build.
var dotVariants []dotVariant
