package store_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/store"
)

// Importing the same tensors under two names stores them once.
func ExampleStore_Import() {
	dir, _ := os.MkdirTemp("", "neurstore-example-")
	defer os.RemoveAll(dir)
	s, err := store.Open(dir)
	if err != nil {
		panic(err)
	}
	defer s.Close()

	weights := bytes.Repeat([]byte{1, 2, 3, 4}, 600) // 600 float32s
	tensors := []graph.TensorInfo{
		{Name: "w", DType: graph.F32, Shape: []int64{20, 30}, Size: 2400},
		{Name: "w.tied", DType: graph.F32, Shape: []int64{20, 30}, Size: 2400},
	}
	src := graph.NewSource(graph.FormatSafetensors, tensors, nil, func(i int) (io.Reader, error) {
		return bytes.NewReader(weights), nil
	})
	for _, ref := range []string{"base", "copy:v1"} {
		res, err := s.Import(context.Background(), src, store.ImportOptions{Ref: ref})
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s: %d new, %d already stored\n", res.Manifest.Ref(), res.NewTensors, res.DedupTensors)
	}
	st, _ := s.Stats()
	fmt.Printf("logical %d bytes, %d distinct tensor\n", st.LogicalBytes, st.Tensors)
	// Output:
	// base:latest: 1 new, 1 already stored
	// copy:v1: 0 new, 2 already stored
	// logical 9600 bytes, 1 distinct tensor
}
