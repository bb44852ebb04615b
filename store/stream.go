package store

// Streamed encoding of float tensors too large for the dedup engine.
//
// The dedup engine holds a whole tensor, its codes and its candidates' while it
// encodes it (several times the tensor's size), so tensors above maxDedup skip it.
// They are still encoded, chunk by chunk as they are read: byte planes (lossless),
// or with --tau a matrix on the grid, or a delta against the --base model's tensor
// of the same name, whose chunks are decoded alongside (the first batch of chunks
// is encoded both ways and decides, for the whole tensor). Memory stays a few
// chunks per core. They never enter the index, so only --base finds them a base.

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
	base, err := im.streamBase(t, lossy)
	if err != nil {
		return id, err
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
	s := &streamer{im: im, rec: rec, t: t, lossy: lossy}
	if err := s.run(io.TeeReader(io.LimitReader(r, t.Size), again), base); err != nil {
		return id, err
	}
	if again.Sum32() != firstCRC.Sum32() {
		return id, errors.New("the file changed while it was being imported")
	}
	if lossy {
		rec.Params = s.gp.encode()
	}
	if !s.delta {
		base = nil
	}
	im.added(id, rec, t, base)
	return id, nil
}

// streamBase returns the --base model's tensor of t's name where a streamed t can
// be a delta against it (same element count; the same dtype for a bit delta; a
// delta only of the kind t would be, in a chain shorter than maxChain), or nil.
func (im *importer) streamBase(t graph.TensorInfo, lossy bool) (*candidate, error) {
	if im.baseModel == nil {
		return nil, nil
	}
	n, _ := graph.NumElements(t.Shape)
	link := EncXOR
	if lossy {
		link = EncGridDelta
	}
	for _, mt := range im.baseModel.Tensors {
		if mt.Name != t.Name || mt.Inline() {
			continue
		}
		rec, err := im.lookup(mt.ID)
		if err != nil || rec == nil {
			return nil, err
		}
		_, _, depth, err := chainRoot(im.lookup, mt.ID, rec)
		if err != nil {
			return nil, err
		}
		_, isFloat := floatTarget(rec.DType)
		switch {
		case numel(rec) != n || !isFloat || !lossy && rec.DType != t.DType:
			return nil, nil
		case rec.Encoding.isDelta() && (rec.Encoding != link || depth >= maxChain):
			return nil, nil
		}
		return &candidate{id: mt.ID, rec: rec}, nil
	}
	return nil, nil
}

// streamer encodes one tensor as it streams in.
type streamer struct {
	im    *importer
	rec   *Record
	t     graph.TensorInfo
	lossy bool
	gp    gridParams // of a grid record
	delta bool       // the payload is a delta against the base given to run

	// the base's chunks of the current batch, pulled in order: bytes for a bit
	// delta, codes for a grid delta
	nextBytes func() ([]byte, error)
	nextCodes func() (*quant.Codes, error)
	baseBytes [][]byte
	baseCodes []*quant.Codes
}

// run reads the tensor's bytes from r a batch of chunks at a time, encodes the
// chunks in parallel and writes them as rec's chunk container, setting rec's
// stored size and pages. With a base, the first batch is encoded both on its own
// and as a delta against the base's chunks, and the smaller decides for the rest.
func (s *streamer) run(r io.Reader, base *candidate) error {
	t, es := s.t, s.t.DType.Size()
	s.gp = gridParams{Tau: gridTau(s.im.opts.Tau, t.DType)}
	if base != nil {
		var stop func()
		if s.lossy {
			s.nextCodes, stop = codeChunkPull(overlay{s.im}, base.id, base.rec, s.gp.Tau)
		} else {
			s.nextBytes, stop = byteChunkPull(overlay{s.im}, base.id, base.rec)
		}
		defer func() { stop() }()
	}
	hr := newTensorHash(t) // of the reconstruction
	step := chunkElems * es
	buf := make([]byte, streamBatch*step)
	s.baseBytes, s.baseCodes = make([][]byte, streamBatch), make([]*quant.Codes, streamBatch)
	w := &pageWriter{im: s.im, rec: s.rec}
	w.Write(newContainer().parts[0])
	decided := base == nil
	for chunk := 0; ; chunk += streamBatch {
		n, err := io.ReadFull(r, buf)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			err = nil
		}
		if err != nil {
			return err
		}
		if n%es != 0 || n < len(buf) && int64(chunk*step+n) != t.Size {
			return readErr(io.ErrUnexpectedEOF, t.Size)
		}
		if n == 0 {
			break
		}
		data := buf[:n]
		k := (n + step - 1) / step
		wantAlone, wantDelta := !decided || !s.delta, !decided || s.delta
		if wantDelta {
			if err := s.pullBase(base.id, data, step); err != nil {
				return err
			}
		}
		// one or both encodings of each chunk: on its own, and against the base
		alone, against := make([][]byte, k), make([][]byte, k)
		_, err = eachChunk(k, func(j int) ([]byte, error) {
			var err error
			alone[j], against[j], err = s.encodeChunk(data[j*step:min((j+1)*step, n)], chunk+j, j, wantAlone, wantDelta)
			return nil, err
		})
		if err != nil {
			return err
		}
		if !decided {
			s.delta = parts(against).size() < parts(alone).size()
			decided = true
		}
		blobs := alone
		if s.delta {
			blobs = against
		}
		for _, b := range blobs {
			w.Write(binary.AppendUvarint(nil, uint64(len(b))))
			w.Write(b)
			if s.lossy {
				s.gp.Width = max(s.gp.Width, quant.BlobWidth(b))
			}
		}
		if s.lossy {
			hr.Write(data) // the reconstruction, which encodeChunk left there
		}
		if w.err != nil {
			return w.err
		}
		s.im.progress(int64(n))
		if n < len(buf) {
			break
		}
	}
	if err := w.close(); err != nil {
		return err
	}
	if s.delta {
		s.rec.Encoding = EncXOR
		if s.lossy {
			s.rec.Encoding = EncGridDelta
		}
	}
	hr.Sum(s.gp.Recon[:0])
	return nil
}

// pullBase pulls the base's chunks for the batch data, of chunks of step bytes.
func (s *streamer) pullBase(bid TensorID, data []byte, step int) error {
	es := s.t.DType.Size()
	for j := 0; j*step < len(data); j++ {
		want := min((j+1)*step, len(data)) - j*step
		if s.lossy {
			c, err := s.nextCodes()
			if err != nil {
				return err
			}
			if len(c.Q)*es != want {
				return corruptf("tensor %s: a chunk of %d elements, want %d", bid.Short(), len(c.Q), want/es)
			}
			s.baseCodes[j] = c
			continue
		}
		b, err := s.nextBytes()
		if err != nil {
			return err
		}
		if len(b) != want {
			return corruptf("tensor %s: a chunk of %d bytes, want %d", bid.Short(), len(b), want)
		}
		s.baseBytes[j] = append(s.baseBytes[j][:0], b...)
	}
	return nil
}

// encodeChunk encodes chunk i of the tensor (part, the batch's chunk j) on its
// own and (with delta) against the base's chunk j. For a grid encoding it leaves
// the chunk's reconstruction in part, for the reconstruction's id.
func (s *streamer) encodeChunk(part []byte, i, j int, alone, delta bool) (a, d []byte, err error) {
	es := s.t.DType.Size()
	if !s.lossy {
		if alone {
			if a, err = quant.LosslessEncode(part, nil, es); err != nil {
				return nil, nil, err
			}
		}
		if delta {
			d, err = quant.LosslessEncodeDiff(part, s.baseBytes[j], es)
		}
		return a, d, err
	}
	target, _ := floatTarget(s.t.DType)
	vals := floatView(part, s.t.DType)
	c, err := quant.QuantizeFor(vals, s.gp.Tau, target)
	if err != nil {
		return nil, nil, err
	}
	rowLen := int(s.t.Shape[len(s.t.Shape)-1])
	first := rowLen - i*chunkElems%rowLen
	if alone {
		if a, err = quant.EncodeRows(c, first, rowLen); err != nil {
			return nil, nil, err
		}
	}
	if delta {
		dc, err := quant.DeltaOver(c, s.baseCodes[j])
		if err != nil {
			return nil, nil, err
		}
		if d, err = quant.EncodeRows(dc, first, rowLen); err != nil {
			return nil, nil, err
		}
	}
	c.Dequantize(vals)
	fromFloat32(part, vals, s.t.DType)
	return a, d, nil
}

// pageWriter cuts a record's payload into rec's pages, written as they fill
// (Write, or readFrom straight into the page), and at close sets rec's stored
// size and page count. With progress, the payload is the tensor's own bytes and
// counts as the import's progress.
type pageWriter struct {
	im       *importer
	rec      *Record
	progress bool
	page     []byte // the page being filled
	pages    int64
	n        int64
	err      error
}

func (w *pageWriter) Write(p []byte) {
	for len(p) > 0 && w.err == nil {
		k := copy(w.room(), p)
		w.filled(k)
		p = p[k:]
	}
}

// readFrom fills pages from r until it ends, and returns how many bytes it read.
func (w *pageWriter) readFrom(r io.Reader) (int64, error) {
	var total int64
	for w.err == nil {
		k, err := io.ReadFull(r, w.room())
		w.filled(k)
		total += int64(k)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return total, err
		}
	}
	return total, w.err
}

// room returns the free part of the page being filled.
func (w *pageWriter) room() []byte {
	if w.page == nil {
		w.page = w.im.pageBuf()[:4]
	}
	return w.page[len(w.page) : int(w.rec.PageSize)+4]
}

// filled takes k bytes written into room, and writes the page once it is full.
func (w *pageWriter) filled(k int) {
	w.page = w.page[:len(w.page)+k]
	if len(w.page) == int(w.rec.PageSize)+4 {
		w.flush()
	}
}

func (w *pageWriter) flush() {
	payload := int64(len(w.page) - 4)
	w.n += payload
	if w.n > w.rec.Size+int64(w.rec.Size>>4)+(1<<20) {
		// far more than the raw bytes (checked against the free space): never
		// for floats, whose planes cost at most a few bytes more than raw
		w.err = errors.New("store: encoded payload grew past the tensor's size")
		return
	}
	w.err = w.im.putPage(w.rec.Blob, uint32(w.pages), w.page)
	w.pages++
	w.page = nil
	if w.progress && w.err == nil {
		w.im.progress(payload)
	}
}

func (w *pageWriter) close() error {
	if w.err == nil && len(w.page) > 4 {
		w.flush()
	}
	w.rec.Stored, w.rec.Pages = w.n, w.pages
	return w.err
}
