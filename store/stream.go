package store

// Streamed encoding of float tensors too large for the dedup engine.
//
// The dedup engine holds a whole tensor, its codes and its candidates' while it
// encodes it (several times the tensor's size), so tensors above maxDedup skip it.
// They are still encoded, chunk by chunk as they are read, on their own: byte
// planes (lossless), or with --tau a matrix on the grid. Memory stays a few chunks
// per core. They are never deltas and never enter the index.

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/quant"
)

// streamBatch is how many chunks are read and encoded (in parallel) at a time.
const streamBatch = 8

// streamable reports whether t is a float tensor that goes to streamTensor: one
// the dedup engine would take but for its size.
func (im *importer) streamable(t graph.TensorInfo) bool {
	_, ok := floatTarget(t.DType)
	n, _ := graph.NumElements(t.Shape)
	return ok && n >= minDedupElems && t.Size > im.s.maxDedup
}

// streamTensor stores float tensor i, read twice: once for its id, then chunk by
// chunk, each chunk encoded and written to pages as it comes. A CRC of both
// passes tells whether the file changed in between.
func (im *importer) streamTensor(i int, t graph.TensorInfo) (TensorID, error) {
	id, firstCRC, err := im.firstPass(i, t)
	if err != nil {
		return id, err
	}
	id, lossy, found, err := im.findStored(t, id)
	if err != nil || found {
		return id, err
	}

	enc := EncPlanes
	if lossy {
		enc = EncGrid
	}
	// The payload's size is known only at the end; raw size is the bound checked.
	rec, err := im.newRecord(t, enc, t.Size, nil)
	if err != nil {
		return id, err
	}
	r, err := im.src.Open(i)
	if err != nil {
		return id, err
	}
	again := crc32.New(crcTable)
	gp, err := im.streamChunks(rec, t, io.TeeReader(io.LimitReader(r, t.Size), again), lossy)
	if err != nil {
		return id, err
	}
	if again.Sum32() != firstCRC.Sum32() {
		return id, errors.New("the file changed while it was being imported")
	}
	if lossy {
		rec.Params = gp.encode()
	}
	im.pending[id] = rec
	im.res.NewTensors++
	im.res.NewBytes += t.Size
	im.res.StoredBytes += rec.Stored
	return id, nil
}

// streamChunks reads t's bytes from r a batch of chunks at a time, encodes the
// chunks in parallel and writes them as rec's chunk container, setting rec's
// stored size and pages. For a grid record it returns the grid parameters.
func (im *importer) streamChunks(rec *Record, t graph.TensorInfo, r io.Reader, lossy bool) (gridParams, error) {
	es := t.DType.Size()
	target, _ := floatTarget(t.DType)
	tau := gridTau(im.opts.Tau, t.DType)
	gp := gridParams{Tau: tau}
	rowLen := int(t.Shape[len(t.Shape)-1])
	hr := newTensorHash(t) // of the reconstruction
	step := chunkElems * es
	buf := make([]byte, streamBatch*step)
	w := &pageWriter{im: im, rec: rec}
	w.Write(newContainer().parts[0])
	for chunk := 0; ; chunk += streamBatch {
		n, err := io.ReadFull(r, buf)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			err = nil
		}
		if err != nil {
			return gp, err
		}
		if n%es != 0 || n < len(buf) && int64(chunk*step+n) != t.Size {
			return gp, readErr(io.ErrUnexpectedEOF, t.Size)
		}
		if n == 0 {
			break
		}
		data := buf[:n]
		blobs, err := eachChunk((n+step-1)/step, func(j int) ([]byte, error) {
			part := data[j*step : min((j+1)*step, n)]
			if !lossy {
				return quant.LosslessEncode(part, nil, es)
			}
			vals := floatView(part, t.DType)
			c, err := quant.QuantizeFor(vals, tau, target)
			if err != nil {
				return nil, err
			}
			// the chunk's bytes (read and checked) become its reconstruction's,
			// for the reconstruction's id
			c.Dequantize(vals)
			fromFloat32(part, vals, t.DType)
			first := (chunk + j) * chunkElems % rowLen
			return quant.EncodeRows(c, rowLen-first, rowLen)
		})
		if err != nil {
			return gp, err
		}
		for _, b := range blobs {
			w.Write(binary.AppendUvarint(nil, uint64(len(b))))
			w.Write(b)
			if lossy {
				gp.Width = max(gp.Width, quant.BlobWidth(b))
			}
		}
		if lossy {
			hr.Write(data)
		}
		if w.err != nil {
			return gp, w.err
		}
		im.progress(int64(n))
		if n < len(buf) {
			break
		}
	}
	if err := w.close(); err != nil {
		return gp, err
	}
	hr.Sum(gp.Recon[:0])
	return gp, nil
}

// pageWriter cuts what is written to it into rec's pages, writes them as they
// fill, and at close sets rec's stored size and page count.
type pageWriter struct {
	im    *importer
	rec   *Record
	page  []byte // the page being filled
	pages int64
	n     int64
	err   error
}

func (w *pageWriter) Write(p []byte) {
	for len(p) > 0 && w.err == nil {
		if w.page == nil {
			w.page = w.im.pageBuf()[:4]
		}
		k := min(len(p), int(w.rec.PageSize)+4-len(w.page))
		w.page = append(w.page, p[:k]...)
		p = p[k:]
		if len(w.page) == int(w.rec.PageSize)+4 {
			w.flush()
		}
	}
}

func (w *pageWriter) flush() {
	payload := int64(len(w.page) - 4)
	w.n += payload
	if w.n > w.rec.Size+int64(w.rec.Size>>4)+(1<<20) {
		// far more than the raw bytes (checked against the free space): never
		// for floats, whose planes cost at most a few bytes more than raw
		w.err = errors.New("store: streamed encoding grew past the tensor's size")
		return
	}
	w.err = w.im.putPage(w.rec.Blob, uint32(w.pages), w.page)
	w.pages++
	w.page = nil
}

func (w *pageWriter) close() error {
	if w.err == nil && len(w.page) > 4 {
		w.flush()
	}
	w.rec.Stored, w.rec.Pages = w.n, w.pages
	return w.err
}
