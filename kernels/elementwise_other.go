//go:build !amd64 || purego

package kernels

// simdLevels returns no assembly level: on this architecture, or with the purego
// tag, the kernels run the generic level.
func simdLevels() []*vecKernels { return nil }
