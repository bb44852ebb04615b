package hnsw

// dotU8 (the integer dot product sum(a[i]*b[i]) of two equally long code slices) is
// the inner loop of every distance computation. Its pure-Go form, dotU8Generic, is
// below; it is the reference the SIMD versions are tested against and the version
// every other architecture (or a build with the purego tag) uses. dot_amd64.go
// picks an AVX-512 VNNI or AVX2 version (dot_amd64.s) at run time; dot_other.go
// maps dotU8 to dotU8Generic elsewhere.

// dotU8Generic returns sum(a[i]*b[i]). len(a) must equal len(b).
func dotU8Generic(a, b []uint8) uint64 {
	n := len(a)
	b = b[:n]
	var s0, s1, s2, s3 uint64
	i := 0
	for ; i+8 <= n; i += 8 {
		x := a[i : i+8 : i+8]
		y := b[i : i+8 : i+8]
		s0 += uint64(x[0])*uint64(y[0]) + uint64(x[4])*uint64(y[4])
		s1 += uint64(x[1])*uint64(y[1]) + uint64(x[5])*uint64(y[5])
		s2 += uint64(x[2])*uint64(y[2]) + uint64(x[6])*uint64(y[6])
		s3 += uint64(x[3])*uint64(y[3]) + uint64(x[7])*uint64(y[7])
	}
	for ; i < n; i++ {
		s0 += uint64(a[i]) * uint64(b[i])
	}
	return s0 + s1 + s2 + s3
}
