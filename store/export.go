package store

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/quant"
)

// ExportOptions control Export.
type ExportOptions struct {
	// Force replaces an existing output file or folder.
	Force bool
	// Progress, when set, is called as tensor bytes are written.
	Progress func(done, total int64)
	// DType, when set (F32, F16 or BF16), converts every floating-point tensor
	// of those three types to it, rounding to nearest even where it narrows;
	// other tensors are written as they are. Only safetensors output takes it:
	// an ONNX graph's types would no longer match its initializers.
	DType graph.DType
}

// Export writes model ref to out. The format follows out's name: ".safetensors"
// writes one safetensors file, ".onnx" an ONNX model (only for models imported from
// ONNX); any other name writes the model as it was imported (a sharded model as a
// folder of shards). The output appears atomically: it is written under a temporary
// name and renamed. Export refuses an existing out unless opts.Force is set, and
// returns an error wrapping ErrCorruption if a page fails its checksum.
func (s *Store) Export(ref, out string, opts ExportOptions) error {
	snap, err := s.be.Snapshot()
	if err != nil {
		return err
	}
	defer snap.Close()
	m, err := getManifest(snap, ref)
	if err != nil {
		return err
	}
	format := m.Format
	sharded := m.Sharded
	switch strings.ToLower(filepath.Ext(out)) {
	case ".safetensors":
		format, sharded = graph.FormatSafetensors, false
	case ".onnx":
		format = graph.FormatONNX
	}
	if format == graph.FormatONNX && m.Format != graph.FormatONNX {
		return fmt.Errorf("store: export %s: the model was imported from %s and has no ONNX graph; export it as .safetensors", m.Ref(), m.Format)
	}
	if _, err := os.Lstat(out); err == nil && !opts.Force {
		return fmt.Errorf("store: export %s: %s already exists (use --force to replace it)", m.Ref(), out)
	}

	tensors := m.Info()
	convert := make([]bool, len(tensors))
	to, toFloat := floatTarget(opts.DType)
	if opts.DType != graph.DTypeInvalid {
		if !toFloat {
			return fmt.Errorf("store: export %s: --dtype %s: only F32, F16 and BF16 are supported", m.Ref(), opts.DType)
		}
		for i := range tensors {
			t := &tensors[i]
			if _, ok := floatTarget(t.DType); !ok || t.DType == opts.DType {
				continue
			}
			if format == graph.FormatONNX {
				return fmt.Errorf("store: export %s: --dtype %s would change tensor %s (%s) but not the ONNX graph's types; export as .safetensors", m.Ref(), opts.DType, t.Name, t.DType)
			}
			convert[i] = true
			t.Size = t.Size / int64(t.DType.Size()) * int64(opts.DType.Size())
			t.DType = opts.DType
		}
	}
	var total, done int64
	for _, t := range tensors {
		total += t.Size
	}
	write := func(i int, w io.Writer) error {
		if t := &m.Tensors[i]; t.Inline() {
			done += int64(len(t.Data))
			_, err := w.Write(t.Data)
			return err
		}
		return copyTensor(snap, m.Tensors[i].ID, w, func(n int64) {
			done += n
			if opts.Progress != nil {
				opts.Progress(done, total)
			}
		})
	}
	data := func(i int, w io.Writer) error {
		if !convert[i] {
			return write(i, w)
		}
		from, _ := floatTarget(m.Tensors[i].DType)
		cw := &convertWriter{w: w, from: from, to: to}
		if err := write(i, cw); err != nil {
			return err
		}
		return cw.close()
	}

	if sharded {
		return writeAtomicDir(out, opts.Force, func(dir string) error {
			return graph.WriteShardedSafetensors(dir, m.Metadata, tensors, data)
		})
	}
	return writeAtomicFile(out, func(w io.Writer) error {
		if format == graph.FormatONNX {
			v, err := snap.Get(graphKey(m.Name, m.Tag))
			if err != nil {
				return fmt.Errorf("store: export %s: graph: %w", m.Ref(), err)
			}
			g, err := m.loadGraph(v)
			if err != nil {
				return err
			}
			return graph.WriteONNX(w, g, tensors, data)
		}
		return graph.WriteSafetensors(w, m.Metadata, tensors, data)
	})
}

// convertWriter converts a stream of little-endian elements of type from to
// type to and writes them to w. A write may end inside an element: its bytes
// wait for the next one.
type convertWriter struct {
	w        io.Writer
	from, to quant.Target
	part     []byte // the bytes of an element not yet complete
	vals     []float32
	buf      []byte
	err      error
}

func (c *convertWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n := len(p)
	es := c.from.Size()
	if len(c.part) > 0 {
		k := min(es-len(c.part), len(p))
		c.part = append(c.part, p[:k]...)
		p = p[k:]
		if len(c.part) < es {
			return n, nil
		}
		c.convert(c.part)
		c.part = c.part[:0]
	}
	whole := len(p) / es * es
	c.convert(p[:whole])
	c.part = append(c.part, p[whole:]...)
	return n, c.err
}

// convert writes the converted elements of src (whole elements).
func (c *convertWriter) convert(src []byte) {
	if c.err != nil || len(src) == 0 {
		return
	}
	n := len(src) / c.from.Size()
	if cap(c.vals) < n {
		c.vals, c.buf = make([]float32, n), make([]byte, n*c.to.Size())
	}
	vals, buf := c.vals[:n], c.buf[:n*c.to.Size()]
	c.from.Decode(vals, src)
	c.to.Encode(buf, vals)
	_, c.err = c.w.Write(buf)
}

// close returns the first write error, or an error for a stream that ended
// inside an element (a tensor is a whole number of elements, so only
// corruption leaves one).
func (c *convertWriter) close() error {
	if c.err == nil && len(c.part) > 0 {
		c.err = corruptf("tensor stream ends inside an element")
	}
	return c.err
}

// ReadModelTensor writes the bytes of tensor i of model m to w, decoding its
// encoding and checking every page's checksum.
func (s *Store) ReadModelTensor(m *Manifest, i int, w io.Writer) error {
	if t := &m.Tensors[i]; t.Inline() {
		_, err := w.Write(t.Data)
		return err
	}
	return copyTensor(s.be, m.Tensors[i].ID, w, nil)
}

// ReadTensor writes the bytes of tensor id to w, checking every page's checksum.
func (s *Store) ReadTensor(id TensorID, w io.Writer) error {
	return copyTensor(s.be, id, w, nil)
}

// copyTensor writes the bytes of tensor id, read through r, to w, decoding its
// encoding.
func copyTensor(r Reader, id TensorID, w io.Writer, progress func(int64)) error {
	rec, err := getRecord(r, id)
	if err != nil {
		return err
	}
	var n int64
	err = readTensor(r, id, rec, func(b []byte) error {
		if n += int64(len(b)); n > rec.Size {
			return corruptf("tensor %s: decodes to more than %d bytes", id.Short(), rec.Size)
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		if progress != nil {
			progress(int64(len(b)))
		}
		return nil
	})
	if err == nil && n != rec.Size {
		err = corruptf("tensor %s: decodes to %d bytes, want %d", id.Short(), n, rec.Size)
	}
	return err
}

func checkPage(id TensorID, rec *Record, p int64, v []byte) error {
	want := min(rec.PageSize, rec.Stored-p*rec.PageSize)
	if int64(len(v)) != want+4 {
		return corruptf("tensor %s: page %d holds %d bytes, want %d", id.Short(), p, len(v)-4, want)
	}
	if binary.LittleEndian.Uint32(v) != crc32.Checksum(v[4:], crcTable) {
		return corruptf("tensor %s: page %d: checksum mismatch", id.Short(), p)
	}
	return nil
}

// writeAtomicFile writes path through a temporary file in the same folder and renames
// it into place once write succeeded and the data is synced.
func writeAtomicFile(path string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	tmp := f.Name()
	bw := bufio.NewWriterSize(f, 4<<20)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// writeAtomicDir writes a folder through a temporary folder beside it and renames it
// into place; with force, an existing folder at path is replaced.
func writeAtomicDir(path string, force bool, write func(dir string) error) error {
	tmp, err := os.MkdirTemp(filepath.Dir(filepath.Clean(path)), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := write(tmp); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if force {
		if err := os.RemoveAll(path); err != nil {
			os.RemoveAll(tmp)
			return fmt.Errorf("store: %w", err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("store: %w", err)
	}
	return nil
}
