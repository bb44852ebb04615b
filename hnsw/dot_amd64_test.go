//go:build amd64 && !purego

package hnsw

// dotVariants lists the SIMD versions of dotU8 and whether this CPU runs them.
var dotVariants = []dotVariant{
	{"avx2", dotU8AVX2, haveAVX2},
	{"avx512vnni", dotU8AVX512VNNI, haveAVX512VNNI},
}
