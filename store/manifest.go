package store

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/neurstore/neurstore/graph"
)

// Manifest formats (part of the format; do not change). A stored manifest is a
// version byte and the Manifest as JSON: version 1 plain, version 2 compressed with
// zstd (what Import writes: names, shapes and ids of many tensors compress well).
const (
	manifestPlain = 1
	manifestZstd  = 2
	// maxManifest bounds a decompressed manifest.
	maxManifest = 256 << 20
)

var (
	manifestCodecs sync.Once
	manifestEnc    *zstd.Encoder
	manifestDec    *zstd.Decoder
	manifestErr    error
)

func manifestZ() (*zstd.Encoder, *zstd.Decoder, error) {
	manifestCodecs.Do(func() {
		manifestEnc, manifestErr = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderConcurrency(1))
		if manifestErr == nil {
			manifestDec, manifestErr = zstd.NewReader(nil, zstd.WithDecoderMaxMemory(maxManifest), zstd.WithDecoderConcurrency(1))
		}
	})
	return manifestEnc, manifestDec, manifestErr
}

// Manifest is a stored model: everything but its tensors' bytes and its graph blob.
type Manifest struct {
	Name    string    `json:"name"`
	Tag     string    `json:"tag"`
	Format  string    `json:"format"` // graph.FormatSafetensors or graph.FormatONNX
	Created time.Time `json:"created"`
	// Params are the import parameters.
	Params ImportParams `json:"params"`
	// Lineage says where the model came from.
	Lineage Lineage `json:"lineage"`
	// Metadata is the safetensors __metadata__ map.
	Metadata map[string]string `json:"metadata,omitempty"`
	// Sharded is true when the model was imported from a sharded safetensors folder;
	// tensors then name their shard and export recreates the folder.
	Sharded bool `json:"sharded,omitempty"`
	// Tensors is the ordered tensor list.
	Tensors []ManifestTensor `json:"tensors"`
	// GraphBytes is the size of the graph blob.
	GraphBytes int64 `json:"graph_bytes"`
	// Metrics holds quality metrics the user measured (for example accuracy).
	Metrics map[string]float64 `json:"metrics,omitempty"`
}

// ImportParams are the parameters a model was imported with.
type ImportParams struct {
	Mode string  `json:"mode"` // "lossless" (tau 0) or "lossy" (tau > 0)
	Tau  float64 `json:"tau"`
}

// Lineage records a model's origin.
type Lineage struct {
	Files []string `json:"files,omitempty"` // the paths it was imported from
	Base  string   `json:"base,omitempty"`  // the --base model, if one was given
}

// ManifestTensor is one entry of a manifest's tensor list.
type ManifestTensor struct {
	Name  string      `json:"name"`
	DType graph.DType `json:"dtype"`
	Shape []int64     `json:"shape"`
	ID    TensorID    `json:"id"`
	Shard string      `json:"shard,omitempty"`
	// Data holds the bytes of a tiny tensor (up to InlineMax bytes) kept in the
	// manifest itself; its ID is then zero and no record exists for it.
	Data []byte `json:"data,omitempty"`
}

// InlineMax is the size up to which a tensor is kept in its model's manifest
// rather than as a record of its own: for biases, norms and counters of a few
// dozen values, a record, its key and its id would cost more than the data.
const InlineMax = 512

// Inline reports whether the tensor is kept in the manifest (see Data).
func (t *ManifestTensor) Inline() bool { return t.ID == TensorID{} }

// Ref returns "name:tag".
func (m *Manifest) Ref() string { return m.Name + ":" + m.Tag }

// LogicalBytes returns the sum of the tensors' sizes.
func (m *Manifest) LogicalBytes() int64 {
	var n int64
	for _, t := range m.Info() {
		n += t.Size
	}
	return n
}

// Info returns the tensor list as graph.TensorInfo.
func (m *Manifest) Info() []graph.TensorInfo {
	out := make([]graph.TensorInfo, len(m.Tensors))
	for i, t := range m.Tensors {
		size, _ := graph.ByteSize(t.DType, t.Shape)
		out[i] = graph.TensorInfo{Name: t.Name, DType: t.DType, Shape: t.Shape, Size: size, Shard: t.Shard}
	}
	return out
}

func (m *Manifest) encode() ([]byte, error) {
	j, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("store: encode manifest %s: %w", m.Ref(), err)
	}
	enc, _, err := manifestZ()
	if err != nil {
		return nil, err
	}
	return enc.EncodeAll(j, []byte{manifestZstd}), nil
}

func decodeManifest(b []byte) (*Manifest, error) {
	if len(b) == 0 || b[0] != manifestPlain && b[0] != manifestZstd {
		return nil, corruptf("manifest: unsupported version")
	}
	j := b[1:]
	if b[0] == manifestZstd {
		_, dec, err := manifestZ()
		if err != nil {
			return nil, err
		}
		if j, err = dec.DecodeAll(j, nil); err != nil {
			return nil, corruptf("manifest: %v", err)
		}
	}
	m := new(Manifest)
	if err := json.Unmarshal(j, m); err != nil {
		return nil, corruptf("manifest: %v", err)
	}
	return m, nil
}

var (
	namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	tagPattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

// ParseRef splits "name[:tag]" (tag defaults to "latest") and checks both parts:
// letters, digits, '.', '_' and '-', starting with a letter or digit; names up to
// 128 characters, tags up to 64.
func ParseRef(ref string) (name, tag string, err error) {
	name, tag, ok := strings.Cut(ref, ":")
	if !ok {
		tag = "latest"
	}
	if !namePattern.MatchString(name) {
		return "", "", fmt.Errorf("store: invalid model name %q: use letters, digits, '.', '_' and '-', starting with a letter or digit, at most 128 characters", name)
	}
	if !tagPattern.MatchString(tag) {
		return "", "", fmt.Errorf("store: invalid tag %q: use letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64 characters", tag)
	}
	return name, tag, nil
}
