// Package bench holds NeurStore's benchmark harness: model-family generators
// (genmodel), scripts that measure the store and runtime (io.sh), the scripts that
// train the committed real model families (family/), and the reports (REPORT.md).
//
// Nothing here is imported by the product; bench must never be a dependency of
// store, graph or runtime.
package bench
