package store

// Tensor payload codecs: how the bytes of a record's pages turn back into the tensor.
//
// Every encoding but EncRaw keeps its payload as a chunk container (part of the
// format; do not change):
//
//	+------+---------+----------------------+
//	| 'C'  | version | chunk elems uvarint  |   version 1
//	+------+---------+----------------------+
//	| for each chunk: length uvarint | blob |   ceil(elements / chunk elems) chunks
//	+---------------------------------------+
//
// Chunk i covers elements [i*chunk, min((i+1)*chunk, n)). A delta and its base are
// always cut at the same boundaries, so chunk i of a delta needs only chunk i of its
// base. The blob of a chunk depends on the encoding:
//
//	EncPlanes     quant.LosslessEncode(bytes, nil, element size)
//	EncXOR        quant.LosslessEncodeDiff(bytes, base bytes, element size)
//	EncGrid       quant.Encode(codes on the grid of step 2 tau)
//	EncGridDelta  quant.Encode(codes - base codes)
//
// (quant.EncodeRows for tensors of two or more dimensions, with rows of the last
// dimension; quant.Decode reads both.)
//
// Grid records keep in Params: tau (float64 LE), the id of the reconstructed tensor
// (32 bytes: what a tensor id would be for the bytes export writes), and the widest
// code width of any chunk (1 byte, for display); a grid delta may go on with a
// quant.LowRank blob (its tensor taken as rows of its last dimension), and then
// its chunks hold the delta codes minus that prediction.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"sync"
	"unsafe"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/quant"
)

const (
	containerMagic   = 'C'
	containerVersion = 1
	// chunkElems is how many elements one chunk of an encoded payload holds.
	chunkElems = 1 << 18
	// maxChunkBlob bounds the length of one chunk blob a decoder accepts.
	maxChunkBlob = 64 << 20
)

// gridParams are the Params of an EncGrid or EncGridDelta record.
type gridParams struct {
	Tau   float64
	Recon TensorID // tensor id of the reconstruction
	Width uint8    // widest code width of any chunk
	// LowRank, for a grid delta only, is a quant.LowRank blob: the payload holds
	// the delta codes minus its prediction (see lowRankOf).
	LowRank []byte
}

func (p gridParams) encode() []byte {
	b := binary.LittleEndian.AppendUint64(nil, math.Float64bits(p.Tau))
	b = append(b, p.Recon[:]...)
	b = append(b, p.Width)
	return append(b, p.LowRank...)
}

// gridParamsLen is the length of grid params without a low-rank prediction.
const gridParamsLen = 41

func decodeGridParams(b []byte) (gridParams, error) {
	var p gridParams
	if len(b) < gridParamsLen {
		return p, corruptf("grid parameters of %d bytes, want %d or more", len(b), gridParamsLen)
	}
	p.Tau = math.Float64frombits(binary.LittleEndian.Uint64(b))
	copy(p.Recon[:], b[8:40])
	p.Width = b[40]
	if len(b) > gridParamsLen {
		p.LowRank = b[gridParamsLen:]
	}
	if !(p.Tau > 0) || math.IsInf(p.Tau, 0) {
		return p, corruptf("grid record with tau %v", p.Tau)
	}
	return p, nil
}

// matrixShape returns the rows and columns a tensor of shape is coded as: rows
// of its last dimension. ok is false for fewer than two dimensions.
func matrixShape(shape []int64) (rows, cols int, ok bool) {
	if len(shape) < 2 {
		return 0, 0, false
	}
	n, err := graph.NumElements(shape)
	if err != nil || shape[len(shape)-1] <= 0 {
		return 0, 0, false
	}
	cols = int(shape[len(shape)-1])
	return int(n) / cols, cols, true
}

// lowRankOf returns the low-rank prediction of grid delta id (record rec, its
// params gp), or nil when it has none.
func lowRankOf(id TensorID, rec *Record, gp gridParams) (*quant.LowRank, error) {
	if len(gp.LowRank) == 0 {
		return nil, nil
	}
	rows, cols, ok := matrixShape(rec.Shape)
	if !ok || rec.Encoding != EncGridDelta {
		return nil, corruptf("tensor %s: a low-rank prediction on a %s record of shape %v", id.Short(), rec.Encoding, rec.Shape)
	}
	lr, err := quant.DecodeLowRank(gp.LowRank, rows, cols)
	if err != nil {
		return nil, corruptf("tensor %s: low-rank prediction: %v", id.Short(), err)
	}
	return lr, nil
}

// decodeGridChunk decodes chunk i (elements lo..hi) of grid record id at tau,
// adding lr's prediction when lr is not nil.
func decodeGridChunk(id TensorID, i int, lo, hi int64, blob []byte, tau float64, lr *quant.LowRank) (*quant.Codes, error) {
	c, err := quant.Decode(blob, int(hi-lo))
	if err != nil {
		return nil, corruptf("tensor %s: chunk %d: %v", id.Short(), i, err)
	}
	if int64(len(c.Q)) != hi-lo || c.Tau != tau {
		return nil, corruptf("tensor %s: chunk %d has %d codes at tau %v, want %d at %v", id.Short(), i, len(c.Q), c.Tau, hi-lo, tau)
	}
	if lr != nil {
		lr.AddTo(c.Q, int(lo))
		for _, e := range c.Exceptions {
			c.Q[e.Index] = 0
		}
	}
	return c, nil
}

// gridID is the id of the record holding tensor exact (its exact id) on the grid of
// tau: importing the same tensor at the same tau finds it again.
func gridID(exact TensorID, tau float64) TensorID {
	h := sha256.New()
	h.Write([]byte("neurstore.grid.v1"))
	h.Write(exact[:])
	binary.Write(h, binary.LittleEndian, math.Float64bits(tau))
	var id TensorID
	h.Sum(id[:0])
	return id
}

// floatTarget returns the quantization target of a float dtype, and false for every
// other dtype (which the grid and the delta codecs do not handle).
func floatTarget(dt graph.DType) (quant.Target, bool) {
	switch dt {
	case graph.F32:
		return quant.TargetF32, true
	case graph.F16:
		return quant.TargetF16, true
	case graph.BF16:
		return quant.TargetBF16, true
	}
	return 0, false
}

// floatView returns data (elements of float dtype dt) as float32 values: the same
// memory for f32 on a little-endian machine, else a converted copy.
func floatView(data []byte, dt graph.DType) []float32 {
	n := len(data) / dt.Size()
	if dt == graph.F32 && littleEndian && n > 0 && uintptr(unsafe.Pointer(&data[0]))%4 == 0 {
		return unsafe.Slice((*float32)(unsafe.Pointer(&data[0])), n)
	}
	v := make([]float32, n)
	toFloat32(v, data, dt)
	return v
}

var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// toFloat32 converts little-endian elements of float dtype dt into dst.
func toFloat32(dst []float32, src []byte, dt graph.DType) {
	t, ok := floatTarget(dt)
	if !ok {
		panic("store: toFloat32 on " + dt.String())
	}
	t.Decode(dst, src)
}

// fromFloat32 writes src as little-endian elements of float dtype dt (rounding to
// nearest even).
func fromFloat32(dst []byte, src []float32, dt graph.DType) {
	t, ok := floatTarget(dt)
	if !ok {
		panic("store: fromFloat32 on " + dt.String())
	}
	t.Encode(dst, src)
}

// floatBytes returns src as little-endian elements of float dtype dt: src's own
// memory for f32 on a little-endian machine (valid while src is), else written
// into buf, which must hold them.
func floatBytes(buf []byte, src []float32, dt graph.DType) []byte {
	if dt == graph.F32 && littleEndian {
		if len(src) == 0 {
			return nil
		}
		return unsafe.Slice((*byte)(unsafe.Pointer(&src[0])), 4*len(src))
	}
	b := buf[:len(src)*dt.Size()]
	fromFloat32(b, src, dt)
	return b
}

// containerWriter builds a chunk container.
// The pieces are kept as they are and written to pages one after the other, never
// joined into one slice (for a large tensor that copy costs as much as encoding).
type containerWriter struct {
	parts parts
}

func newContainer() *containerWriter {
	return &containerWriter{parts: parts{binary.AppendUvarint([]byte{containerMagic, containerVersion}, chunkElems)}}
}

func (w *containerWriter) add(blob []byte) {
	w.parts = append(w.parts, binary.AppendUvarint(nil, uint64(len(blob))), blob)
}

// parts is a payload held as consecutive pieces.
type parts [][]byte

func (p parts) size() int {
	n := 0
	for _, b := range p {
		n += len(b)
	}
	return n
}

func (p parts) reader() io.Reader {
	rs := make([]io.Reader, len(p))
	for i, b := range p {
		rs[i] = bytes.NewReader(b)
	}
	return io.MultiReader(rs...)
}

// pageReader reads a record's payload page by page, checking every page's checksum.
type pageReader struct {
	r   Reader
	id  TensorID
	rec *Record
	p   int64
	cur []byte
}

func (pr *pageReader) Read(b []byte) (int, error) {
	for len(pr.cur) == 0 {
		if pr.p >= pr.rec.Pages {
			return 0, io.EOF
		}
		v, err := pr.r.Get(pageKey(pr.rec.Blob, uint32(pr.p)))
		if err != nil {
			if isNotFound(err) {
				return 0, corruptf("tensor %s: page %d of %d is missing", pr.id.Short(), pr.p, pr.rec.Pages)
			}
			return 0, err
		}
		if err := checkPage(pr.id, pr.rec, pr.p, v); err != nil {
			return 0, err
		}
		pr.cur = v[4:]
		pr.p++
	}
	n := copy(b, pr.cur)
	pr.cur = pr.cur[n:]
	return n, nil
}

// chunks calls fn with each chunk blob of an encoded record's payload, in order.
// The blob is valid only during the call.
func chunks(r Reader, id TensorID, rec *Record, fn func(i int, lo, hi int64, blob []byte) error) error {
	n, err := graph.NumElements(rec.Shape)
	if err != nil {
		return corruptf("tensor %s: %v", id.Short(), err)
	}
	cr := chunkReaders.Get().(*chunkReader)
	defer cr.release()
	br := cr.br
	br.Reset(&pageReader{r: r, id: id, rec: rec})
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return payloadErr(id, err)
	}
	if hdr[0] != containerMagic || hdr[1] != containerVersion {
		return corruptf("tensor %s: payload is not a version %d chunk container", id.Short(), containerVersion)
	}
	ce, err := binary.ReadUvarint(br)
	if err != nil {
		return payloadErr(id, err)
	}
	if ce != chunkElems {
		return corruptf("tensor %s: chunks of %d elements, want %d", id.Short(), ce, chunkElems)
	}
	blob := cr.blob[:0]
	defer func() { cr.blob = blob }()
	for i, lo := 0, int64(0); lo < n || i == 0; i, lo = i+1, lo+chunkElems {
		hi := min(lo+chunkElems, n)
		l, err := binary.ReadUvarint(br)
		if err != nil {
			return payloadErr(id, err)
		}
		if l > maxChunkBlob {
			return corruptf("tensor %s: chunk %d of %d bytes", id.Short(), i, l)
		}
		if uint64(cap(blob)) < l {
			blob = make([]byte, l)
		}
		blob = blob[:l]
		if _, err := io.ReadFull(br, blob); err != nil {
			return payloadErr(id, err)
		}
		if err := fn(i, lo, hi, blob); err != nil {
			return err
		}
		if n == 0 {
			break
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return corruptf("tensor %s: payload runs past its last chunk", id.Short())
	}
	return nil
}

// chunkReader is what chunks reads a payload with: a 64 KiB buffer over its
// pages and room for one chunk blob. Reads of many small records (a model's
// load, an import's bases) reuse them instead of allocating both each time.
type chunkReader struct {
	br   *bufio.Reader
	blob []byte
}

var chunkReaders = sync.Pool{New: func() any { return &chunkReader{br: bufio.NewReaderSize(nil, 1<<16)} }}

// release gives cr back for reuse; a blob room above 4 MiB is dropped.
func (cr *chunkReader) release() {
	cr.br.Reset(nil)
	if cap(cr.blob) > 4<<20 {
		cr.blob = nil
	}
	chunkReaders.Put(cr)
}

func payloadErr(id TensorID, err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return corruptf("tensor %s: payload ends early", id.Short())
	}
	return err
}

// readTensor writes the bytes of tensor id (its record rec) to w in its dtype,
// decoding whatever encoding it has. emit is called with consecutive pieces.
func readTensor(r Reader, id TensorID, rec *Record, emit func([]byte) error) error {
	switch rec.Encoding {
	case EncRaw:
		pr := &pageReader{r: r, id: id, rec: rec}
		for pr.p < rec.Pages {
			if _, err := pr.Read(nil); err != nil && err != io.EOF {
				return err
			}
			if err := emit(pr.cur); err != nil {
				return err
			}
			pr.cur = nil
		}
		return nil
	case EncPlanes, EncXOR:
		var base func() ([]byte, error)
		if rec.Encoding == EncXOR {
			next, stop, err := baseByteChunks(r, id, rec)
			if err != nil {
				return err
			}
			defer stop()
			base = next
		}
		es := int64(rec.DType.Size())
		return chunks(r, id, rec, func(i int, lo, hi int64, blob []byte) error {
			var b []byte
			if base != nil {
				var err error
				if b, err = base(); err != nil {
					return err
				}
				if int64(len(b)) != (hi-lo)*es {
					return corruptf("tensor %s: chunk %d: its base's chunk has %d bytes, want %d", id.Short(), i, len(b), (hi-lo)*es)
				}
			}
			out, err := quant.LosslessDecode(blob, b, int((hi-lo)*es))
			if err != nil {
				return corruptf("tensor %s: chunk %d: %v", id.Short(), i, err)
			}
			if int64(len(out)) != (hi-lo)*es {
				return corruptf("tensor %s: chunk %d holds %d bytes, want %d", id.Short(), i, len(out), (hi-lo)*es)
			}
			return emit(out)
		})
	case EncGrid, EncGridDelta:
		vals := make([]float32, min(chunkElems, numel(rec)))
		out := make([]byte, len(vals)*rec.DType.Size())
		return gridCodeChunks(r, id, rec, func(c *quant.Codes) error {
			v := vals[:len(c.Q)]
			c.Dequantize(v)
			return emit(floatBytes(out, v, rec.DType))
		})
	}
	return corruptf("tensor %s: unknown encoding %d", id.Short(), uint8(rec.Encoding))
}

// Decoding a delta streams its base chunk by chunk alongside its own chunks (a
// delta and its base are cut at the same boundaries), so that no decode holds a
// whole base, nor a whole chain of them.

// gridCodeChunks calls fn with the codes of grid record rec (of id) on its grid,
// chunk by chunk: a grid base's own codes, or a grid delta's plus its base's (its
// low-rank prediction added back).
func gridCodeChunks(r Reader, id TensorID, rec *Record, fn func(c *quant.Codes) error) error {
	return gridChunks(r, id, rec, true, fn)
}

// gridChunks is gridCodeChunks; without withBase, a grid delta's chunks are its
// own codes (with its low-rank prediction), not added to its base's.
func gridChunks(r Reader, id TensorID, rec *Record, withBase bool, fn func(c *quant.Codes) error) error {
	gp, err := decodeGridParams(rec.Params)
	if err != nil {
		return fmt.Errorf("tensor %s: %w", id.Short(), err)
	}
	if _, ok := floatTarget(rec.DType); !ok {
		return corruptf("tensor %s: grid record of dtype %s", id.Short(), rec.DType)
	}
	lr, err := lowRankOf(id, rec, gp)
	if err != nil {
		return err
	}
	var base func() (*quant.Codes, error)
	if rec.Encoding == EncGridDelta && withBase {
		next, stop, err := baseCodeChunks(r, id, rec, gp.Tau)
		if err != nil {
			return err
		}
		defer stop()
		base = next
	}
	return chunks(r, id, rec, func(i int, lo, hi int64, blob []byte) error {
		c, err := decodeGridChunk(id, i, lo, hi, blob, gp.Tau, lr)
		if err != nil {
			return err
		}
		if base != nil {
			b, err := base()
			if err != nil {
				return err
			}
			if c, err = c.AddBase(b); err != nil {
				return corruptf("tensor %s: chunk %d: %v", id.Short(), i, err)
			}
		}
		return fn(c)
	})
}

// errStopped ends a chunk iteration whose consumer stopped pulling.
var errStopped = errors.New("store: stopped")

// pull turns a push iteration of chunks into a pull: next returns the next chunk
// (corruption once there is none), stop ends the iteration.
func pull[T any](id TensorID, seq func(yield func(T) bool) error) (next func() (T, error), stop func()) {
	var failed error
	n, stop := iter.Pull(func(yield func(T) bool) {
		if err := seq(yield); err != nil && err != errStopped {
			failed = err
		}
	})
	next = func() (T, error) {
		v, ok := n()
		if !ok {
			if failed != nil {
				return v, failed
			}
			return v, corruptf("tensor %s: its base has fewer chunks", id.Short())
		}
		return v, nil
	}
	return next, stop
}

// baseByteChunks returns a pull over the reconstruction of rec's base (of rec's
// dtype), chunk by chunk. A chunk is valid until the next call.
func baseByteChunks(r Reader, id TensorID, rec *Record) (next func() ([]byte, error), stop func(), err error) {
	bid, brec, err := loadBase(r, id, rec)
	if err != nil {
		return nil, nil, err
	}
	if brec.DType != rec.DType {
		return nil, nil, corruptf("tensor %s: XOR delta of %s against a %s base", id.Short(), rec.DType, brec.DType)
	}
	next, stop = byteChunkPull(r, bid, brec)
	return next, stop, nil
}

// byteChunkPull returns a pull over the reconstruction of record rec (of id),
// chunk by chunk. A chunk is valid until the next call.
func byteChunkPull(r Reader, id TensorID, rec *Record) (next func() ([]byte, error), stop func()) {
	return pull(id, func(yield func([]byte) bool) error {
		return byteChunks(r, id, rec, func(b []byte) error {
			if !yield(b) {
				return errStopped
			}
			return nil
		})
	})
}

// baseCodeChunks returns a pull over the codes on the grid of tau that grid delta
// rec adds to, chunk by chunk (see recordCodes).
func baseCodeChunks(r Reader, id TensorID, rec *Record, tau float64) (next func() (*quant.Codes, error), stop func(), err error) {
	bid, brec, err := loadBase(r, id, rec)
	if err != nil {
		return nil, nil, err
	}
	next, stop = codeChunkPull(r, bid, brec, tau)
	return next, stop, nil
}

// codeChunkPull returns a pull over recordCodes.
func codeChunkPull(r Reader, id TensorID, rec *Record, tau float64) (next func() (*quant.Codes, error), stop func()) {
	return pull(id, func(yield func(*quant.Codes) bool) error {
		return recordCodes(r, id, rec, tau, func(c *quant.Codes) error {
			if !yield(c) {
				return errStopped
			}
			return nil
		})
	})
}

// recordCodes calls fn with the codes of float record rec (of id) on the grid of
// tau, chunk by chunk: its own codes when it is a grid record of that tau (a grid
// delta's added to its base's), else its reconstruction put on the grid. These
// are the codes a grid delta against rec adds to.
func recordCodes(r Reader, id TensorID, rec *Record, tau float64, fn func(*quant.Codes) error) error {
	if _, ok := floatTarget(rec.DType); !ok {
		return corruptf("tensor %s: a grid base of dtype %s", id.Short(), rec.DType)
	}
	if rec.Encoding.Lossy() {
		gp, err := decodeGridParams(rec.Params)
		if err != nil {
			return fmt.Errorf("tensor %s: %w", id.Short(), err)
		}
		if gp.Tau == tau {
			return gridCodeChunks(r, id, rec, fn)
		}
	}
	vals := make([]float32, min(chunkElems, numel(rec)))
	return byteChunks(r, id, rec, func(b []byte) error {
		v := vals[:len(b)/rec.DType.Size()]
		toFloat32(v, b, rec.DType)
		c, err := quant.Quantize(v, tau)
		if err != nil {
			return err
		}
		return fn(c)
	})
}

// byteChunks calls fn with the reconstruction of record rec (of id) in pieces of
// chunkElems elements (the last one shorter), whatever pieces readTensor emits.
func byteChunks(r Reader, id TensorID, rec *Record, fn func([]byte) error) error {
	size := chunkElems * rec.DType.Size()
	buf := make([]byte, 0, min(int64(size), rec.Size))
	err := readTensor(r, id, rec, func(b []byte) error {
		// encoded records emit whole chunks: those go on as they are
		for len(buf) == 0 && len(b) >= size {
			if err := fn(b[:size]); err != nil {
				return err
			}
			b = b[size:]
		}
		for len(b) > 0 {
			k := min(len(b), size-len(buf))
			buf = append(buf, b[:k]...)
			b = b[k:]
			if len(buf) == size {
				if err := fn(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
		}
		return nil
	})
	if err == nil && len(buf) > 0 {
		err = fn(buf)
	}
	return err
}

func numel(rec *Record) int64 {
	n, _ := graph.NumElements(rec.Shape)
	return n
}

// maxChain bounds a chain of deltas: a delta's base may be a delta of the same
// encoding (a grid delta on the same grid, or a bit delta) whose own chain is at
// most maxChain-1 deltas long, so that decoding one tensor decodes at most
// maxChain deltas.
const maxChain = 8

// chainRoot follows record rec (of id) through its bases, read with get, to the
// base at the end of its chain, and returns it with how many deltas led there: 0
// for a base, 1 for a delta against a base, more for a chain of deltas.
// Deeper than maxChain (only corrupt records, or a cycle) is corruption, and so is
// a missing base.
func chainRoot(get func(TensorID) (*Record, error), id TensorID, rec *Record) (TensorID, *Record, int, error) {
	d := 0
	for ; rec.Encoding.isDelta(); d++ {
		if d >= maxChain {
			return id, nil, d, corruptf("tensor %s: a chain of deltas deeper than %d", id.Short(), maxChain)
		}
		child := id
		copy(id[:], rec.Base)
		var err error
		if rec, err = get(id); err != nil {
			return id, nil, d, err
		}
		if rec == nil {
			return id, nil, d, corruptf("tensor %s: its base %s is missing", child.Short(), id.Short())
		}
	}
	return id, rec, d, nil
}

// recordGetter reads records from r, for chainRoot.
func recordGetter(r Reader) func(TensorID) (*Record, error) {
	return func(id TensorID) (*Record, error) { return getRecord(r, id) }
}

// loadBase returns the record of rec's base, which may itself be a delta only of
// rec's encoding (a chain), within maxChain.
func loadBase(r Reader, id TensorID, rec *Record) (TensorID, *Record, error) {
	var bid TensorID
	if len(rec.Base) != len(bid) {
		return bid, nil, corruptf("tensor %s: delta without a base", id.Short())
	}
	copy(bid[:], rec.Base)
	brec, err := getRecord(r, bid)
	if err != nil {
		if isNotFound(err) {
			return bid, nil, corruptf("tensor %s: its base %s is missing", id.Short(), bid.Short())
		}
		return bid, nil, err
	}
	if brec.Encoding.isDelta() {
		if brec.Encoding != rec.Encoding {
			return bid, nil, corruptf("tensor %s: its base %s is a delta of another kind", id.Short(), bid.Short())
		}
		if _, _, _, err := chainRoot(recordGetter(r), bid, brec); err != nil {
			return bid, nil, fmt.Errorf("tensor %s: %w", id.Short(), err)
		}
	}
	if numel(brec) != numel(rec) {
		return bid, nil, corruptf("tensor %s: base %s has another element count", id.Short(), bid.Short())
	}
	return bid, brec, nil
}

// wholeTensor returns the reconstruction of a tensor in one slice.
func wholeTensor(r Reader, id TensorID, rec *Record) ([]byte, error) {
	out := make([]byte, 0, rec.Size)
	err := readTensor(r, id, rec, func(b []byte) error {
		if int64(len(out)+len(b)) > rec.Size {
			return corruptf("tensor %s: decodes to more than %d bytes", id.Short(), rec.Size)
		}
		out = append(out, b...)
		return nil
	})
	if err == nil && int64(len(out)) != rec.Size {
		err = corruptf("tensor %s: decodes to %d bytes, want %d", id.Short(), len(out), rec.Size)
	}
	return out, err
}

// wholeValues returns the reconstruction of a float tensor as float32 values.
func wholeValues(r Reader, id TensorID, rec *Record) ([]float32, error) {
	b, err := wholeTensor(r, id, rec)
	if err != nil {
		return nil, err
	}
	v := make([]float32, numel(rec))
	toFloat32(v, b, rec.DType)
	return v, nil
}

// gridCodesOf returns record rec's codes on the grid of tau, one Codes a chunk
// (see recordCodes). vals, when the caller has decoded rec already, is put on
// the grid instead of decoding rec again.
func gridCodesOf(r Reader, id TensorID, rec *Record, tau float64, vals []float32) ([]*quant.Codes, error) {
	var out []*quant.Codes
	if vals != nil && !rec.Encoding.Lossy() {
		for lo := 0; lo < len(vals); lo += chunkElems {
			c, err := quant.Quantize(vals[lo:min(lo+chunkElems, len(vals))], tau)
			if err != nil {
				return nil, err
			}
			out = append(out, c)
		}
		return out, nil
	}
	err := recordCodes(r, id, rec, tau, func(c *quant.Codes) error {
		out = append(out, c)
		return nil
	})
	return out, err
}

// Storage says how a stored tensor is kept.
type Storage struct {
	Encoding Encoding  `json:"encoding"`
	Base     *TensorID `json:"base,omitempty"` // the base of a delta
	Tau      float64   `json:"tau,omitempty"`  // grid encodings: the error bound
	Width    int       `json:"width,omitempty"`
	Stored   int64     `json:"stored_bytes"` // payload bytes
	Refs     int64     `json:"refs"`
	// Rank and FactorBytes describe a grid delta's low-rank prediction (its
	// factors are kept in the record, beside the payload of the rest).
	Rank        int   `json:"low_rank,omitempty"`
	FactorBytes int64 `json:"factor_bytes,omitempty"`
}

// MarshalText implements encoding.TextMarshaler.
func (e Encoding) MarshalText() ([]byte, error) { return []byte(e.String()), nil }

// Storage returns how tensor id is stored.
func (s *Store) Storage(id TensorID) (*Storage, error) {
	rec, err := getRecord(s.be, id)
	if err != nil {
		return nil, err
	}
	st := &Storage{Encoding: rec.Encoding, Stored: rec.Stored, Refs: rec.Refs}
	if rec.Encoding.isDelta() {
		var b TensorID
		copy(b[:], rec.Base)
		st.Base = &b
	}
	if rec.Encoding.Lossy() {
		gp, err := decodeGridParams(rec.Params)
		if err != nil {
			return nil, fmt.Errorf("tensor %s: %w", id.Short(), err)
		}
		st.Tau, st.Width = gp.Tau, int(gp.Width)
		lr, err := lowRankOf(id, rec, gp)
		if err != nil {
			return nil, err
		}
		if lr != nil {
			st.Rank, st.FactorBytes = lr.Rank, int64(len(gp.LowRank))
		}
	}
	return st, nil
}
