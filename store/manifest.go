package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/quant"
)

// Manifest formats (part of the format; do not change). A stored manifest is a
// version byte and the Manifest as JSON: version 1 plain, version 2 compressed with
// zstd (names, shapes and ids of many tensors compress well). Version 3, what
// Import writes, keeps the inline tensors' bytes out of the JSON, in lossless
// byte-plane streams after it:
//
//	0x03 | uvarint len(z) | z = zstd(JSON without inline data)
//	     | for each element size 1, 2, 4, 8: uvarint len(blob) | blob
//
// A blob (empty when no inline tensor has that element size) is quant's lossless
// encoding, without a base, of the bytes of every inline tensor of that size, in
// manifest order, concatenated (8-byte elements as planes of 4). Floats of one
// size share their sign and exponent planes, which then cost a few bits each,
// instead of 8 bits in base64 inside JSON: the inline tensors of digits-cnn (batch
// norms) take 20% fewer bytes.
const (
	manifestPlain  = 1
	manifestZstd   = 2
	manifestPlanes = 3
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
		// The fastest level: on a 20 KB manifest it keeps 1% more bytes than
		// SpeedBetterCompression (0.002% of text-medium's store; about 0.15% of
		// digits-cnn's, whose manifests are 9% of it) and its first call in a
		// process costs 1.5 ms instead of 18, which a one-model import pays.
		manifestEnc, manifestErr = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
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
	// GraphZstd says the graph blob is stored compressed with zstd (what Import
	// writes; an ONNX graph without its weights takes about a quarter).
	GraphZstd bool `json:"graph_zstd,omitempty"`
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

// storeGraph returns the stored form of m's graph blob g, and marks m as holding
// it compressed.
func (m *Manifest) storeGraph(g []byte) ([]byte, error) {
	enc, _, err := manifestZ()
	if err != nil {
		return nil, err
	}
	m.GraphBytes, m.GraphZstd = int64(len(g)), true
	return enc.EncodeAll(g, nil), nil
}

// loadGraph returns m's graph blob from its stored form v.
func (m *Manifest) loadGraph(v []byte) ([]byte, error) {
	g := v
	if m.GraphZstd {
		_, dec, err := manifestZ()
		if err != nil {
			return nil, err
		}
		if g, err = dec.DecodeAll(v, nil); err != nil {
			return nil, corruptf("model %s: graph: %v", m.Ref(), err)
		}
	}
	if int64(len(g)) != m.GraphBytes {
		return nil, corruptf("model %s: graph of %d bytes, manifest says %d", m.Ref(), len(g), m.GraphBytes)
	}
	return g, nil
}

// inlineSizes are the element sizes whose inline tensors are kept as planes, in
// the order of the planes section.
var inlineSizes = [...]int{1, 2, 4, 8}

func (m *Manifest) encode() ([]byte, error) { return m.encodeInline(true) }

// encodeInline encodes m, with the inline tensors' bytes or (for Stats, to price
// them) without.
func (m *Manifest) encodeInline(withData bool) ([]byte, error) {
	bare := *m
	bare.Tensors = slices.Clone(m.Tensors)
	var groups [len(inlineSizes)][]byte
	for i := range bare.Tensors {
		t := &bare.Tensors[i]
		if !t.Inline() {
			continue
		}
		g := slices.Index(inlineSizes[:], t.DType.Size())
		if size, err := graph.ByteSize(t.DType, t.Shape); err != nil || g < 0 || size != int64(len(t.Data)) || size > InlineMax {
			return nil, fmt.Errorf("store: encode manifest %s: inline tensor %s has %d bytes for %s %v", m.Ref(), t.Name, len(t.Data), t.DType, t.Shape)
		}
		groups[g] = append(groups[g], t.Data...)
		t.Data = nil
	}
	j, err := json.Marshal(&bare)
	if err != nil {
		return nil, fmt.Errorf("store: encode manifest %s: %w", m.Ref(), err)
	}
	enc, _, err := manifestZ()
	if err != nil {
		return nil, err
	}
	z := enc.EncodeAll(j, nil)
	out := binary.AppendUvarint([]byte{manifestPlanes}, uint64(len(z)))
	out = append(out, z...)
	for g, data := range groups {
		var blob []byte
		if withData && len(data) > 0 {
			if blob, err = quant.LosslessEncode(data, nil, min(inlineSizes[g], 4)); err != nil {
				return nil, fmt.Errorf("store: encode manifest %s: %w", m.Ref(), err)
			}
		}
		out = binary.AppendUvarint(out, uint64(len(blob)))
		out = append(out, blob...)
	}
	return out, nil
}

func decodeManifest(b []byte) (*Manifest, error) {
	if len(b) == 0 || b[0] < manifestPlain || b[0] > manifestPlanes {
		return nil, corruptf("manifest: unsupported version")
	}
	j := b[1:]
	var planes []byte
	if b[0] == manifestPlanes {
		n, k := binary.Uvarint(j)
		if k <= 0 || n > uint64(len(j)-k) {
			return nil, corruptf("manifest: bad length")
		}
		j, planes = j[k:k+int(n)], j[k+int(n):]
	}
	if b[0] != manifestPlain {
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
	if b[0] == manifestPlanes {
		if err := m.readInline(planes); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// readInline fills the inline tensors' data from the blobs after a version 3
// manifest's JSON, which must hold exactly their bytes.
func (m *Manifest) readInline(p []byte) error {
	for _, s := range inlineSizes {
		var idx []int
		var total int
		for i := range m.Tensors {
			t := &m.Tensors[i]
			if !t.Inline() || t.DType.Size() != s {
				continue
			}
			size, err := graph.ByteSize(t.DType, t.Shape)
			if err != nil || size > InlineMax || t.Data != nil {
				return corruptf("manifest: inline tensor %s", t.Name)
			}
			idx = append(idx, i)
			total += int(size)
		}
		n, k := binary.Uvarint(p)
		if k <= 0 || n > uint64(len(p)-k) {
			return corruptf("manifest: bad inline length")
		}
		blob := p[k : k+int(n)]
		p = p[k+int(n):]
		var data []byte
		if len(blob) > 0 {
			var err error
			if data, err = quant.LosslessDecode(blob, nil, total); err != nil {
				return corruptf("manifest: inline tensors of %d-byte elements: %v", s, err)
			}
		}
		if len(data) != total {
			return corruptf("manifest: inline tensors need %d bytes of %d-byte elements, have %d", total, s, len(data))
		}
		for _, i := range idx {
			t := &m.Tensors[i]
			size, _ := graph.ByteSize(t.DType, t.Shape)
			if size > 0 {
				t.Data, data = data[:size:size], data[size:]
			}
		}
	}
	for _, t := range m.Tensors {
		if t.Inline() && slices.Index(inlineSizes[:], t.DType.Size()) < 0 {
			return corruptf("manifest: inline tensor %s of %s", t.Name, t.DType)
		}
	}
	if len(p) != 0 {
		return corruptf("manifest: %d bytes after the inline tensors", len(p))
	}
	return nil
}

// ParseRef splits "name[:tag]" (tag defaults to "latest") and checks both parts:
// letters, digits, '.', '_' and '-', starting with a letter or digit; names up to
// 128 characters, tags up to 64.
func ParseRef(ref string) (name, tag string, err error) {
	name, tag, ok := strings.Cut(ref, ":")
	if !ok {
		tag = "latest"
	}
	if !validRefPart(name, 128) {
		return "", "", fmt.Errorf("store: invalid model name %q: use letters, digits, '.', '_' and '-', starting with a letter or digit, at most 128 characters", name)
	}
	if !validRefPart(tag, 64) {
		return "", "", fmt.Errorf("store: invalid tag %q: use letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64 characters", tag)
	}
	return name, tag, nil
}

// validRefPart reports whether s is 1 to max letters, digits, '.', '_' and '-',
// starting with a letter or digit. (A regular expression for this, with its
// {0,127}, cost every process 1.7 ms to compile.)
func validRefPart(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}
