package graph

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Formats of model files.
const (
	FormatSafetensors = "safetensors"
	FormatONNX        = "onnx"
)

// TensorInfo describes one tensor of a model.
type TensorInfo struct {
	Name  string
	DType DType
	Shape []int64
	// Size is the tensor's size in bytes: the element count times DType.Size().
	Size int64
	// Shard is the file name (no directory) of the shard that holds the tensor in a
	// sharded safetensors folder, "" otherwise.
	Shard string
}

// TensorData writes the bytes of tensor i (exactly Tensors[i].Size bytes, little
// endian, C order) to w. Writers call it once per tensor, in order.
type TensorData func(i int, w io.Writer) error

// Source is an opened model file (or sharded folder): what it holds, and readers over
// its tensors' bytes. Close releases the files it holds open.
type Source struct {
	// Format is FormatSafetensors or FormatONNX.
	Format string
	// Tensors are the model's tensors in file order (safetensors: data order; ONNX:
	// graph.initializer order).
	Tensors []TensorInfo
	// Metadata is the safetensors __metadata__ map (for a sharded folder: the first
	// shard's). Nil for ONNX.
	Metadata map[string]string
	// Graph is the model's architecture. For ONNX it is the ModelProto with the data of
	// every top-level initializer removed (the layout is described at the top of onnx.go); nil for safetensors.
	Graph []byte
	// Files lists the paths read, main file first.
	Files []string
	// Sharded is true for a sharded safetensors folder.
	Sharded bool

	open   func(i int) (io.Reader, error)
	closer func() error
}

// Open returns a reader over exactly Tensors[i].Size bytes: tensor i's data, little
// endian, in C order. Readers of different tensors may be used one after another; a
// reader stays valid until Close.
func (s *Source) Open(i int) (io.Reader, error) {
	if i < 0 || i >= len(s.Tensors) {
		return nil, fmt.Errorf("graph: tensor index %d out of range [0, %d)", i, len(s.Tensors))
	}
	return s.open(i)
}

// Close closes the files s holds open.
func (s *Source) Close() error {
	if s.closer == nil {
		return nil
	}
	c := s.closer
	s.closer = nil
	return c()
}

// TotalBytes returns the sum of the sizes of s's tensors.
func (s *Source) TotalBytes() int64 {
	var n int64
	for _, t := range s.Tensors {
		n += t.Size
	}
	return n
}

// OpenFile opens the model at path: a .safetensors file, a folder holding
// model.safetensors.index.json (sharded) or a single .safetensors file, or an .onnx
// file. The format follows from the name; for other names the first bytes decide.
func OpenFile(path string) (*Source, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("graph: %w", err)
	}
	if fi.IsDir() {
		idx := filepath.Join(path, SafetensorsIndexName)
		if _, err := os.Stat(idx); err == nil {
			return OpenShardedSafetensors(path)
		}
		matches, _ := filepath.Glob(filepath.Join(path, "*.safetensors"))
		if len(matches) == 1 {
			return OpenSafetensors(matches[0])
		}
		onnx, _ := filepath.Glob(filepath.Join(path, "*.onnx"))
		if len(matches) == 0 && len(onnx) == 1 {
			return OpenONNX(onnx[0])
		}
		return nil, fmt.Errorf("graph: %s: folder holds no %s and not exactly one .safetensors or .onnx file", path, SafetensorsIndexName)
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".safetensors":
		return OpenSafetensors(path)
	case ".onnx":
		return OpenONNX(path)
	case ".json":
		if filepath.Base(path) == SafetensorsIndexName {
			return OpenShardedSafetensors(filepath.Dir(path))
		}
	}
	return nil, fmt.Errorf("graph: %s: unknown model format (want .safetensors, .onnx or a sharded safetensors folder)", path)
}

// NewSource returns a Source of the given format over tensors whose bytes come from
// open (called once per read, so it may be called more than once for a tensor).
// graph (the architecture) may be nil. It is how code builds models without files:
// generators, tests.
func NewSource(format string, tensors []TensorInfo, graph []byte, open func(i int) (io.Reader, error)) *Source {
	return &Source{Format: format, Tensors: tensors, Graph: graph, open: open}
}
