package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math"
	"time"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/hnsw"
)

// defaultSmallTensor is the size up to which import reads a tensor into memory once;
// larger tensors are read twice (hash, then pages) so memory stays bounded.
const defaultSmallTensor = 16 << 20

// loadBytes is how many page bytes one Loader takes before it is finished and a new
// one started, so that a failed import never leaves much to clean up.
const loadBytes = 256 << 20

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ImportOptions control Import.
type ImportOptions struct {
	// Ref is the model's "name[:tag]".
	Ref string
	// Force replaces an existing model of the same name and tag.
	Force bool
	// Tau is the per-element error bound: 0 (the default) stores every tensor bit for
	// bit; tau > 0 stores float tensors of two or more dimensions on the grid of step
	// 2 tau, each element within tau of the original (after rounding to its dtype).
	// One-dimensional tensors (biases, norms) and non-float tensors stay exact.
	Tau float64
	// Base, when set, names a stored model ("name[:tag]") whose tensor of the same
	// name is tried as a delta base, besides the index's nearest tensors.
	Base string
	// Progress, when set, is called as tensor bytes are processed.
	Progress func(done, total int64)
}

// CheckTau returns an error unless tau is a usable error bound: finite and >= 0.
func CheckTau(tau float64) error {
	if math.IsNaN(tau) || math.IsInf(tau, 0) || tau < 0 {
		return fmt.Errorf("store: tau must be a finite number >= 0, got %v", tau)
	}
	if tau > 0 && (tau < 1e-30 || tau > 1e30) {
		return fmt.Errorf("store: tau %v is outside [1e-30, 1e30]", tau)
	}
	return nil
}

// ImportResult says what an import stored.
type ImportResult struct {
	Manifest *Manifest
	// NewTensors and NewBytes count tensor values stored for the first time;
	// DedupTensors counts tensors found already stored (or repeated in the model).
	NewTensors, DedupTensors int
	NewBytes                 int64
	// DeltaTensors counts the new tensors stored as deltas against a base;
	// StoredBytes is the payload bytes written for the new tensors.
	DeltaTensors int
	StoredBytes  int64
	// InlineTensors counts the tiny tensors kept in the manifest (see InlineMax).
	InlineTensors int
}

// Import stores the model src under opts.Ref. It writes the new tensors' pages, then
// commits the records, refcounts, graph and manifest in one atomic, synced write; on
// any error (bad input, a full disk, ctx cancelled) it deletes what it wrote and the
// store is as it was. It returns an error wrapping ErrExists when the name is taken
// and opts.Force is off, and one wrapping ErrDiskFull when the disk runs short.
func (s *Store) Import(ctx context.Context, src *graph.Source, opts ImportOptions) (*ImportResult, error) {
	name, tag, err := ParseRef(opts.Ref)
	if err != nil {
		return nil, err
	}
	if err := checkSource(src); err != nil {
		return nil, err
	}
	if err := CheckTau(opts.Tau); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var base *Manifest
	if opts.Base != "" {
		if base, err = getManifest(s.be, opts.Base); err != nil {
			return nil, wrapf(err, "import: base model")
		}
	}

	old, err := getManifest(s.be, name+":"+tag)
	switch {
	case err == nil && !opts.Force:
		return nil, fmt.Errorf("%w: %s:%s (use --force to replace it)", ErrExists, name, tag)
	case err != nil && !errors.Is(err, ErrNotFound):
		return nil, err
	case err != nil:
		old = nil
	}

	im := &importer{s: s, ctx: ctx, src: src, opts: opts, pending: map[TensorID]*Record{}, total: src.TotalBytes(),
		baseModel: base, loaderBlobs: map[uint64]bool{}, touched: map[int64]bool{}, changed: map[int64]map[hnsw.ID]bool{}}
	res, err := im.run(name, tag, old)
	if err != nil {
		im.cleanup()
		return nil, err
	}
	return res, nil
}

// checkSource rejects sources whose tensor list is inconsistent.
func checkSource(src *graph.Source) error {
	seen := make(map[string]bool, len(src.Tensors))
	for _, t := range src.Tensors {
		if seen[t.Name] {
			return fmt.Errorf("store: duplicate tensor name %q", t.Name)
		}
		seen[t.Name] = true
		size, err := graph.ByteSize(t.DType, t.Shape)
		if err != nil {
			return fmt.Errorf("store: tensor %q: %v", t.Name, err)
		}
		if size != t.Size {
			return fmt.Errorf("store: tensor %q: shape %v of %s needs %d bytes, source has %d", t.Name, t.Shape, t.DType, size, t.Size)
		}
	}
	return nil
}

// importer holds the state of one Import.
type importer struct {
	s       *Store
	ctx     context.Context
	src     *graph.Source
	opts    ImportOptions
	pending map[TensorID]*Record // records new or changed by this import
	blobs   []uint64             // blobs written, deleted again on failure
	loader  Loader               // nil until the first new page
	buf     []byte               // one page, reused
	small   []byte               // a whole small tensor, reused
	rv      []float32            // a chunk's reconstruction, reused
	done    int64
	total   int64
	res     ImportResult

	baseModel   *Manifest                  // the --base model, or nil
	loaderBlobs map[uint64]bool            // blobs with pages in the open loader
	touched     map[int64]bool             // indexes changed in memory
	changed     map[int64]map[hnsw.ID]bool // index nodes to write at the commit
}

func (im *importer) run(name, tag string, old *Manifest) (*ImportResult, error) {
	m := &Manifest{
		Name: name, Tag: tag, Format: im.src.Format, Created: time.Now().UTC(),
		Params:   ImportParams{Mode: "lossless"},
		Lineage:  Lineage{Files: im.src.Files},
		Metadata: im.src.Metadata,
		Sharded:  im.src.Sharded,
		Tensors:  make([]ManifestTensor, len(im.src.Tensors)),
	}
	if im.opts.Tau > 0 {
		m.Params = ImportParams{Mode: "lossy", Tau: im.opts.Tau}
	}
	if im.baseModel != nil {
		m.Lineage.Base = im.baseModel.Ref()
	}
	for i, t := range im.src.Tensors {
		mt := ManifestTensor{Name: t.Name, DType: t.DType, Shape: t.Shape, Shard: t.Shard}
		var err error
		if t.Size <= InlineMax {
			mt.Data, err = im.inline(i, t)
		} else {
			mt.ID, err = im.tensor(i, t)
		}
		if err != nil {
			return nil, wrapf(err, "import %s: tensor %q", m.Ref(), t.Name)
		}
		m.Tensors[i] = mt
	}
	if err := im.finishLoad(); err != nil {
		return nil, err
	}
	m.GraphBytes = int64(len(im.src.Graph))

	// The commit: records, refcounts, graph, manifest; the old model's references are
	// released in the same batch.
	if old != nil {
		if err := im.s.releaseLocked(old, im.pending); err != nil {
			return nil, err
		}
	}
	var b Batch
	if err := im.s.writeRecordsLocked(&b, im.pending); err != nil {
		return nil, err
	}
	if err := im.writeIndex(&b); err != nil {
		return nil, err
	}
	var g []byte
	if len(im.src.Graph) > 0 {
		var err error
		if g, err = m.storeGraph(im.src.Graph); err != nil {
			return nil, err
		}
	}
	enc, err := m.encode()
	if err != nil {
		return nil, err
	}
	if g != nil {
		b.Set(graphKey(name, tag), g)
	} else {
		b.Delete(graphKey(name, tag))
	}
	b.Set(manifestKey(name, tag), enc)
	if err := im.ctx.Err(); err != nil {
		return nil, wrapf(err, "import %s", m.Ref())
	}
	if err := im.s.be.Apply(&b, true); err != nil {
		return nil, wrapf(err, "import %s", m.Ref())
	}
	im.res.Manifest = m
	return &im.res, nil
}

// inline reads tiny tensor i, which goes into the manifest.
func (im *importer) inline(i int, t graph.TensorInfo) ([]byte, error) {
	r, err := im.src.Open(i)
	if err != nil {
		return nil, err
	}
	data := make([]byte, t.Size)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, readErr(err, t.Size)
	}
	im.res.InlineTensors++
	im.progress(t.Size)
	return data, nil
}

// tensor stores tensor i (or finds it stored) and returns its id.
func (im *importer) tensor(i int, t graph.TensorInfo) (TensorID, error) {
	if im.dedupable(t) {
		return im.dedupTensor(i, t)
	}
	if im.streamable(t) {
		return im.streamTensor(i, t)
	}
	var data []byte // the whole tensor, for small ones
	var firstCRC hash.Hash32
	var id TensorID
	var err error
	if t.Size <= im.s.smallTensor {
		data, id, err = im.readWhole(i, t)
	} else {
		id, firstCRC, err = im.firstPass(i, t)
	}
	if err != nil {
		return id, err
	}

	if found, err := im.reuse(t, id); err != nil || found {
		return id, err
	}

	rec, err := im.newRecord(t, EncRaw, t.Size, nil)
	if err != nil {
		return id, err
	}
	if data != nil {
		err = im.writePages(rec, bytes.NewReader(data), true)
	} else {
		// Second pass over a large tensor; its CRC must match the first pass's.
		r, oerr := im.src.Open(i)
		if oerr != nil {
			return id, oerr
		}
		again := crc32.New(crcTable)
		if err = im.writePages(rec, io.TeeReader(io.LimitReader(r, t.Size), again), true); err == nil {
			if again.Sum32() != firstCRC.Sum32() {
				err = errors.New("the file changed while it was being imported")
			}
		}
	}
	if err != nil {
		return id, err
	}
	im.added(id, rec, t, nil)
	return id, nil
}

// added counts new record rec (of tensor t, stored under id) in the import,
// and, for a delta, sets its base and the base's reference.
func (im *importer) added(id TensorID, rec *Record, t graph.TensorInfo, base *candidate) {
	if base != nil {
		rec.Base = append([]byte(nil), base.id[:]...)
		base.rec.Refs++
		im.res.DeltaTensors++
	}
	im.pending[id] = rec
	im.res.NewTensors++
	im.res.NewBytes += t.Size
	im.res.StoredBytes += rec.Stored
}

// readWhole reads tensor i whole into the importer's buffer (valid until the
// next tensor) and returns it with its id.
func (im *importer) readWhole(i int, t graph.TensorInfo) ([]byte, TensorID, error) {
	var id TensorID
	r, err := im.src.Open(i)
	if err != nil {
		return nil, id, err
	}
	if int64(cap(im.small)) < t.Size {
		im.small = make([]byte, t.Size)
	}
	data := im.small[:t.Size]
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, id, readErr(err, t.Size)
	}
	h := newTensorHash(t)
	h.Write(data)
	h.Sum(id[:0])
	return data, id, nil
}

// firstPass reads tensor i once, for a large tensor's two-pass import: it returns
// the tensor's id and a CRC of its bytes, which tells whether the second pass read
// the same bytes.
func (im *importer) firstPass(i int, t graph.TensorInfo) (TensorID, hash.Hash32, error) {
	var id TensorID
	r, err := im.src.Open(i)
	if err != nil {
		return id, nil, err
	}
	h, crc := newTensorHash(t), crc32.New(crcTable)
	n, err := io.CopyBuffer(io.MultiWriter(h, crc), io.LimitReader(r, t.Size), im.pageBuf()[4:])
	if err != nil {
		return id, nil, err
	}
	if n != t.Size {
		return id, nil, readErr(io.ErrUnexpectedEOF, t.Size)
	}
	h.Sum(id[:0])
	return id, crc, nil
}

// findStored looks for float tensor t, of exact id, among what is stored: as it
// is, or, where t goes on the grid (lossy: a matrix imported with --tau), as the
// grid record of the same tensor at this tau. It returns the id t is (or is to
// be) stored under, whether t goes on the grid, and whether it was found.
func (im *importer) findStored(t graph.TensorInfo, exact TensorID) (id TensorID, lossy, found bool, err error) {
	lossy = im.opts.Tau > 0 && len(t.Shape) >= 2
	ids := []TensorID{exact}
	if lossy {
		// an exact copy is as good as a grid one
		ids = append(ids, gridID(exact, im.opts.Tau))
	}
	for _, id := range ids {
		if found, err := im.reuse(t, id); err != nil || found {
			return id, lossy, found, err
		}
	}
	return ids[len(ids)-1], lossy, false, nil
}

// dedupTensor stores float tensor i through the dedup engine: exact dedup, then the
// smallest of raw bytes, a new base, or a delta against a similar stored base.
func (im *importer) dedupTensor(i int, t graph.TensorInfo) (TensorID, error) {
	data, id, err := im.readWhole(i, t)
	if err != nil {
		return id, err
	}
	id, lossy, found, err := im.findStored(t, id)
	if err != nil || found {
		return id, err
	}
	if err := im.ctx.Err(); err != nil {
		return id, err
	}

	vals := floatView(data, t.DType)
	cands, err := im.candidates(t.Name, t.DType, vals, lossy)
	if err != nil {
		return id, err
	}
	var e encoded
	if lossy {
		e, err = im.encodeGrid(vals, t, cands)
	} else {
		e, err = im.encodeLossless(data, t.DType, cands)
	}
	if err != nil {
		return id, err
	}

	stored := int64(e.payload.size())
	rec, err := im.newRecord(t, e.enc, stored, e.params)
	if err != nil {
		return id, err
	}
	if err := im.writePages(rec, e.payload.reader(), false); err != nil {
		return id, err
	}
	im.progress(t.Size)
	im.added(id, rec, t, e.base)
	if e.base == nil {
		recon := vals
		if e.recon != nil {
			recon = e.recon
		}
		if err := im.indexBase(id, rec, recon); err != nil {
			return id, err
		}
	}
	return id, nil
}

// newRecord returns the record of a new tensor t whose payload takes stored bytes,
// under a fresh blob, once the disk has room for it.
func (im *importer) newRecord(t graph.TensorInfo, enc Encoding, stored int64, params []byte) (*Record, error) {
	if err := im.checkSpace(stored); err != nil {
		return nil, err
	}
	blob, err := im.s.allocBlobLocked()
	if err != nil {
		return nil, err
	}
	im.blobs = append(im.blobs, blob)
	rec := &Record{
		Encoding: enc, DType: t.DType, Shape: t.Shape, Size: t.Size, Stored: stored,
		Blob: blob, PageSize: DefaultPageSize, Refs: 1, Params: params,
	}
	rec.Pages = (rec.Stored + rec.PageSize - 1) / rec.PageSize
	return rec, nil
}

// checkSpace fails with ErrDiskFull unless n more bytes leave the reserve free.
func (im *importer) checkSpace(n int64) error {
	free, err := im.s.freeBytes()
	if err != nil {
		return err
	}
	if free-n < im.s.reserveBytes {
		return fmt.Errorf("%w: the tensor needs %d bytes, %d are free and %d are kept in reserve", ErrDiskFull, n, free, im.s.reserveBytes)
	}
	return nil
}

// reuse adds a reference to tensor id if it is already stored (or pending) and
// reports whether it was.
func (im *importer) reuse(t graph.TensorInfo, id TensorID) (bool, error) {
	rec, err := im.lookup(id)
	if err != nil || rec == nil {
		return false, err
	}
	rec.Refs++
	im.res.DedupTensors++
	im.progress(t.Size)
	return true, nil
}

// lookup returns the record of id if it is stored or pending, nil if not.
func (im *importer) lookup(id TensorID) (*Record, error) {
	if rec := im.pending[id]; rec != nil {
		return rec, nil
	}
	rec, err := getRecord(im.s.be, id)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	im.pending[id] = rec
	return rec, nil
}

// writePages reads rec.Stored bytes from r into pages of rec's blob. raw says
// the payload is the tensor's own bytes, which then count as progress.
func (im *importer) writePages(rec *Record, r io.Reader, raw bool) error {
	w := &pageWriter{im: im, rec: rec, progress: raw}
	n, err := w.readFrom(io.LimitReader(r, rec.Stored))
	if err == nil && n != rec.Stored {
		err = readErr(io.ErrUnexpectedEOF, rec.Stored)
	}
	if cerr := w.close(); err == nil {
		err = cerr
	}
	return err
}

// putPage writes page p of blob: buf is 4 bytes for its checksum, then the payload.
func (im *importer) putPage(blob uint64, p uint32, buf []byte) error {
	if err := im.ctx.Err(); err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(buf, crc32.Checksum(buf[4:], crcTable))
	if im.loader == nil {
		var err error
		if im.loader, err = im.s.be.NewLoader(); err != nil {
			return err
		}
	}
	if err := im.loader.Set(pageKey(blob, p), buf); err != nil {
		return err
	}
	im.loaderBlobs[blob] = true
	if im.loader.Bytes() >= loadBytes {
		return im.finishLoad()
	}
	return nil
}

// pageBuf returns the importer's page buffer: a CRC and one page of payload.
func (im *importer) pageBuf() []byte {
	if im.buf == nil {
		im.buf = make([]byte, DefaultPageSize+4)
	}
	return im.buf
}

// finishLoad makes the pages loaded so far durable (but unreferenced until the commit).
func (im *importer) finishLoad() error {
	if im.loader == nil {
		return nil
	}
	l := im.loader
	im.loader = nil
	clear(im.loaderBlobs)
	return l.Finish()
}

func (im *importer) progress(n int64) {
	im.done += n
	if im.opts.Progress != nil {
		im.opts.Progress(im.done, im.total)
	}
}

// cleanup deletes the pages of a failed import. It is best effort: what it cannot
// delete stays an orphan that GC removes.
func (im *importer) cleanup() {
	if im.loader != nil {
		im.loader.Abort()
		im.loader = nil
	}
	var b Batch
	for _, blob := range im.blobs {
		start, end := blobRange(blob)
		b.DeleteRange(start, end)
		im.s.baseCodes.drop(blob) // what the cache kept of the import's new bases
	}
	if b.Len() > 0 {
		im.s.be.Apply(&b, false)
	}
	// the in-memory indexes may hold nodes that were never committed: reload them
	for n := range im.touched {
		delete(im.s.indexes, n)
	}
}

// newTensorHash returns a SHA-256 primed with t's dtype and shape (see hashHeader).
func newTensorHash(t graph.TensorInfo) hash.Hash {
	h := sha256.New()
	h.Write(hashHeader(t.DType, t.Shape))
	return h
}

// hashHeader returns what a tensor id hashes before the tensor's bytes (part of the
// format; do not change):
//
//	"neurstore.tensor.v1" | dtype (1 byte) | ndims (uvarint) | dims (uvarint each)
func hashHeader(dt graph.DType, shape []int64) []byte {
	hdr := append([]byte("neurstore.tensor.v1"), byte(dt))
	hdr = binary.AppendUvarint(hdr, uint64(len(shape)))
	for _, d := range shape {
		hdr = binary.AppendUvarint(hdr, uint64(d))
	}
	return hdr
}

func readErr(err error, want int64) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("tensor data ends early (want %d bytes): truncated file?", want)
	}
	return err
}
