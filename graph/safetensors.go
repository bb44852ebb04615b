package graph

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// SafetensorsIndexName is the name of the index file of a sharded Hugging Face
// safetensors folder.
const SafetensorsIndexName = "model.safetensors.index.json"

// MaxSafetensorsHeader is the largest safetensors JSON header NeurStore accepts, in
// bytes. Larger headers are refused before any memory is allocated for them.
const MaxSafetensorsHeader = 100 << 20

// metadataKey is the header key of the free-form string map.
const metadataKey = "__metadata__"

// ParseSafetensorsHeader parses a safetensors JSON header (the bytes after the 8-byte
// length) for a file whose data section (everything after the header) is dataSize
// bytes long. It returns the tensors sorted by data offset (file data order), their
// data offsets relative to the start of the data section, and the __metadata__ map
// (nil if absent).
//
// It returns an error, starting "graph: safetensors: ", when the header is not valid
// UTF-8 JSON, is not an object, repeats a key, has a tensor entry with a missing,
// unknown or wrongly typed field, has __metadata__ values that are not strings, or
// when a tensor has an empty name, an unknown dtype, a negative dimension, a byte
// range that does not match its shape, runs past the data section or overlaps
// another, or when some bytes of the data section belong to no tensor.
func ParseSafetensorsHeader(header []byte, dataSize int64) (tensors []TensorInfo, offsets []int64, meta map[string]string, err error) {
	tensors, offsets, meta, err = parseHeader(header, dataSize)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("graph: safetensors: %w", err)
	}
	return tensors, offsets, meta, nil
}

// headerEntry is one tensor entry of a safetensors header.
type headerEntry struct {
	info       TensorInfo
	begin, end int64
}

// parseHeader does the work of ParseSafetensorsHeader; its errors carry no prefix.
func parseHeader(header []byte, dataSize int64) ([]TensorInfo, []int64, map[string]string, error) {
	if dataSize < 0 {
		return nil, nil, nil, fmt.Errorf("negative data section size %d", dataSize)
	}
	if !utf8.Valid(header) {
		return nil, nil, nil, errors.New("header is not valid UTF-8")
	}
	if len(header) == 0 || header[0] != '{' {
		return nil, nil, nil, errors.New("header is not a JSON object (it must start with '{')")
	}
	entries, meta, err := decodeHeader(header, dataSize)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := checkLayout(entries, dataSize); err != nil {
		return nil, nil, nil, err
	}
	tensors := make([]TensorInfo, len(entries))
	offsets := make([]int64, len(entries))
	for i, e := range entries {
		tensors[i] = e.info
		offsets[i] = e.begin
	}
	return tensors, offsets, meta, nil
}

// decodeHeader reads the header's JSON object, checking each tensor entry on its own
// as it goes. Entries come back in header order.
func decodeHeader(header []byte, dataSize int64) ([]headerEntry, map[string]string, error) {
	dec := json.NewDecoder(bytes.NewReader(header))
	dec.UseNumber()
	if err := expectDelim(dec, '{', "header is not a JSON object"); err != nil {
		return nil, nil, err
	}
	var (
		entries []headerEntry
		meta    map[string]string
		seen    = make(map[string]bool)
	)
	for dec.More() {
		key, err := readKey(dec)
		if err != nil {
			return nil, nil, err
		}
		if seen[key] {
			return nil, nil, fmt.Errorf("duplicate key %q in header", key)
		}
		seen[key] = true
		if key == metadataKey {
			if meta, err = readStringMap(dec, metadataKey); err != nil {
				return nil, nil, err
			}
			continue
		}
		e, err := readEntry(dec, key)
		if err != nil {
			return nil, nil, err
		}
		if err := checkEntry(&e, dataSize); err != nil {
			return nil, nil, err
		}
		entries = append(entries, e)
	}
	if err := expectDelim(dec, '}', "header is not a JSON object"); err != nil {
		return nil, nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, errors.New("header has data after its JSON object")
	}
	return entries, meta, nil
}

// checkLayout sorts entries into data order and checks that they tile the data
// section exactly: starting at 0, without overlaps or gaps, ending at dataSize.
func checkLayout(entries []headerEntry, dataSize int64) error {
	slices.SortStableFunc(entries, func(a, b headerEntry) int {
		return cmp.Or(cmp.Compare(a.begin, b.begin), cmp.Compare(a.end, b.end))
	})
	var pos int64
	for i, e := range entries {
		if e.begin < pos {
			p := entries[i-1]
			return fmt.Errorf("tensors %q [%d, %d) and %q [%d, %d) overlap",
				p.info.Name, p.begin, p.end, e.info.Name, e.begin, e.end)
		}
		if e.begin > pos {
			return fmt.Errorf("data bytes [%d, %d) before tensor %q belong to no tensor", pos, e.begin, e.info.Name)
		}
		pos = e.end
	}
	if pos != dataSize {
		return fmt.Errorf("data bytes [%d, %d) at the end of the data section belong to no tensor", pos, dataSize)
	}
	return nil
}

// checkEntry checks one tensor entry against its own fields and the data size, and
// sets its Size.
func checkEntry(e *headerEntry, dataSize int64) error {
	name := e.info.Name
	if e.begin < 0 || e.end < 0 {
		return fmt.Errorf("tensor %q: negative data_offsets [%d, %d]", name, e.begin, e.end)
	}
	if e.begin > e.end {
		return fmt.Errorf("tensor %q: data_offsets begin %d is after end %d", name, e.begin, e.end)
	}
	if e.end > dataSize {
		return fmt.Errorf("tensor %q: data_offsets end %d runs past the data section (%d bytes)", name, e.end, dataSize)
	}
	for _, d := range e.info.Shape {
		if d < 0 {
			return fmt.Errorf("tensor %q: negative dimension %d in shape %v", name, d, e.info.Shape)
		}
	}
	size, err := ByteSize(e.info.DType, e.info.Shape)
	if err != nil {
		return fmt.Errorf("tensor %q: shape %v is too large", name, e.info.Shape)
	}
	e.info.Size = size
	if e.info.Size != e.end-e.begin {
		return fmt.Errorf("tensor %q: data_offsets [%d, %d] hold %d bytes but shape %v of %v needs %d bytes",
			name, e.begin, e.end, e.end-e.begin, e.info.Shape, e.info.DType, e.info.Size)
	}
	return nil
}

// readEntry reads the JSON object describing tensor name. The entry's Size is left
// for checkEntry to fill in.
func readEntry(dec *json.Decoder, name string) (headerEntry, error) {
	e := headerEntry{info: TensorInfo{Name: name}}
	if name == "" {
		return e, errors.New("tensor with an empty name")
	}
	if err := expectDelim(dec, '{', fmt.Sprintf("tensor %q: entry is not a JSON object", name)); err != nil {
		return e, err
	}
	var dtype string
	var shape, offs []int64
	seen := make(map[string]bool)
	for dec.More() {
		key, err := readKey(dec)
		if err != nil {
			return e, err
		}
		if seen[key] {
			return e, fmt.Errorf("tensor %q: duplicate field %q", name, key)
		}
		seen[key] = true
		switch key {
		case "dtype":
			dtype, err = readString(dec, fmt.Sprintf("tensor %q: dtype", name))
		case "shape":
			shape, err = readIntArray(dec, fmt.Sprintf("tensor %q: shape", name))
		case "data_offsets":
			offs, err = readIntArray(dec, fmt.Sprintf("tensor %q: data_offsets", name))
			if err == nil && len(offs) != 2 {
				err = fmt.Errorf("tensor %q: data_offsets has %d numbers, want 2", name, len(offs))
			}
		default:
			err = fmt.Errorf("tensor %q: unknown field %q", name, key)
		}
		if err != nil {
			return e, err
		}
	}
	if err := expectDelim(dec, '}', fmt.Sprintf("tensor %q: entry is not a JSON object", name)); err != nil {
		return e, err
	}
	for _, f := range []string{"dtype", "shape", "data_offsets"} {
		if !seen[f] {
			return e, fmt.Errorf("tensor %q: missing field %q", name, f)
		}
	}
	dt, err := ParseDType(dtype)
	if err != nil {
		return e, fmt.Errorf("tensor %q: unknown dtype %q", name, dtype)
	}
	e.info.DType = dt
	e.info.Shape = shape
	e.begin, e.end = offs[0], offs[1]
	return e, nil
}

// readToken returns the next JSON token, turning decoder errors into header errors.
func readToken(dec *json.Decoder) (json.Token, error) {
	tok, err := dec.Token()
	if err == io.EOF {
		return nil, errors.New("header is not valid JSON: unexpected end")
	}
	if err != nil {
		return nil, fmt.Errorf("header is not valid JSON: %v", err)
	}
	return tok, nil
}

// expectDelim reads the next token and checks that it is the delimiter want,
// returning an error with message problem if it is another token.
func expectDelim(dec *json.Decoder, want json.Delim, problem string) error {
	tok, err := readToken(dec)
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return errors.New(problem)
	}
	return nil
}

// readKey reads an object key.
func readKey(dec *json.Decoder) (string, error) {
	tok, err := readToken(dec)
	if err != nil {
		return "", err
	}
	key, ok := tok.(string)
	if !ok {
		return "", errors.New("header is not valid JSON: object key is not a string")
	}
	return key, nil
}

// readString reads a JSON string value; what names the value in errors.
func readString(dec *json.Decoder, what string) (string, error) {
	tok, err := readToken(dec)
	if err != nil {
		return "", err
	}
	s, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("%s is not a string", what)
	}
	return s, nil
}

// readIntArray reads a JSON array of integers; what names the value in errors.
func readIntArray(dec *json.Decoder, what string) ([]int64, error) {
	if err := expectDelim(dec, '[', what+" is not an array of integers"); err != nil {
		return nil, err
	}
	a := []int64{}
	for dec.More() {
		tok, err := readToken(dec)
		if err != nil {
			return nil, err
		}
		num, ok := tok.(json.Number)
		if !ok {
			return nil, fmt.Errorf("%s is not an array of integers", what)
		}
		n, err := strconv.ParseInt(num.String(), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %s is not a 64-bit integer", what, num)
		}
		a = append(a, n)
	}
	if err := expectDelim(dec, ']', what+" is not an array of integers"); err != nil {
		return nil, err
	}
	return a, nil
}

// readStringMap reads a JSON object whose values are all strings, refusing repeated
// keys; what names the object in errors.
func readStringMap(dec *json.Decoder, what string) (map[string]string, error) {
	if err := expectDelim(dec, '{', what+" is not a JSON object"); err != nil {
		return nil, err
	}
	m := make(map[string]string)
	for dec.More() {
		key, err := readKey(dec)
		if err != nil {
			return nil, err
		}
		if _, dup := m[key]; dup {
			return nil, fmt.Errorf("duplicate key %q in %s", key, what)
		}
		v, err := readString(dec, fmt.Sprintf("%s value for %q", what, key))
		if err != nil {
			return nil, err
		}
		m[key] = v
	}
	if err := expectDelim(dec, '}', what+" is not a JSON object"); err != nil {
		return nil, err
	}
	return m, nil
}

// stFile is an open, validated safetensors file.
type stFile struct {
	f       *os.File
	base    int64 // file offset of the data section
	tensors []TensorInfo
	offsets []int64
	meta    map[string]string
}

// openSTFile opens and validates the safetensors file at path. Its errors are
// complete ("graph: safetensors <path>: ..."); on error no file is left open.
func openSTFile(path string) (*stFile, error) {
	fail := func(err error) error {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("graph: safetensors %s: %w", path, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fail(err)
	}
	st, err := readSTHeader(f)
	if err != nil {
		f.Close()
		return nil, fail(err)
	}
	return st, nil
}

// readSTHeader reads and validates the header of the safetensors file f.
func readSTHeader(f *os.File) (*stFile, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	size := fi.Size()
	if size < 8 {
		return nil, fmt.Errorf("file of %d bytes is shorter than the 8-byte header length", size)
	}
	var lenBuf [8]byte
	if _, err := f.ReadAt(lenBuf[:], 0); err != nil {
		return nil, fmt.Errorf("reading header length: %v", err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	switch {
	case n == 0:
		return nil, errors.New("header length is 0")
	case n > MaxSafetensorsHeader:
		return nil, fmt.Errorf("header of %d bytes exceeds the 100 MiB limit", n)
	case n > uint64(size-8):
		return nil, fmt.Errorf("header length %d runs past the end of the file (size %d)", n, size)
	}
	header := make([]byte, n)
	if _, err := f.ReadAt(header, 8); err != nil {
		return nil, fmt.Errorf("reading header: %v", err)
	}
	base := 8 + int64(n)
	tensors, offsets, meta, err := parseHeader(header, size-base)
	if err != nil {
		return nil, err
	}
	return &stFile{f: f, base: base, tensors: tensors, offsets: offsets, meta: meta}, nil
}

// OpenSafetensors opens the safetensors file at path and validates its header; the
// tensors come in data order, with Shard "". Tensor bytes are read from the file on
// demand through Source.Open. The caller must Close the Source.
//
// It returns an error, starting "graph: safetensors <path>: ", when the file cannot
// be opened or read, is shorter than 8 bytes, declares a header length of 0, above
// MaxSafetensorsHeader or past the end of the file, or when ParseSafetensorsHeader
// refuses the header.
func OpenSafetensors(path string) (*Source, error) {
	st, err := openSTFile(path)
	if err != nil {
		return nil, err
	}
	return &Source{
		Format:   FormatSafetensors,
		Tensors:  st.tensors,
		Metadata: st.meta,
		Files:    []string{path},
		open: func(i int) (io.Reader, error) {
			return io.NewSectionReader(st.f, st.base+st.offsets[i], st.tensors[i].Size), nil
		},
		closer: st.f.Close,
	}, nil
}

// OpenShardedSafetensors opens the sharded Hugging Face safetensors folder dir: its
// model.safetensors.index.json and every shard the index names. Tensors come shard by
// shard, shards sorted by file name, each shard's tensors in data order, with Shard
// set to the shard's file name. Files lists the index, then the shards; Metadata is
// the first shard's __metadata__. The caller must Close the Source.
//
// It returns an error, starting "graph: safetensors <file>: ", when the index is
// missing or not valid JSON, its weight_map is missing, empty or repeats a name, a
// shard name is not a plain file name, a shard is missing or invalid (see
// OpenSafetensors), a tensor of the weight_map is not in its shard, a shard holds a
// tensor that the weight_map does not list for it, or two shards hold the same name.
func OpenShardedSafetensors(dir string) (*Source, error) {
	indexPath := filepath.Join(dir, SafetensorsIndexName)
	weights, err := readIndex(indexPath)
	if err != nil {
		return nil, fmt.Errorf("graph: safetensors %s: %w", indexPath, err)
	}
	var shards []string
	for _, shard := range weights {
		if err := checkShardName(shard); err != nil {
			return nil, fmt.Errorf("graph: safetensors %s: %w", indexPath, err)
		}
		shards = append(shards, shard)
	}
	slices.Sort(shards)
	shards = slices.Compact(shards)

	files, err := openShards(dir, shards)
	if err != nil {
		return nil, err
	}
	src, err := assembleShards(dir, indexPath, shards, files, weights)
	if err != nil {
		closeAll(files)
		return nil, err
	}
	return src, nil
}

// openShards opens the named shards of dir in order, closing them all on error.
func openShards(dir string, shards []string) ([]*stFile, error) {
	var files []*stFile
	for _, shard := range shards {
		st, err := openSTFile(filepath.Join(dir, shard))
		if err != nil {
			closeAll(files)
			return nil, err
		}
		files = append(files, st)
	}
	return files, nil
}

// assembleShards checks the opened shards against the weight map and builds the
// Source over them.
func assembleShards(dir, indexPath string, shards []string, files []*stFile, weights map[string]string) (*Source, error) {
	src := &Source{Format: FormatSafetensors, Sharded: true, Files: []string{indexPath}}
	var (
		tensorFile []*stFile // the shard of each tensor of src
		tensorOff  []int64   // the file offset of each tensor of src
		holder     = make(map[string]string)
	)
	for i, st := range files {
		shard, path := shards[i], filepath.Join(dir, shards[i])
		for j, t := range st.tensors {
			if other, ok := holder[t.Name]; ok {
				return nil, fmt.Errorf("graph: safetensors %s: tensor %q is also in shard %s", path, t.Name, other)
			}
			holder[t.Name] = shard
			listed, ok := weights[t.Name]
			if !ok {
				return nil, fmt.Errorf("graph: safetensors %s: tensor %q is not listed in the weight_map", path, t.Name)
			}
			if listed != shard {
				return nil, fmt.Errorf("graph: safetensors %s: tensor %q is listed in the weight_map for shard %s", path, t.Name, listed)
			}
			t.Shard = shard
			src.Tensors = append(src.Tensors, t)
			tensorFile = append(tensorFile, st)
			tensorOff = append(tensorOff, st.base+st.offsets[j])
		}
		src.Files = append(src.Files, path)
	}
	names := make([]string, 0, len(weights))
	for name := range weights {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if _, ok := holder[name]; !ok {
			path := filepath.Join(dir, weights[name])
			return nil, fmt.Errorf("graph: safetensors %s: tensor %q listed in the weight_map is not in this shard", path, name)
		}
	}
	src.Metadata = files[0].meta
	src.open = func(i int) (io.Reader, error) {
		return io.NewSectionReader(tensorFile[i].f, tensorOff[i], src.Tensors[i].Size), nil
	}
	src.closer = func() error { return closeAll(files) }
	return src, nil
}

// closeAll closes every file and returns the first error.
func closeAll(files []*stFile) error {
	var first error
	for _, st := range files {
		if err := st.f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// readIndex reads a sharded folder's index file and returns its weight_map.
func readIndex(path string) (map[string]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("cannot read index: %w", err)
	}
	if fi.Size() > MaxSafetensorsHeader {
		return nil, fmt.Errorf("index of %d bytes exceeds the 100 MiB limit", fi.Size())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read index: %w", err)
	}
	return parseIndex(data)
}

// parseIndex returns the weight_map of an index file's contents. Keys other than
// weight_map are skipped, whatever they hold.
func parseIndex(data []byte) (map[string]string, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("index is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := expectDelim(dec, '{', "index is not a JSON object"); err != nil {
		return nil, err
	}
	var weights map[string]string
	seen := make(map[string]bool)
	for dec.More() {
		key, err := readKey(dec)
		if err != nil {
			return nil, err
		}
		if seen[key] {
			return nil, fmt.Errorf("duplicate key %q in index", key)
		}
		seen[key] = true
		if key == "weight_map" {
			weights, err = readStringMap(dec, "weight_map")
		} else {
			var skip json.RawMessage
			if err = dec.Decode(&skip); err != nil {
				err = fmt.Errorf("index is not valid JSON: %v", err)
			}
		}
		if err != nil {
			return nil, err
		}
	}
	if err := expectDelim(dec, '}', "index is not a JSON object"); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("index has data after its JSON object")
	}
	if weights == nil {
		return nil, errors.New("index has no weight_map")
	}
	if len(weights) == 0 {
		return nil, errors.New("index weight_map is empty")
	}
	return weights, nil
}

// checkShardName returns an error unless shard is a plain file name.
func checkShardName(shard string) error {
	switch {
	case shard == "" || shard == ".":
		return fmt.Errorf("invalid shard name %q", shard)
	case strings.ContainsAny(shard, `/\`):
		return fmt.Errorf("shard name %q contains a path separator", shard)
	case strings.Contains(shard, ".."):
		return fmt.Errorf("shard name %q contains \"..\"", shard)
	}
	return nil
}

// WriteSafetensors writes a safetensors file to w: the 8-byte little-endian header
// length, the JSON header ("__metadata__" first when meta is non-nil, then the tensors
// in the given order with contiguous data_offsets in that order) padded with spaces to
// a multiple of 8 bytes, then each tensor's bytes, obtained from data(i, w).
//
// It returns an error, starting "graph: safetensors: ", when a tensor has an empty,
// reserved or repeated name, an invalid dtype, a negative dimension or a Size that
// does not match its dtype and shape, when the header would exceed
// MaxSafetensorsHeader, when data fails or does not write exactly tensors[i].Size
// bytes, or when writing to w fails.
func WriteSafetensors(w io.Writer, meta map[string]string, tensors []TensorInfo, data TensorData) error {
	if err := writeSafetensors(w, meta, tensors, data); err != nil {
		return fmt.Errorf("graph: safetensors: %w", err)
	}
	return nil
}

func writeSafetensors(w io.Writer, meta map[string]string, tensors []TensorInfo, data TensorData) error {
	if err := checkWriteTensors(tensors); err != nil {
		return err
	}
	header, err := buildHeader(meta, tensors)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(header)))
	if _, err := bw.Write(append(lenBuf[:], header...)); err != nil {
		return err
	}
	for i, t := range tensors {
		tw := &tensorWriter{w: bw, left: t.Size}
		err := data(i, tw)
		switch {
		case tw.err != nil:
			return tw.err
		case tw.over:
			return fmt.Errorf("tensor %q: data wrote more than %d bytes", t.Name, t.Size)
		case err != nil:
			return fmt.Errorf("tensor %q: %w", t.Name, err)
		case tw.left != 0:
			return fmt.Errorf("tensor %q: data wrote %d bytes, want %d", t.Name, t.Size-tw.left, t.Size)
		}
	}
	return bw.Flush()
}

// checkWriteTensors checks that tensors can be written to a safetensors file.
func checkWriteTensors(tensors []TensorInfo) error {
	seen := make(map[string]bool, len(tensors))
	for _, t := range tensors {
		switch {
		case t.Name == "":
			return errors.New("tensor with an empty name")
		case t.Name == metadataKey:
			return fmt.Errorf("tensor name %q is reserved", t.Name)
		case seen[t.Name]:
			return fmt.Errorf("duplicate tensor name %q", t.Name)
		case !utf8.ValidString(t.Name):
			return fmt.Errorf("tensor name %q is not valid UTF-8", t.Name)
		}
		seen[t.Name] = true
		size, err := ByteSize(t.DType, t.Shape)
		if err != nil {
			return fmt.Errorf("tensor %q: %v", t.Name, strings.TrimPrefix(err.Error(), "graph: "))
		}
		if size != t.Size {
			return fmt.Errorf("tensor %q: Size is %d bytes but shape %v of %v needs %d bytes", t.Name, t.Size, t.Shape, t.DType, size)
		}
	}
	return nil
}

// buildHeader returns the padded JSON header for tensors laid out in order.
func buildHeader(meta map[string]string, tensors []TensorInfo) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	if meta != nil {
		for k, v := range meta {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return nil, fmt.Errorf("metadata %q is not valid UTF-8", k)
			}
		}
		m, err := json.Marshal(meta)
		if err != nil {
			return nil, err
		}
		b.WriteString(`"__metadata__":`)
		b.Write(m)
	}
	var off int64
	for i, t := range tensors {
		if i > 0 || meta != nil {
			b.WriteByte(',')
		}
		name, _ := json.Marshal(t.Name) // marshaling a string cannot fail
		b.Write(name)
		fmt.Fprintf(&b, `:{"dtype":"%s","shape":[`, t.DType)
		for j, d := range t.Shape {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.FormatInt(d, 10))
		}
		fmt.Fprintf(&b, `],"data_offsets":[%d,%d]}`, off, off+t.Size)
		off += t.Size
	}
	b.WriteByte('}')
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	if b.Len() > MaxSafetensorsHeader {
		return nil, fmt.Errorf("header of %d bytes exceeds the 100 MiB limit", b.Len())
	}
	return b.Bytes(), nil
}

// tensorWriter passes at most left bytes on to w and records what went wrong: a
// write error, or bytes beyond the limit (which are not written).
type tensorWriter struct {
	w    io.Writer
	left int64
	over bool
	err  error
}

func (tw *tensorWriter) Write(p []byte) (int, error) {
	if tw.err != nil {
		return 0, tw.err
	}
	if int64(len(p)) > tw.left {
		tw.over = true
		p = p[:tw.left]
	}
	n, err := tw.w.Write(p)
	tw.left -= int64(n)
	if err != nil {
		tw.err = err
		return n, err
	}
	if tw.over {
		return n, errors.New("tensor data is longer than its Size")
	}
	return n, nil
}

// WriteShardedSafetensors writes a Hugging Face sharded safetensors folder into dir,
// creating dir if missing: one safetensors file per distinct TensorInfo.Shard, in
// first-appearance order, each holding its tensors in the given order with meta as
// __metadata__, and model.safetensors.index.json with "metadata": {"total_size": N}
// (N the sum of the tensor sizes) and "weight_map" mapping each tensor to its shard.
// data is called with indexes into tensors, shard by shard.
//
// It returns an error, starting "graph: safetensors <path>: ", when there are no
// tensors, when a tensor has an empty Shard or a Shard that is not a plain file name
// (no '/', no "..") or is the index's name, when two tensors share a name, when a
// file cannot be written, or for the errors of WriteSafetensors.
func WriteShardedSafetensors(dir string, meta map[string]string, tensors []TensorInfo, data TensorData) error {
	fail := func(path string, err error) error {
		return fmt.Errorf("graph: safetensors %s: %w", path, err)
	}
	if len(tensors) == 0 {
		return fail(dir, errors.New("no tensors to write"))
	}
	shards, groups, err := groupShards(tensors)
	if err != nil {
		return fail(dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(dir, err)
	}
	for k, shard := range shards {
		path := filepath.Join(dir, shard)
		if err := writeShard(path, meta, tensors, groups[k], data); err != nil {
			return fail(path, err)
		}
	}
	indexPath := filepath.Join(dir, SafetensorsIndexName)
	if err := writeIndex(indexPath, tensors); err != nil {
		return fail(indexPath, err)
	}
	return nil
}

// groupShards returns the distinct shards of tensors in first-appearance order and,
// for each, the indexes of its tensors.
func groupShards(tensors []TensorInfo) ([]string, [][]int, error) {
	var shards []string
	var groups [][]int
	pos := make(map[string]int)
	names := make(map[string]bool)
	for i, t := range tensors {
		if t.Shard == "" {
			return nil, nil, fmt.Errorf("tensor %q has no shard", t.Name)
		}
		if err := checkShardName(t.Shard); err != nil {
			return nil, nil, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		if t.Shard == SafetensorsIndexName {
			return nil, nil, fmt.Errorf("tensor %q: shard name %q is the index's", t.Name, t.Shard)
		}
		if names[t.Name] {
			return nil, nil, fmt.Errorf("duplicate tensor name %q", t.Name)
		}
		names[t.Name] = true
		k, ok := pos[t.Shard]
		if !ok {
			k = len(shards)
			pos[t.Shard] = k
			shards = append(shards, t.Shard)
			groups = append(groups, nil)
		}
		groups[k] = append(groups[k], i)
	}
	return shards, groups, nil
}

// writeShard writes the tensors at indexes idx as one safetensors file at path.
func writeShard(path string, meta map[string]string, tensors []TensorInfo, idx []int, data TensorData) error {
	sub := make([]TensorInfo, len(idx))
	for j, i := range idx {
		sub[j] = tensors[i]
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = writeSafetensors(f, meta, sub, func(j int, w io.Writer) error { return data(idx[j], w) })
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeIndex writes the index file of a sharded folder holding tensors.
func writeIndex(path string, tensors []TensorInfo) error {
	var index struct {
		Metadata struct {
			TotalSize int64 `json:"total_size"`
		} `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	index.WeightMap = make(map[string]string, len(tensors))
	for _, t := range tensors {
		index.Metadata.TotalSize += t.Size
		index.WeightMap[t.Name] = t.Shard
	}
	b, err := json.MarshalIndent(index, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
