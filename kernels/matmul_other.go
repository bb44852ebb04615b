//go:build !amd64 || purego

package kernels

// matSIMDLevels returns no assembly level: on this architecture, or with the
// purego tag, the matrix kernels run the pure-Go level.
func matSIMDLevels() []*matLevel { return nil }
