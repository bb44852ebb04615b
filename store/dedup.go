package store

// The dedup engine: for each new float tensor, find the most similar stored base with
// the HNSW index of its element count, and keep whichever is smallest of the raw
// bytes, a standalone encoding (a new base) and a delta against that base.
//
// Index keys (part of the format; do not change):
//
//	"h" <element count, 8 bytes BE> <node id, 8 bytes BE>
//	    -> state (1 byte: 1 live, 0 removed) | tensor id (32 bytes) | hnsw node record
//
// A node id is the blob number of the base's record, which is never reused. When a
// base record is deleted its node stays in the graph (other nodes link through it)
// but is marked removed, and searches skip it.

import (
	"encoding/binary"
	"math"
	"runtime"
	"slices"
	"sync"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/hnsw"
	"github.com/neurstore/neurstore/quant"
)

const prefixIndex = 'h'

// Dedup thresholds.
const (
	// minDedupElems: float tensors with fewer elements are kept raw.
	minDedupElems = 64
	// maxDedupBytes: float tensors above this size skip the dedup engine and are
	// encoded on their own as they stream in (stream.go), so import
	// memory stays bounded.
	maxDedupBytes = 1 << 30
	// searchK is how many nodes a lookup asks the index for; rerankK how many of
	// them are compared exactly.
	searchK = 8
	rerankK = 2
)

// tensorIndex is the in-memory HNSW index of one element count.
type tensorIndex struct {
	x    *hnsw.Index
	ids  map[hnsw.ID]TensorID
	dead map[hnsw.ID]bool
}

func indexKey(n int64, node hnsw.ID) []byte {
	k := make([]byte, 17)
	k[0] = prefixIndex
	binary.BigEndian.PutUint64(k[1:], uint64(n))
	binary.BigEndian.PutUint64(k[9:], uint64(node))
	return k
}

func indexRange(n int64) (start, end []byte) {
	return indexKey(n, 0), indexKey(n+1, 0)
}

// indexLocked returns the index of element count n, loading it from the backend the
// first time. The caller holds s.mu.
func (s *Store) indexLocked(n int64) (*tensorIndex, error) {
	if ti := s.indexes[n]; ti != nil {
		return ti, nil
	}
	ti := &tensorIndex{ids: map[hnsw.ID]TensorID{}, dead: map[hnsw.ID]bool{}}
	var recs [][]byte
	start, end := indexRange(n)
	err := s.be.Scan(start, end, func(k, v []byte) error {
		if len(v) < 33 || v[0] > 1 {
			return corruptf("index node %x: bad value", k)
		}
		node := hnsw.ID(binary.BigEndian.Uint64(k[9:]))
		var id TensorID
		copy(id[:], v[1:33])
		ti.ids[node] = id
		if v[0] == 0 {
			ti.dead[node] = true
		}
		recs = append(recs, slices.Clone(v[33:]))
		return nil
	})
	if err != nil {
		return nil, err
	}
	ti.x, err = hnsw.Load(int(n), hnsw.DefaultParams(int(n)), func(yield func([]byte) bool) {
		for _, r := range recs {
			if !yield(r) {
				return
			}
		}
	})
	if err != nil {
		return nil, corruptf("index of %d elements: %v", n, err)
	}
	if s.indexes == nil {
		s.indexes = map[int64]*tensorIndex{}
	}
	s.indexes[n] = ti
	return ti, nil
}

// markRemovedLocked marks the index node of a deleted base record as removed, in b
// and in memory. Records that never had a node are left alone.
func (s *Store) markRemovedLocked(b *Batch, rec *Record) error {
	if _, ok := floatTarget(rec.DType); !ok || rec.Encoding.isDelta() {
		return nil
	}
	n := numel(rec)
	key := indexKey(n, hnsw.ID(rec.Blob))
	v, err := s.be.Get(key)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(v) < 33 {
		return corruptf("index node %x: bad value", key)
	}
	v[0] = 0
	b.Set(key, v)
	if ti := s.indexes[n]; ti != nil {
		ti.dead[hnsw.ID(rec.Blob)] = true
	}
	return nil
}

// overlay reads the backend as this import sees it: records it created or changed
// come from memory, and pages still in the open loader are made visible first.
type overlay struct{ im *importer }

func (o overlay) Get(k []byte) ([]byte, error) {
	im := o.im
	switch {
	case len(k) == 33 && k[0] == prefixRecord:
		var id TensorID
		copy(id[:], k[1:])
		if rec := im.pending[id]; rec != nil {
			return rec.encode(), nil
		}
	case len(k) == 13 && k[0] == prefixPage:
		if im.loaderBlobs[binary.BigEndian.Uint64(k[1:])] {
			if err := im.finishLoad(); err != nil {
				return nil, err
			}
		}
	}
	return im.s.be.Get(k)
}

func (o overlay) Scan(lower, upper []byte, fn func(k, v []byte) error) error {
	return o.im.s.be.Scan(lower, upper, fn)
}

// candidate is a possible base for a new tensor.
type candidate struct {
	id   TensorID
	rec  *Record   // never nil
	vals []float32 // its reconstruction, when it was needed to rank candidates
}

// dedupable reports whether tensor t goes through the dedup engine.
func (im *importer) dedupable(t graph.TensorInfo) bool {
	_, ok := floatTarget(t.DType)
	n, _ := graph.NumElements(t.Shape)
	return ok && n >= minDedupElems && n <= math.MaxInt32 && t.Size <= im.s.maxDedup
}

// closeFactor: index hits farther than this many times the nearest hit's (compact)
// distance are not considered, nor hits farther from the tensor than zero is. A
// fine-tune's base is orders of magnitude closer than any unrelated tensor, so this
// only drops hopeless candidates before they cost a decode.
const closeFactor = 2

// candidates returns the best bases for a tensor of dt with values vals, nearest
// first: the same-named tensor of the --base model, then the index's nearest nodes.
// When more than one qualifies they are ranked by exact distance. The --base
// model's tensor may be a delta itself, of the kind this tensor would be (a grid
// delta for a lossy encoding, a bit delta otherwise), up to maxChain deltas deep:
// a chain, such as a checkpoint against the one before it, or a fine-tune's norm
// against its base's, which is a bit delta against another layer's norm. The
// root base of every candidate is a candidate too. Lossless candidates must have
// dtype dt (a bit delta needs equal element sizes).
func (im *importer) candidates(name string, dt graph.DType, vals []float32, lossy bool) ([]candidate, error) {
	n := int64(len(vals))
	var ids []TensorID
	seen := map[TensorID]bool{}
	add := func(id TensorID, rec *Record) {
		if seen[id] {
			return
		}
		seen[id] = true
		if _, ok := floatTarget(rec.DType); !ok || numel(rec) != n || !lossy && rec.DType != dt {
			return
		}
		ids = append(ids, id)
	}
	consider := func(id TensorID, chain bool) error {
		rec, err := im.lookup(id)
		if err != nil || rec == nil {
			return err
		}
		root, rrec, depth, err := chainRoot(im.lookup, id, rec)
		if err != nil {
			return err
		}
		link := EncXOR
		if lossy {
			link = EncGridDelta
		}
		if chain && rec.Encoding == link && depth < maxChain {
			add(id, rec) // the next link of a chain
		}
		add(root, rrec)
		return nil
	}
	if im.baseModel != nil {
		for _, t := range im.baseModel.Tensors {
			if t.Name == name {
				if err := consider(t.ID, true); err != nil {
					return nil, err
				}
			}
		}
	}
	if finiteAll(vals) {
		ti, err := im.s.indexLocked(n)
		if err != nil {
			return nil, err
		}
		res, err := ti.x.Search(vals, searchK)
		if err != nil {
			return nil, err
		}
		// A base no closer to the tensor than zero is cannot make a smaller delta.
		var energy float64
		for _, x := range vals {
			energy += float64(x) * float64(x)
		}
		nearest := -1.0
		for _, r := range res {
			if ti.dead[r.ID] {
				continue
			}
			if r.Dist > energy {
				break
			}
			if nearest < 0 {
				nearest = r.Dist
			} else if r.Dist > closeFactor*nearest {
				break
			}
			if err := consider(ti.ids[r.ID], false); err != nil {
				return nil, err
			}
		}
	}
	if len(ids) > rerankK {
		ids = ids[:rerankK]
	}
	out := make([]candidate, 0, len(ids))
	for _, id := range ids {
		out = append(out, candidate{id: id, rec: im.pending[id]})
	}
	if len(out) < 2 {
		return out, nil
	}
	dist := make(map[TensorID]float64, len(out))
	for i := range out {
		c := &out[i]
		v, err := wholeValues(overlay{im}, c.id, c.rec)
		if err != nil {
			return nil, wrapf(err, "base %s", c.id.Short())
		}
		c.vals, dist[c.id] = v, sqDist(vals, v)
	}
	slices.SortStableFunc(out, func(a, b candidate) int {
		switch da, db := dist[a.id], dist[b.id]; {
		case da < db:
			return -1
		case da > db:
			return 1
		}
		return 0
	})
	return out, nil
}

// finiteAll reports whether no element of v is NaN or infinite (all exponent
// bits set).
func finiteAll(v []float32) bool {
	for _, x := range v {
		if math.Float32bits(x)&0x7f800000 == 0x7f800000 {
			return false
		}
	}
	return true
}

func sqDist(a, b []float32) float64 {
	var s float64
	for i, x := range a {
		d := float64(x) - float64(b[i])
		s += d * d
	}
	if math.IsNaN(s) {
		return math.Inf(1)
	}
	return s
}

// encoded is one way to store a tensor.
type encoded struct {
	enc     Encoding
	payload parts
	base    *candidate
	params  []byte
	recon   []float32 // a new grid base: its reconstruction (for the index)
}

// size returns the bytes e costs beyond a record's fixed fields: its payload and
// the parameters that grow with the tensor (a low-rank prediction's factors).
func (e encoded) size() int {
	return e.payload.size() + max(len(e.params)-gridParamsLen, 0)
}

// baseStored returns the stored size of candidate c's root base: what a new base
// would cost, about (for a delta in a chain, its own size says nothing of that).
func (im *importer) baseStored(c *candidate) int64 {
	_, root, _, err := chainRoot(im.lookup, c.id, c.rec)
	if err != nil {
		return 0 // never a clear win: both are encoded
	}
	return root.Stored
}

// lowRankBits are the factor precisions a low-rank prediction is tried at.
var lowRankBits = []int{8, 10, 12}

// fitLowRank returns the low-rank prediction quant finds for the delta codes ds
// (the chunks of a tensor of shape), or nil. Factors of fewer bits predict less
// exactly: at tau 1e-4 a merged LoRA adapter did best at 10-12 bits, at 1e-3 at 8.
func fitLowRank(ds []*quant.Codes, shape []int64) *quant.LowRank {
	rows, cols, ok := matrixShape(shape)
	if !ok {
		return nil
	}
	parts := make([][]int64, len(ds))
	for j, c := range ds {
		parts[j] = c.Q
	}
	fit := quant.Fit(parts, rows, cols)
	if fit == nil {
		return nil
	}
	return fit.Choose(parts, lowRankBits)
}

// lowRankResidual subtracts the prediction lr from the delta codes ds (the
// chunks of a matrix) in place, 0 at exceptions, and returns ds: a tensor close
// to low rank needs no second copy of its codes.
func lowRankResidual(ds []*quant.Codes, lr *quant.LowRank) []*quant.Codes {
	pred := make([]int64, min(chunkElems, len(ds[0].Q)))
	for j, c := range ds {
		p := pred[:len(c.Q)]
		clear(p)
		lr.AddTo(p, j*chunkElems)
		for i := range c.Q {
			c.Q[i] -= p[i]
		}
		for _, e := range c.Exceptions {
			c.Q[e.Index] = 0
		}
	}
	return ds
}

// clearWin: a delta at most this fraction of its base's stored size is taken
// without encoding the tensor as a new base to compare: the base is a close
// estimate of what that would cost. Otherwise both are encoded and the smaller
// is kept.
const clearWin = 0.75

// clearEstimate: a delta at most this fraction of quant.PlaneBytes of the
// tensor's own codes is taken without encoding them as a new base, which could
// not win: encoded bases of text-medium and the committed families come within
// 1.5% of the estimate at tau 1e-3 (7% at 1e-2, on small tensors), row groups
// included. A fine-tune at tau 1e-4 (delta about 0.77 of its estimate) skips
// the second encoding this way.
const clearEstimate = 0.85

// clearLossless: a bit delta at most this fraction of quant.LosslessPlaneBytes
// of the tensor's bytes is taken without encoding them as a new base, which
// could not win: on the f32 tensors of text-medium and the committed families
// (4 KiB and up) the planes came to 0.989-1.040 of the estimate. A full
// fine-tune's bit delta is about 0.91 of it, so it skips the second encoding.
const clearLossless = 0.97

// releaseAll gives the code arrays of cs back to quant for reuse (quant.Release).
func releaseAll(cs []*quant.Codes) {
	for _, c := range cs {
		quant.Release(c)
	}
}

// planeBytes is quant.PlaneBytes summed over a tensor's chunks.
func planeBytes(cs []*quant.Codes) float64 {
	var n float64
	for _, c := range cs {
		n += quant.PlaneBytes(c)
	}
	return n
}

// encodeLossless returns the smallest exact encoding of data (elements of dt):
// raw, byte planes, or an XOR delta against a candidate of the same dtype.
func (im *importer) encodeLossless(data []byte, dt graph.DType, cands []candidate) (encoded, error) {
	best := encoded{enc: EncRaw, payload: parts{data}}
	es := dt.Size()
	step := chunkElems * es
	try := func(enc Encoding, c *candidate, base []byte) error {
		blobs, err := eachChunk(max((len(data)+step-1)/step, 1), func(i int) ([]byte, error) {
			lo, hi := i*step, min((i+1)*step, len(data))
			if base == nil {
				return quant.LosslessEncode(data[lo:hi], nil, es)
			}
			return quant.LosslessEncodeDiff(data[lo:hi], base[lo:hi], es)
		})
		if err != nil {
			return err
		}
		w := newContainer()
		for _, b := range blobs {
			w.add(b)
		}
		if p := w.parts; p.size() < best.payload.size() {
			best = encoded{enc: enc, payload: p, base: c}
		}
		return nil
	}
	for i := range cands {
		c := &cands[i]
		if c.rec.DType != dt {
			continue
		}
		base, err := im.baseBytes(c)
		if err != nil {
			return best, wrapf(err, "base %s", c.id.Short())
		}
		if err := try(EncXOR, c, base); err != nil {
			return best, err
		}
	}
	if best.base != nil && float64(best.payload.size()) <= clearWin*float64(best.base.rec.Stored) {
		return best, nil
	}
	if best.base != nil && float64(best.payload.size()) <= clearLossless*quant.LosslessPlaneBytes(data, es) {
		return best, nil
	}
	if err := try(EncPlanes, nil, nil); err != nil {
		return best, err
	}
	return best, nil
}

// encodeGrid returns the smallest grid encoding of vals (from a tensor of dt) at
// tau: a new base, or a delta against one of the candidates.
func (im *importer) encodeGrid(vals []float32, t graph.TensorInfo, cands []candidate) (encoded, error) {
	dt := t.DType
	target, _ := floatTarget(dt)
	tau := gridTau(im.opts.Tau, dt)
	// Every Codes made here is encoded and given back (quant.Release) before
	// this returns: what it returns holds bytes and floats only.
	var codes []*quant.Codes
	defer func() { releaseAll(codes) }()
	for lo := 0; lo < len(vals); lo += chunkElems {
		c, err := quant.QuantizeFor(vals[lo:min(lo+chunkElems, len(vals))], tau, target)
		if err != nil {
			return encoded{}, err
		}
		codes = append(codes, c)
	}
	// The reconstruction's id, whatever the encoding. The whole reconstruction
	// is needed only by a new base (for the index): it is kept from this pass
	// when there is no candidate (the tensor can only be a base), else built if
	// a base wins; deltas hash it chunk by chunk.
	gp := gridParams{Tau: tau}
	var recon []float32
	if len(cands) == 0 {
		recon = make([]float32, len(vals))
	}
	if n := min(chunkElems, len(vals)); cap(im.rv) < n {
		im.rv = make([]float32, n)
	}
	rv := im.rv
	var rb []byte // for floatBytes, where it converts
	if dt != graph.F32 || !littleEndian {
		rb = make([]byte, len(rv)*dt.Size())
	}
	hr := newTensorHash(t)
	for j, c := range codes {
		r := rv[:len(c.Q)]
		if recon != nil {
			r = recon[j*chunkElems : j*chunkElems+len(c.Q)]
		}
		c.Dequantize(r)
		hr.Write(floatBytes(rb, r, dt))
	}
	hr.Sum(gp.Recon[:0])

	// Rows are the last dimension of a matrix (or of a higher-rank tensor);
	// quant codes rows of similar spread together where that pays.
	rowLen := 0
	if len(t.Shape) >= 2 {
		rowLen = int(t.Shape[len(t.Shape)-1])
	}
	encode := func(cs []*quant.Codes) (parts, uint8, error) {
		blobs, err := eachChunk(len(cs), func(i int) ([]byte, error) {
			if rowLen < 1 {
				return quant.Encode(cs[i])
			}
			return quant.EncodeRows(cs[i], rowLen-i*chunkElems%rowLen, rowLen)
		})
		if err != nil {
			return nil, 0, err
		}
		w := newContainer()
		var width uint8
		for _, blob := range blobs {
			width = max(width, quant.BlobWidth(blob))
			w.add(blob)
		}
		return w.parts, width, nil
	}
	var best encoded
	for i := range cands {
		c := &cands[i]
		bc, kept, err := im.gridCodes(c, tau)
		if err != nil {
			return encoded{}, err
		}
		ds := make([]*quant.Codes, len(codes))
		for j := range codes {
			if kept != nil {
				ds[j], err = quant.DeltaNarrow(codes[j], kept[j])
			} else { // bc was decoded for this comparison alone
				ds[j], err = quant.DeltaOver(codes[j], bc[j])
			}
			if err != nil {
				if kept != nil {
					releaseAll(ds)
				} else {
					releaseAll(bc) // ds shares its arrays
				}
				return encoded{}, err
			}
		}
		p, width, err := encode(ds)
		if err != nil {
			releaseAll(ds)
			return encoded{}, err
		}
		dp := gp
		dp.Width = width
		// a delta close to low rank (a merged LoRA adapter) keeps its codes
		// minus an integer low-rank prediction where that is smaller
		if lr := fitLowRank(ds, t.Shape); lr != nil {
			// ds is encoded (p) and no longer needed as it is
			rp, rw, err := encode(lowRankResidual(ds, lr))
			if err != nil {
				return encoded{}, err
			}
			if blob := lr.Encode(); rp.size()+len(blob) < p.size() {
				p, dp.Width, dp.LowRank = rp, rw, blob
			}
		}
		releaseAll(ds) // ds is bc written over, or new arrays
		if best.payload == nil || p.size()+len(dp.LowRank) < best.size() {
			best = encoded{enc: EncGridDelta, payload: p, base: c, params: dp.encode()}
		}
	}
	if best.base != nil && float64(best.size()) <= clearWin*float64(im.baseStored(best.base)) {
		return best, nil
	}
	if best.base != nil && float64(best.size()) <= clearEstimate*planeBytes(codes) {
		return best, nil
	}
	p, width, err := encode(codes)
	if err != nil {
		return encoded{}, err
	}
	if best.payload == nil || p.size() <= best.size() {
		gp.Width = width
		if recon == nil {
			recon = make([]float32, len(vals))
			for j, c := range codes {
				c.Dequantize(recon[j*chunkElems : j*chunkElems+len(c.Q)])
			}
		}
		best = encoded{enc: EncGrid, payload: p, params: gp.encode(), recon: recon}
	}
	return best, nil
}

// gridTau returns the grid's tau for a tensor of dt imported at tau. Half-precision
// tensors use the largest power of two not above tau: on such a grid every
// reconstruction survives the rounding to f16 or bf16 within the bound, while at
// other values of tau close to the dtype's precision many elements could not (and
// would be kept as costly exceptions). It costs at most one bit per element.
func gridTau(tau float64, dt graph.DType) float64 {
	if dt == graph.F32 {
		return tau
	}
	_, e := math.Frexp(tau)
	return math.Ldexp(1, e-1)
}

// gridCodes returns a candidate's codes on the grid of tau (see gridCodesOf),
// from its values where the ranking of candidates decoded them: the caller's
// (cs), or the store's cache's (kept, read only) where it kept them.
func (im *importer) gridCodes(c *candidate, tau float64) (cs []*quant.Codes, kept []*quant.Narrow, err error) {
	k := codeKey{id: c.id, blob: c.rec.Blob, tau: tau}
	if kept := im.s.baseCodes.get(k).codes; kept != nil {
		return nil, kept, nil
	}
	cs, err = gridCodesOf(overlay{im}, c.id, c.rec, tau, c.vals)
	if err != nil {
		return nil, nil, err
	}
	im.s.baseCodes.offer(k, cs)
	return cs, nil, nil
}

// baseBytes returns a candidate's bytes, read only: the store's cache keeps them
// from their second decode on.
func (im *importer) baseBytes(c *candidate) ([]byte, error) {
	k := codeKey{id: c.id, blob: c.rec.Blob}
	if b := im.s.baseCodes.get(k).raw; b != nil {
		return b, nil
	}
	b, err := wholeTensor(overlay{im}, c.id, c.rec)
	if err != nil {
		return nil, err
	}
	im.s.baseCodes.offerRaw(k, b)
	return b, nil
}

// indexBase adds a new base record to the index of its element count; the nodes
// that changed are written at the commit.
func (im *importer) indexBase(id TensorID, rec *Record, vals []float32) error {
	if !finiteAll(vals) {
		return nil
	}
	n := int64(len(vals))
	ti, err := im.s.indexLocked(n)
	if err != nil {
		return err
	}
	im.touched[n] = true
	changed, err := ti.x.Insert(hnsw.ID(rec.Blob), vals)
	if err != nil {
		return err
	}
	ti.ids[hnsw.ID(rec.Blob)] = id
	if im.changed[n] == nil {
		im.changed[n] = map[hnsw.ID]bool{}
	}
	for _, c := range changed {
		im.changed[n][c] = true
	}
	return nil
}

// writeIndex adds the index nodes this import changed to b.
func (im *importer) writeIndex(b *Batch) error {
	for n, nodes := range im.changed {
		ti := im.s.indexes[n]
		for node := range nodes {
			rec, err := ti.x.MarshalNode(node)
			if err != nil {
				return err
			}
			state := byte(1)
			if ti.dead[node] {
				state = 0
			}
			id := ti.ids[node]
			v := make([]byte, 0, 33+len(rec))
			v = append(append(append(v, state), id[:]...), rec...)
			b.Set(indexKey(n, node), v)
		}
	}
	return nil
}

// eachChunk runs encode for chunks 0..n-1 on up to GOMAXPROCS goroutines and
// returns the blobs in order, or the first error.
func eachChunk(n int, encode func(i int) ([]byte, error)) ([][]byte, error) {
	out := make([][]byte, n)
	errs := make([]error, n)
	workers := min(n, runtime.GOMAXPROCS(0))
	if workers <= 1 {
		for i := range out {
			if out[i], errs[i] = encode(i); errs[i] != nil {
				return nil, errs[i]
			}
		}
		return out, nil
	}
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i], errs[i] = encode(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
