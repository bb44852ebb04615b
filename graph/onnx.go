// ONNX architecture layout. This is part of the store's format: stored
// architectures are read back by WriteONNX, so do not change it.
//
// The architecture of an ONNX model is its ModelProto, serialized, with the data of
// every top-level initializer (ModelProto.graph.initializer) whose data_type maps to
// a DType taken out:
//
//   - Every field of the ModelProto except graph (7), and every field of the
//     GraphProto except initializer (5), is kept byte for byte, in file order: nodes,
//     inputs, outputs, Constant nodes' tensors, subgraphs and their initializers,
//     sparse_initializer, opset_import, metadata_props, functions, unknown fields.
//   - An initializer whose data_type maps to a DType becomes a stub: the same
//     TensorProto without its data fields (float_data 4, int32_data 5,
//     string_data 6, int64_data 7, raw_data 9, double_data 10, uint64_data 11,
//     external_data 13, data_location 14). Its other fields (dims, data_type,
//     name, doc_string, segment, metadata_props, unknown fields) are kept byte for
//     byte, in file order. The i-th stub of the graph belongs to tensor i.
//   - An initializer whose data_type does not map to a DType (STRING, complex, int4,
//     other float8 types, ...) is kept whole and is not a tensor.
//   - The graph field (tag and length) and each stub's initializer field (tag and
//     length) are written with minimal varints; other fields keep their encoding.
//   - The architecture has exactly one graph field. Which data_type values map to
//     which DType (onnxTypes) is part of the layout too: a reader finds the stubs
//     as the top-level initializers whose data_type maps.
//
// The model is rebuilt by appending raw_data (9) with the tensor's bytes at the end
// of each stub and fixing the enclosing lengths. Parsing the rebuilt model gives the
// same architecture back.

package graph

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers from onnx.proto.
const (
	modelGraph = 7

	graphInitializer = 5

	tensorDims         = 1
	tensorDataType     = 2
	tensorFloatData    = 4
	tensorInt32Data    = 5
	tensorStringData   = 6
	tensorInt64Data    = 7
	tensorName         = 8
	tensorRawData      = 9
	tensorDoubleData   = 10
	tensorUint64Data   = 11
	tensorExternalData = 13
	tensorDataLocation = 14

	entryKey   = 1
	entryValue = 2
)

// TensorProto.DataLocation values.
const (
	locationDefault  = 0
	locationExternal = 1
)

// maxProtoSize is the largest message protobuf can serialize (2 GiB - 1).
const maxProtoSize = 1<<31 - 1

// onnxType is how a TensorProto.DataType is stored: its DType and the typed field
// that holds its values when it has no raw_data.
type onnxType struct {
	dtype DType
	field protowire.Number
}

// onnxTypes maps TensorProto.DataType values to DTypes. Types missing here stay
// whole in the architecture.
var onnxTypes = map[uint64]onnxType{
	1:  {F32, tensorFloatData},
	2:  {U8, tensorInt32Data},
	3:  {I8, tensorInt32Data},
	4:  {U16, tensorInt32Data},
	5:  {I16, tensorInt32Data},
	6:  {I32, tensorInt32Data},
	7:  {I64, tensorInt64Data},
	9:  {Bool, tensorInt32Data},
	10: {F16, tensorInt32Data},
	11: {F64, tensorDoubleData},
	12: {U32, tensorUint64Data},
	13: {U64, tensorUint64Data},
	16: {BF16, tensorInt32Data},
	17: {F8E4M3, tensorInt32Data},
	19: {F8E5M2, tensorInt32Data},
}

// tensorDataFields are the TensorProto fields that a stub leaves out.
var tensorDataFields = map[protowire.Number]string{
	tensorFloatData:    "float_data",
	tensorInt32Data:    "int32_data",
	tensorStringData:   "string_data",
	tensorInt64Data:    "int64_data",
	tensorRawData:      "raw_data",
	tensorDoubleData:   "double_data",
	tensorUint64Data:   "uint64_data",
	tensorExternalData: "external_data",
	tensorDataLocation: "data_location",
}

// OpenONNX opens the ONNX model at path. Tensors are the graph's top-level
// initializers, in graph order; Graph is the architecture (see the layout at the top
// of onnx.go); Files lists path and then the external-data files used, which are
// looked up in path's folder. raw_data and external data are read from the files
// when a tensor is opened; typed data (float_data, int32_data, ...) is decoded into
// memory. Close the Source to release the files.
//
// Errors read "graph: onnx <path>: <problem>". OpenONNX fails when path cannot be
// opened (the error wraps the *fs.PathError) or is a folder, and for everything
// ParseONNX refuses.
func OpenONNX(path string) (*Source, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("graph: onnx %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err == nil && fi.IsDir() {
		err = errors.New("is a folder")
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("graph: onnx %s: %w", path, err)
	}
	src, err := parseONNX(f, fi.Size(), filepath.Dir(path), path)
	if err != nil {
		f.Close()
		return nil, err
	}
	src.Files = append([]string{path}, src.Files...)
	closeExternal := src.closer
	src.closer = func() error { return errors.Join(closeExternal(), f.Close()) }
	return src, nil
}

// ParseONNX parses the ONNX model held in the first size bytes of r, without reading
// raw_data. External-data files are looked up in the folder dir; when dir is "" a
// model with external data is refused. Files lists the external-data files used
// (nil when none); Close closes them but not r. The returned Source reads raw_data
// from r, so r must stay usable until the Source is no longer used.
//
// Errors read "graph: onnx <reader>: <problem>". ParseONNX fails when r fails or is
// shorter than size; on malformed wire data (a bad varint, a length past the end of
// its enclosing message, a group, field number 0); on a model without a graph or
// with more than one; on a top-level initializer with no name or the name of an
// earlier one; on a top-level initializer of a mapped type with a negative
// dimension, both raw_data and typed data, typed data in the wrong field, an unknown
// data_location, external_data without data_location EXTERNAL, or data whose size
// does not match its dims; and on external data whose location is absolute or
// leaves dir (also through a symbolic link), whose file is missing or not a regular
// file, or whose offset and length do not fit the file or the dims.
func ParseONNX(r io.ReaderAt, size int64, dir string) (*Source, error) {
	return parseONNX(r, size, dir, "<reader>")
}

// onnxParser holds the state of one parse.
type onnxParser struct {
	w       *wireReader
	dir     string
	tensors []TensorInfo
	data    []onnxData
	names   map[string]int // initializer name -> its index among the initializers

	external map[string]*externalFile // by path
	files    []*externalFile          // in the order they were opened
}

// onnxData says where a tensor's bytes are: size bytes at off in r, or in buf.
type onnxData struct {
	r    io.ReaderAt
	off  int64
	size int64
	buf  []byte
}

type externalFile struct {
	path string
	f    *os.File
	size int64
}

func parseONNX(r io.ReaderAt, size int64, dir, name string) (*Source, error) {
	if size < 0 {
		return nil, fmt.Errorf("graph: onnx %s: negative size %d", name, size)
	}
	p := &onnxParser{
		w:        &wireReader{r: r, size: size},
		dir:      dir,
		names:    make(map[string]int),
		external: make(map[string]*externalFile),
	}
	arch, err := p.model()
	if err != nil {
		p.close()
		return nil, fmt.Errorf("graph: onnx %s: %w", name, err)
	}
	src := &Source{
		Format:  FormatONNX,
		Tensors: p.tensors,
		Graph:   arch,
		closer:  p.close,
	}
	for _, f := range p.files {
		src.Files = append(src.Files, f.path)
	}
	data := p.data
	src.open = func(i int) (io.Reader, error) {
		d := data[i]
		if d.r == nil {
			return bytes.NewReader(d.buf), nil
		}
		return io.NewSectionReader(d.r, d.off, d.size), nil
	}
	return src, nil
}

// close closes the external-data files.
func (p *onnxParser) close() error {
	var errs []error
	for _, f := range p.files {
		errs = append(errs, f.f.Close())
	}
	p.files = nil
	return errors.Join(errs...)
}

// model parses the ModelProto and returns the architecture.
func (p *onnxParser) model() ([]byte, error) {
	var arch []byte
	seen := false
	err := p.w.walk(0, p.w.size, func(f wireField) error {
		if f.num != modelGraph {
			var err error
			arch, err = p.w.appendRange(arch, f.start, f.end)
			return err
		}
		if f.typ != protowire.BytesType {
			return fmt.Errorf("offset %d: model field graph has wire type %d, want %d", f.start, f.typ, protowire.BytesType)
		}
		if seen {
			return fmt.Errorf("offset %d: model has a second graph field", f.start)
		}
		seen = true
		graph, err := p.graph(f.data, f.end)
		if err != nil {
			return err
		}
		arch = protowire.AppendTag(arch, modelGraph, protowire.BytesType)
		arch = protowire.AppendBytes(arch, graph)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !seen {
		return nil, errors.New("model has no graph")
	}
	return arch, nil
}

// graph parses the GraphProto at [start, end) and returns it with stubs in place of
// the initializers that become tensors.
func (p *onnxParser) graph(start, end int64) ([]byte, error) {
	var out []byte
	n := 0
	err := p.w.walk(start, end, func(f wireField) error {
		if f.num != graphInitializer {
			var err error
			out, err = p.w.appendRange(out, f.start, f.end)
			return err
		}
		if f.typ != protowire.BytesType {
			return fmt.Errorf("offset %d: graph field initializer has wire type %d, want %d", f.start, f.typ, protowire.BytesType)
		}
		stub, err := p.initializer(n, f)
		if err != nil {
			return err
		}
		n++
		if stub == nil {
			out, err = p.w.appendRange(out, f.start, f.end)
			return err
		}
		out = protowire.AppendTag(out, graphInitializer, protowire.BytesType)
		out = protowire.AppendBytes(out, stub)
		return nil
	})
	return out, err
}

// initializer parses initializer i, held in field f. For a tensor of a mapped type it
// records the tensor and returns its stub; for another type it returns nil.
func (p *onnxParser) initializer(i int, f wireField) ([]byte, error) {
	h, err := p.w.scanTensor(f.data, f.end)
	if err != nil {
		return nil, fmt.Errorf("initializer %d: %w", i, err)
	}
	if h.name == "" {
		return nil, fmt.Errorf("initializer %d has no name", i)
	}
	if j, dup := p.names[h.name]; dup {
		return nil, fmt.Errorf("initializers %d and %d are both named %s", j, i, quote(h.name))
	}
	p.names[h.name] = i
	typ, ok := onnxTypes[h.dataType]
	if !ok {
		return nil, nil
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("initializer %d %s: "+format, append([]any{i, quote(h.name)}, args...)...)
	}

	for _, d := range h.dims {
		if d < 0 {
			return nil, fail("dims %s hold a negative (unknown) dimension", dimsString(h.dims))
		}
	}
	size, err := ByteSize(typ.dtype, h.dims)
	if err != nil {
		return nil, fail("dims %s are too large", dimsString(h.dims))
	}
	if h.location != locationDefault && h.location != locationExternal {
		return nil, fail("unknown data_location %d", h.location)
	}
	external := h.location == locationExternal
	if len(h.external) > 0 && !external {
		return nil, fail("has external_data entries but data_location is not EXTERNAL")
	}
	if h.raw != nil && len(h.typed) > 0 {
		return nil, fail("has both raw_data and %s", tensorDataFields[h.typed[0]])
	}
	if external && (h.raw != nil || len(h.typed) > 0) {
		return nil, fail("has both external data and inline data")
	}
	for _, num := range h.typed {
		if num != typ.field {
			return nil, fail("has %s, but %s values belong in %s", tensorDataFields[num], typ.dtype, tensorDataFields[typ.field])
		}
	}

	d := onnxData{size: size}
	switch {
	case external:
		d.r, d.off, err = p.externalData(h.external, size)
		if err != nil {
			return nil, fail("%w", err)
		}
	case h.raw != nil:
		if n := h.raw.end - h.raw.data; n != size {
			return nil, fail("raw_data has %d bytes, dims %s of %s need %d", n, dimsString(h.dims), typ.dtype, size)
		}
		d.r, d.off = p.w.r, h.raw.data
	}

	// Second pass: copy the stub's fields and decode typed data.
	esize := int64(typ.dtype.Size())
	want := size / esize
	var count int64
	if len(h.typed) > 0 {
		d.buf = make([]byte, 0, min(want, h.maxValues)*esize)
	}
	store := func(v uint64) {
		if count < want {
			d.buf = appendLE(d.buf, v, int(esize))
		}
		count++
	}
	consume := protowire.ConsumeVarint
	switch typ.field {
	case tensorFloatData:
		consume = consumeFixed32
	case tensorDoubleData:
		consume = protowire.ConsumeFixed64
	}
	var stub []byte
	err = p.w.walk(f.data, f.end, func(g wireField) error {
		if _, isData := tensorDataFields[g.num]; !isData {
			var err error
			stub, err = p.w.appendRange(stub, g.start, g.end)
			return err
		}
		if g.num != typ.field {
			return nil
		}
		if g.typ == protowire.BytesType {
			return p.w.values(g.data, g.end, consume, store)
		}
		store(g.val)
		return nil
	})
	if err != nil {
		return nil, fail("%w", err)
	}
	if !external && h.raw == nil && count*esize != size {
		if len(h.typed) == 0 {
			return nil, fail("has no data, dims %s of %s need %d bytes", dimsString(h.dims), typ.dtype, size)
		}
		return nil, fail("%s holds %d bytes, dims %s of %s need %d", tensorDataFields[typ.field], count*esize, dimsString(h.dims), typ.dtype, size)
	}

	shape := make([]int64, len(h.dims))
	copy(shape, h.dims)
	p.tensors = append(p.tensors, TensorInfo{Name: h.name, DType: typ.dtype, Shape: shape, Size: size})
	p.data = append(p.data, d)
	return stub, nil
}

// quote quotes s for an error message, cutting it short when it is long.
func quote(s string) string {
	const limit = 64
	if len(s) > limit {
		return strconv.Quote(s[:limit]) + "..."
	}
	return strconv.Quote(s)
}

// dimsString formats dims for an error message, leaving out the middle of a long
// list.
func dimsString(dims []int64) string {
	const limit = 8
	if len(dims) <= limit {
		return fmt.Sprint(dims)
	}
	head := strings.Trim(fmt.Sprint(dims[:limit/2]), "[]")
	tail := strings.Trim(fmt.Sprint(dims[len(dims)-limit/2:]), "[]")
	return fmt.Sprintf("[%s ... %s] (%d dims)", head, tail, len(dims))
}

// appendLE appends the low size bytes of v to b, little endian.
func appendLE(b []byte, v uint64, size int) []byte {
	for i := range size {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}

// externalData resolves a tensor's external_data entries and returns the file and
// offset of its size bytes.
func (p *onnxParser) externalData(entries [][2]string, size int64) (io.ReaderAt, int64, error) {
	var location string
	var offset int64
	length := size
	for _, kv := range entries {
		var err error
		switch kv[0] {
		case "location":
			location = kv[1]
		case "offset":
			offset, err = strconv.ParseInt(kv[1], 10, 64)
		case "length":
			length, err = strconv.ParseInt(kv[1], 10, 64)
		default:
			continue
		}
		if err != nil || offset < 0 || length < 0 {
			return nil, 0, fmt.Errorf("external data %s %s is not a non-negative integer", kv[0], quote(kv[1]))
		}
	}
	if location == "" {
		return nil, 0, errors.New("external data has no location")
	}
	if p.dir == "" {
		return nil, 0, fmt.Errorf("external data %s needs the model's folder, and none was given", quote(location))
	}
	rel := filepath.FromSlash(location)
	if !filepath.IsLocal(rel) {
		return nil, 0, fmt.Errorf("external data location %s is absolute or leaves the model's folder", quote(location))
	}
	if length != size {
		return nil, 0, fmt.Errorf("external data length is %d bytes, dims need %d", length, size)
	}
	ef, err := p.openExternal(rel)
	if err != nil {
		return nil, 0, fmt.Errorf("external data %s: %w", quote(location), err)
	}
	if offset > ef.size-length {
		return nil, 0, fmt.Errorf("external data at offset %d, %d bytes long, runs past the end of %s (%d bytes)", offset, length, quote(location), ef.size)
	}
	return ef.f, offset, nil
}

// openExternal opens the external-data file at rel, a local path, in p.dir, once
// per parse. Symbolic links that lead out of p.dir are refused. Its errors leave out
// the path, which comes from the model and may hold any character; they wrap the
// file system's error (fs.ErrNotExist, ...).
func (p *onnxParser) openExternal(rel string) (*externalFile, error) {
	path := filepath.Join(p.dir, rel)
	if ef, ok := p.external[path]; ok {
		return ef, nil
	}
	f, err := os.OpenInRoot(p.dir, rel)
	if err != nil {
		return nil, pathless(err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = errors.New("not a regular file")
	}
	if err != nil {
		f.Close()
		return nil, pathless(err)
	}
	ef := &externalFile{path: path, f: f, size: fi.Size()}
	p.external[path] = ef
	p.files = append(p.files, ef)
	return ef, nil
}

// pathless returns the error inside an *fs.PathError, without the path.
func pathless(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// tensorHead is what a first pass over a TensorProto learns.
type tensorHead struct {
	name      string
	dataType  uint64
	dims      []int64
	location  uint64
	hasData   bool       // some data field is present
	raw       *wireField // the last raw_data field
	typed     []protowire.Number
	maxValues int64 // at least the number of values in the typed fields
	external  [][2]string
}

// scanTensor reads the TensorProto at [start, end) except for its data.
func (w *wireReader) scanTensor(start, end int64) (*tensorHead, error) {
	h := new(tensorHead)
	err := w.walk(start, end, func(f wireField) error {
		name, isData := tensorDataFields[f.num]
		h.hasData = h.hasData || isData
		want := protowire.BytesType
		switch f.num {
		case tensorDims:
			switch f.typ {
			case protowire.VarintType:
				h.dims = append(h.dims, int64(f.val))
				return nil
			case protowire.BytesType:
				return w.values(f.data, f.end, protowire.ConsumeVarint, func(v uint64) {
					h.dims = append(h.dims, int64(v))
				})
			}
			name, want = "dims", protowire.VarintType
		case tensorDataType:
			if f.typ == protowire.VarintType {
				h.dataType = f.val
				return nil
			}
			name, want = "data_type", protowire.VarintType
		case tensorName:
			if f.typ == protowire.BytesType {
				var err error
				h.name, err = w.readString(f.data, f.end)
				return err
			}
			name = "name"
		case tensorRawData:
			if f.typ == protowire.BytesType {
				h.raw = &f
				return nil
			}
		case tensorDataLocation:
			if f.typ == protowire.VarintType {
				h.location = f.val
				return nil
			}
			want = protowire.VarintType
		case tensorExternalData:
			if f.typ == protowire.BytesType {
				kv, err := w.scanEntry(f.data, f.end)
				h.external = append(h.external, kv)
				return err
			}
		case tensorFloatData, tensorInt32Data, tensorStringData, tensorInt64Data, tensorDoubleData, tensorUint64Data:
			return h.addTyped(f)
		default:
			return nil
		}
		return fmt.Errorf("offset %d: tensor field %s has wire type %d, want %d", f.start, name, f.typ, want)
	})
	if err != nil {
		return nil, err
	}
	return h, nil
}

// addTyped notes a typed data field, packed or not.
func (h *tensorHead) addTyped(f wireField) error {
	if !slices.Contains(h.typed, f.num) {
		h.typed = append(h.typed, f.num)
	}
	one, width := protowire.VarintType, int64(1)
	switch f.num {
	case tensorFloatData:
		one, width = protowire.Fixed32Type, 4
	case tensorDoubleData:
		one, width = protowire.Fixed64Type, 8
	case tensorStringData:
		one = protowire.BytesType
	}
	switch f.typ {
	case one:
		h.maxValues++
	case protowire.BytesType:
		n := f.end - f.data
		if n%width != 0 {
			return fmt.Errorf("offset %d: packed %s is %d bytes long, not a multiple of %d", f.start, tensorDataFields[f.num], n, width)
		}
		h.maxValues += n / width
	default:
		return fmt.Errorf("offset %d: tensor field %s has wire type %d", f.start, tensorDataFields[f.num], f.typ)
	}
	return nil
}

// scanEntry reads a StringStringEntryProto at [start, end).
func (w *wireReader) scanEntry(start, end int64) ([2]string, error) {
	var kv [2]string
	err := w.walk(start, end, func(f wireField) error {
		if f.num != entryKey && f.num != entryValue {
			return nil
		}
		if f.typ != protowire.BytesType {
			return fmt.Errorf("offset %d: external_data entry field %d has wire type %d, want %d", f.start, f.num, f.typ, protowire.BytesType)
		}
		s, err := w.readString(f.data, f.end)
		kv[f.num-1] = s
		return err
	})
	return kv, err
}

// WriteONNX writes an ONNX model: the architecture arch (as Source.Graph holds it for
// ONNX) with tensor i's bytes, which data writes, filled into the i-th stub as
// raw_data. Lengths come from tensors[i].Size, so tensor bytes go straight from data
// to w. Parsing the result gives tensors and arch back.
//
// Errors read "graph: onnx write: <problem>". WriteONNX fails when arch is malformed
// or has no graph, when a stub holds data, when the number of stubs differs from
// len(tensors), when stub i's name, dtype or dims differ from tensors[i] or
// tensors[i].Size does not match its shape, when the model would pass protobuf's
// 2 GiB limit (external-data export is not supported yet), when data fails or writes
// other than Size bytes, and when w fails.
func WriteONNX(w io.Writer, arch []byte, tensors []TensorInfo, data TensorData) error {
	if err := writeONNX(w, arch, tensors, data); err != nil {
		return fmt.Errorf("graph: onnx write: %w", err)
	}
	return nil
}

func writeONNX(w io.Writer, arch []byte, tensors []TensorInfo, data TensorData) error {
	if data == nil && len(tensors) > 0 {
		return errors.New("no TensorData")
	}
	graph, stubs, err := findStubs(arch, tensors)
	if err != nil {
		return err
	}

	// Compute the lengths of the filled stubs and graph.
	content := make([]int64, len(stubs))
	graphLen := graph.end - graph.data
	for k, f := range stubs {
		size := tensors[k].Size
		content[k] = (f.end - f.data) + int64(protowire.SizeTag(tensorRawData)+protowire.SizeVarint(uint64(size))) + size
		filled := int64(protowire.SizeTag(graphInitializer)+protowire.SizeVarint(uint64(content[k]))) + content[k]
		graphLen += filled - (f.end - f.start)
	}
	total := int64(len(arch)) - (graph.end - graph.start) +
		int64(protowire.SizeTag(modelGraph)+protowire.SizeVarint(uint64(graphLen))) + graphLen
	if total > maxProtoSize {
		return tooLarge(total)
	}

	ew := &errWriter{w: w}
	hdr := protowire.AppendTag(nil, modelGraph, protowire.BytesType)
	hdr = protowire.AppendVarint(hdr, uint64(graphLen))
	ew.write(arch[:graph.start], hdr)
	pos := graph.data
	for k, f := range stubs {
		t := tensors[k]
		hdr = protowire.AppendTag(hdr[:0], graphInitializer, protowire.BytesType)
		hdr = protowire.AppendVarint(hdr, uint64(content[k]))
		ew.write(arch[pos:f.start], hdr, arch[f.data:f.end])
		hdr = protowire.AppendTag(hdr[:0], tensorRawData, protowire.BytesType)
		hdr = protowire.AppendVarint(hdr, uint64(t.Size))
		ew.write(hdr)
		if ew.err != nil {
			return ew.err
		}
		tw := &exactWriter{w: w, left: t.Size}
		err := data(k, tw)
		switch {
		case err != nil:
			return fmt.Errorf("tensor %d %s: %w", k, quote(t.Name), err)
		case tw.err != nil:
			return fmt.Errorf("tensor %d %s: %w", k, quote(t.Name), tw.err)
		case tw.left != 0:
			return fmt.Errorf("tensor %d %s: data wrote %d bytes, want %d", k, quote(t.Name), t.Size-tw.left, t.Size)
		}
		pos = f.end
	}
	ew.write(arch[pos:])
	return ew.err
}

func tooLarge(n int64) error {
	return fmt.Errorf("model would be %d bytes, over protobuf's 2 GiB limit (writing tensors as ONNX external data is not supported yet)", n)
}

// findStubs returns arch's graph field and its stubs, checked against tensors.
func findStubs(arch []byte, tensors []TensorInfo) (wireField, []wireField, error) {
	ar := &wireReader{r: bytes.NewReader(arch), size: int64(len(arch))}
	var graph *wireField
	err := ar.walk(0, ar.size, func(f wireField) error {
		if f.num != modelGraph {
			return nil
		}
		if f.typ != protowire.BytesType {
			return fmt.Errorf("architecture: offset %d: graph field has wire type %d, want %d", f.start, f.typ, protowire.BytesType)
		}
		if graph != nil {
			return fmt.Errorf("architecture: offset %d: second graph field", f.start)
		}
		graph = &f
		return nil
	})
	if err != nil {
		return wireField{}, nil, err
	}
	if graph == nil {
		return wireField{}, nil, errors.New("architecture has no graph")
	}

	var stubs []wireField
	i := 0
	err = ar.walk(graph.data, graph.end, func(f wireField) error {
		if f.num != graphInitializer {
			return nil
		}
		if f.typ != protowire.BytesType {
			return fmt.Errorf("architecture: offset %d: initializer field has wire type %d, want %d", f.start, f.typ, protowire.BytesType)
		}
		h, err := ar.scanTensor(f.data, f.end)
		if err != nil {
			return fmt.Errorf("architecture: initializer %d: %w", i, err)
		}
		i++
		typ, ok := onnxTypes[h.dataType]
		if !ok {
			return nil
		}
		k := len(stubs)
		stubs = append(stubs, f)
		if h.hasData {
			return fmt.Errorf("architecture: initializer %d %s holds data; it should be a stub", i-1, quote(h.name))
		}
		if k >= len(tensors) {
			return nil
		}
		t := tensors[k]
		switch {
		case h.name != t.Name:
			return fmt.Errorf("stub %d is named %s, tensor %d %s", k, quote(h.name), k, quote(t.Name))
		case typ.dtype != t.DType:
			return fmt.Errorf("stub %d %s has dtype %s, tensor has %s", k, quote(h.name), typ.dtype, t.DType)
		case !slices.Equal(h.dims, t.Shape):
			return fmt.Errorf("stub %d %s has dims %s, tensor has shape %s", k, quote(h.name), dimsString(h.dims), dimsString(t.Shape))
		}
		if size, err := ByteSize(t.DType, t.Shape); err != nil || size != t.Size {
			return fmt.Errorf("tensor %d %s has Size %d, which does not match its dtype %s and shape %s", k, quote(t.Name), t.Size, t.DType, dimsString(t.Shape))
		}
		if t.Size > maxProtoSize {
			return tooLarge(t.Size)
		}
		return nil
	})
	if err != nil {
		return wireField{}, nil, err
	}
	if len(stubs) != len(tensors) {
		return wireField{}, nil, fmt.Errorf("architecture has %d stubs for %d tensors", len(stubs), len(tensors))
	}
	return *graph, stubs, nil
}

// errWriter writes to w until a write fails, and keeps the first error.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) write(bufs ...[]byte) {
	for _, b := range bufs {
		if e.err != nil || len(b) == 0 {
			continue
		}
		_, e.err = e.w.Write(b)
	}
}

// exactWriter passes at most left bytes to w.
type exactWriter struct {
	w    io.Writer
	left int64
	err  error
}

func (e *exactWriter) Write(b []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	if int64(len(b)) > e.left {
		n, err := e.w.Write(b[:e.left])
		e.left -= int64(n)
		if err == nil {
			err = errors.New("data wrote more bytes than the tensor's Size")
		}
		e.err = err
		return n, err
	}
	n, err := e.w.Write(b)
	e.left -= int64(n)
	e.err = err
	return n, err
}
