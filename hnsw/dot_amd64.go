//go:build amd64 && !purego

package hnsw

import "golang.org/x/sys/cpu"

// CPU features the assembly versions need (checked once; the BMI2 check is for the
// BZHI that builds the AVX-512 tail mask).
var (
	haveAVX2       = cpu.X86.HasAVX2
	haveAVX512VNNI = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW &&
		cpu.X86.HasAVX512VNNI && cpu.X86.HasBMI2
)

// dotU8AVX2 returns sum(a[i]*b[i]) over len(a) elements (b at least as long).
// Requires AVX2.
//
//go:noescape
func dotU8AVX2(a, b []uint8) uint64

// dotU8AVX512VNNI returns sum(a[i]*b[i]) over len(a) elements (b at least as
// long). Requires AVX512F, AVX512BW, AVX512_VNNI and BMI2.
//
//go:noescape
func dotU8AVX512VNNI(a, b []uint8) uint64

// dotU8 returns sum(a[i]*b[i]). len(a) must equal len(b).
func dotU8(a, b []uint8) uint64 {
	b = b[:len(a)] // the assembly reads len(a) bytes of b
	switch {
	case haveAVX512VNNI:
		return dotU8AVX512VNNI(a, b)
	case haveAVX2:
		return dotU8AVX2(a, b)
	}
	return dotU8Generic(a, b)
}
