// Package kernels holds the compute kernels the runtime calls: matrix products (dense,
// and fused base + quantized delta), convolution, softmax, layer normalization, GELU.
//
// Every kernel has a pure-Go reference (ref.go) written for clarity; the exported
// functions dispatch to SIMD assembly (AVX2, AVX-512) when the CPU has it, chosen once
// at start-up by feature detection, and the tests compare each SIMD path with the
// reference on random shapes, odd and tiny ones included. Large products are split
// over Threads() goroutines.
//
// kernels must never allocate per call on hot paths beyond small scratch that it
// pools, never read the store, and never change the values of its inputs.
package kernels
