package store

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"maps"
	"slices"
	"sort"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/hnsw"
)

// VerifyReport is what Verify found.
type VerifyReport struct {
	Models, Tensors, Pages int
	Bytes                  int64 // payload bytes read
	// OrphanPages are pages no record refers to (left by a crash); GC removes them.
	// They are not faults: no reader can reach them.
	OrphanPages int
	// Faults lists every problem found, one line each; empty means the store is sound.
	Faults []string
}

// OK reports whether Verify found no fault.
func (r *VerifyReport) OK() bool { return len(r.Faults) == 0 }

// Verify re-reads every manifest, record and page of a consistent snapshot: page
// checksums and sizes, every tensor's SHA-256 against its id, manifest entries against
// their records, and refcounts against the references counted. Progress, when set, is
// called with the payload bytes read so far and the total to read. Problems are listed in the report; the
// error is for failures to read at all.
func (s *Store) Verify(progress func(done, total int64)) (*VerifyReport, error) {
	snap, err := s.be.Snapshot()
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	rep := &VerifyReport{}
	faultf := func(format string, args ...any) {
		rep.Faults = append(rep.Faults, fmt.Sprintf(format, args...))
	}

	// Manifests: references per tensor id.
	refs := map[TensorID]int64{}
	type use struct {
		model string
		t     ManifestTensor
	}
	var uses []use
	err = snap.Scan([]byte{prefixManifest}, []byte{prefixManifest + 1}, func(k, v []byte) error {
		rep.Models++
		m, err := decodeManifest(v)
		if err != nil {
			faultf("model %s: %v", k[1:], err)
			return nil
		}
		if string(k[1:]) != m.Ref() {
			faultf("model %s: manifest names itself %s", k[1:], m.Ref())
		}
		for _, t := range m.Tensors {
			size, err := graph.ByteSize(t.DType, t.Shape)
			if err != nil {
				faultf("model %s: tensor %q: %v", m.Ref(), t.Name, err)
			}
			if t.Inline() {
				if int64(len(t.Data)) != size {
					faultf("model %s: tensor %q: %d inline bytes, want %d", m.Ref(), t.Name, len(t.Data), size)
				}
				continue
			}
			refs[t.ID]++
			uses = append(uses, use{m.Ref(), t})
		}
		if m.GraphBytes > 0 {
			v, err := snap.Get(graphKey(m.Name, m.Tag))
			if err == nil {
				_, err = m.loadGraph(v)
			}
			if err != nil {
				faultf("model %s: graph: %v", m.Ref(), err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	// Records.
	records := map[TensorID]*Record{}
	byBlob := map[uint64]TensorID{}
	var total int64 // payload bytes of every record
	err = snap.Scan([]byte{prefixRecord}, []byte{prefixRecord + 1}, func(k, v []byte) error {
		rep.Tensors++
		if len(k) != 33 {
			faultf("record key %x: bad length", k)
			return nil
		}
		var id TensorID
		copy(id[:], k[1:])
		rec, err := decodeRecord(v)
		if err != nil {
			faultf("tensor %s: %v", id.Short(), err)
			return nil
		}
		if other, dup := byBlob[rec.Blob]; dup {
			faultf("tensors %s and %s share blob %d", id.Short(), other.Short(), rec.Blob)
		}
		records[id] = rec
		byBlob[rec.Blob] = id
		total += rec.Stored
		return nil
	})
	if err != nil {
		return nil, err
	}
	// A delta refers to its base, which counts as one more reference.
	for id, rec := range records {
		if !rec.Encoding.isDelta() {
			continue
		}
		var bid TensorID
		copy(bid[:], rec.Base)
		if base := records[bid]; base == nil {
			faultf("tensor %s: its base %s is missing", id.Short(), bid.Short())
		} else {
			base.Refs--
		}
	}
	for id, rec := range records {
		if rec.Refs != refs[id] {
			faultf("tensor %s: refcount %d, but %d references found", id.Short(), rec.Refs, refs[id])
		}
	}
	for _, u := range uses {
		rec := records[u.t.ID]
		if rec == nil {
			faultf("model %s: tensor %q: record %s is missing", u.model, u.t.Name, u.t.ID.Short())
			continue
		}
		if rec.DType != u.t.DType || !slices.Equal(rec.Shape, u.t.Shape) {
			faultf("model %s: tensor %q is %s%v, its record %s%v", u.model, u.t.Name, u.t.DType, u.t.Shape, rec.DType, rec.Shape)
		}
	}

	// Every blob in use must lie below the reserved blob counter, or a later import
	// could reuse it.
	var nextBlob uint64 = 1
	if v, err := snap.Get([]byte{prefixNextBlob}); err == nil {
		n, k := binary.Uvarint(v)
		if k <= 0 {
			faultf("blob counter %x cannot be decoded", v)
		}
		nextBlob = n
	}

	// Pages, in key order: blob by blob, page by page.
	var (
		cur     TensorID
		curRec  *Record
		curBlob uint64
		next    int64
		h       hash.Hash
		bad     bool // a page of the current tensor failed its check
	)
	finish := func() {
		if curRec == nil {
			return
		}
		if next != curRec.Pages {
			faultf("tensor %s: %d of %d pages found", cur.Short(), next, curRec.Pages)
		} else if curRec.Encoding == EncRaw && !bad {
			var got TensorID
			h.Sum(got[:0])
			if got != cur {
				faultf("tensor %s: content hash mismatch (%s)", cur.Short(), got.Short())
			}
		}
		delete(byBlob, curBlob)
		curRec = nil
	}
	err = snap.Scan([]byte{prefixPage}, []byte{prefixPage + 1}, func(k, v []byte) error {
		rep.Pages++
		if len(k) != 13 {
			faultf("page key %x: bad length", k)
			return nil
		}
		blob, page := binary.BigEndian.Uint64(k[1:]), int64(binary.BigEndian.Uint32(k[9:]))
		if blob >= nextBlob && page == 0 {
			faultf("blob %d is in use but not below the blob counter %d", blob, nextBlob)
		}
		if curRec == nil || blob != curBlob {
			finish()
			id, ok := byBlob[blob]
			if !ok {
				rep.OrphanPages++
				return nil
			}
			cur, curRec, curBlob, next, bad = id, records[id], blob, 0, false
			h = sha256.New()
			h.Write(hashHeader(curRec.DType, curRec.Shape))
		}
		if page != next {
			faultf("tensor %s: page %d found where page %d was expected", cur.Short(), page, next)
			next = page
		}
		if page >= curRec.Pages {
			faultf("tensor %s: extra page %d", cur.Short(), page)
			return nil
		}
		if err := checkPage(cur, curRec, page, v); err != nil {
			faultf("%v", err)
			bad = true
		} else {
			h.Write(v[4:])
			rep.Bytes += int64(len(v) - 4)
			if progress != nil {
				progress(rep.Bytes, total)
			}
		}
		next++
		return nil
	})
	if err != nil {
		return nil, err
	}
	finish()
	var missing []string
	for blob, id := range byBlob {
		if records[id].Pages > 0 {
			missing = append(missing, fmt.Sprintf("tensor %s: all %d pages of blob %d are missing", id.Short(), records[id].Pages, blob))
		}
	}
	sort.Strings(missing)
	rep.Faults = append(rep.Faults, missing...)

	// Encoded records: decode each and check what comes out against its id (exact
	// encodings) or the id of its reconstruction (grid encodings).
	var ids []TensorID
	for id, rec := range records {
		if rec.Encoding != EncRaw {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b TensorID) int { return bytes.Compare(a[:], b[:]) })
	for _, id := range ids {
		rec := records[id]
		want := id
		if rec.Encoding.Lossy() {
			gp, err := decodeGridParams(rec.Params)
			if err != nil {
				faultf("tensor %s: %v", id.Short(), err)
				continue
			}
			want = gp.Recon
		}
		h := sha256.New()
		h.Write(hashHeader(rec.DType, rec.Shape))
		var n int64
		err := readTensor(snap, id, rec, func(b []byte) error {
			n += int64(len(b))
			h.Write(b)
			return nil
		})
		if err != nil {
			faultf("tensor %s (%s): %v", id.Short(), rec.Encoding, err)
			continue
		}
		var got TensorID
		h.Sum(got[:0])
		if n != rec.Size || got != want {
			faultf("tensor %s (%s): decodes to %d bytes with hash %s, want %d bytes with hash %s", id.Short(), rec.Encoding, n, got.Short(), rec.Size, want.Short())
		}
	}

	// The index: every node must decode, and a live node must name a base record
	// whose blob is the node's id.
	rep.Faults = append(rep.Faults, verifyIndex(snap, records)...)
	return rep, nil
}

// GC deletes pages that no record refers to, the leftovers of a crashed import. It
// returns the number of pages deleted. Space comes back after compaction.
func (s *Store) GC() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	live := map[uint64]bool{}
	err := s.be.Scan([]byte{prefixRecord}, []byte{prefixRecord + 1}, func(k, v []byte) error {
		rec, err := decodeRecord(v)
		if err != nil {
			return fmt.Errorf("store: gc: tensor %x: %w", k[1:], err)
		}
		live[rec.Blob] = true
		return nil
	})
	if err != nil {
		return 0, err
	}
	var (
		b       Batch
		deleted int
		last    uint64
		haveAny bool
	)
	err = s.be.Scan([]byte{prefixPage}, []byte{prefixPage + 1}, func(k, v []byte) error {
		if len(k) != 13 {
			b.Delete(append([]byte(nil), k...))
			deleted++
			return nil
		}
		blob := binary.BigEndian.Uint64(k[1:])
		if live[blob] {
			return nil
		}
		deleted++
		if !haveAny || blob != last {
			start, end := blobRange(blob)
			b.DeleteRange(start, end)
			last, haveAny = blob, true
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if b.Len() == 0 {
		return 0, nil
	}
	return deleted, s.be.Apply(&b, true)
}

// Compact asks the backend to reclaim the space of deleted data.
func (s *Store) Compact() error { return s.be.Compact() }

// Stats are the store's sizes.
type Stats struct {
	Models  int `json:"models"`
	Tensors int `json:"tensors"` // distinct stored tensor values
	// Deltas counts the stored tensors kept as deltas against a base.
	Deltas int `json:"deltas"`
	// LogicalBytes is the sum of every model's tensor bytes, as imported.
	LogicalBytes int64 `json:"logical_bytes"`
	// StoredBytes is the sum of the payloads of distinct stored tensors.
	StoredBytes int64 `json:"stored_bytes"`
	// IndexBytes is the size of the HNSW index nodes (keys and values).
	IndexBytes int64 `json:"index_bytes"`
	// KeptBytes counts every key and value the store holds: pages with their
	// checksums, records, manifests, graphs and the index.
	KeptBytes int64 `json:"kept_bytes"`
	// PhysicalBytes is every byte the store takes on disk: data, logs and the
	// backend's own overhead.
	PhysicalBytes int64 `json:"physical_bytes"`
	// Ratio is LogicalBytes / KeptBytes: the compression, every byte counted.
	Ratio float64 `json:"ratio"`
	// DiskRatio is LogicalBytes / PhysicalBytes.
	DiskRatio float64 `json:"disk_ratio"`
	// Breakdown says where KeptBytes go; its parts sum to KeptBytes.
	Breakdown Breakdown `json:"breakdown"`
}

// Breakdown splits a store's kept bytes into tensor payloads, by encoding, and
// everything around them. Its parts sum to Stats.KeptBytes.
type Breakdown struct {
	// Encodings holds the distinct stored tensors by encoding ("grid",
	// "bit-delta", ...; "inline" for tiny tensors kept in manifests, counted
	// once per manifest that holds one, their stored bytes being what they add
	// to the compressed manifest).
	Encodings map[string]EncodingBytes `json:"encodings"`
	// Pages is the pages' keys and checksums, beyond the payloads.
	Pages int64 `json:"pages"`
	// Records is the tensor records' keys and values (low-rank factors included).
	Records int64 `json:"records"`
	// Manifests is the manifests' keys and values, less their inline tensors.
	Manifests int64 `json:"manifests"`
	// Graphs is the models' architecture blobs.
	Graphs int64 `json:"graphs"`
	// Index is the HNSW index (the same as Stats.IndexBytes).
	Index int64 `json:"index"`
	// Other is the store's own keys (format version, blob counter).
	Other int64 `json:"other"`
}

// EncodingBytes counts the tensors of one encoding.
type EncodingBytes struct {
	Tensors  int   `json:"tensors"`
	Elements int64 `json:"elements"`
	Logical  int64 `json:"logical"` // their bytes as imported
	Stored   int64 `json:"stored"`  // their payloads
}

// BitsPerElement returns the stored bits per element, 0 without elements.
func (e EncodingBytes) BitsPerElement() float64 {
	if e.Elements == 0 {
		return 0
	}
	return 8 * float64(e.Stored) / float64(e.Elements)
}

// ByStored returns the encodings' names, the most stored bytes first.
func (b *Breakdown) ByStored() []string {
	names := slices.Collect(maps.Keys(b.Encodings))
	slices.SortFunc(names, func(x, y string) int {
		return cmp.Or(cmp.Compare(b.Encodings[y].Stored, b.Encodings[x].Stored), cmp.Compare(x, y))
	})
	return names
}

func (b *Breakdown) add(enc string, n int, elems, logical, stored int64) {
	if b.Encodings == nil {
		b.Encodings = map[string]EncodingBytes{}
	}
	e := b.Encodings[enc]
	e.Tensors += n
	e.Elements += elems
	e.Logical += logical
	e.Stored += stored
	b.Encodings[enc] = e
}

// inlineCost returns how many tensors manifest m keeps inline, their elements,
// their bytes as imported, and the bytes their data adds to the encoded manifest
// (which compresses it with the rest).
func inlineCost(m *Manifest) (n int, elems, logical, cost int64, err error) {
	for _, t := range m.Tensors {
		if t.Inline() && len(t.Data) > 0 {
			n++
			k, _ := graph.NumElements(t.Shape)
			elems += k
			logical += int64(len(t.Data))
		}
	}
	if n == 0 {
		return 0, 0, 0, 0, nil
	}
	full, err := m.encode()
	if err != nil {
		return 0, 0, 0, 0, err
	}
	without, err := m.encodeInline(false)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	return n, elems, logical, int64(len(full) - len(without)), nil
}

// Stats returns the store's sizes.
func (s *Store) Stats() (*Stats, error) {
	st := &Stats{}
	snap, err := s.be.Snapshot()
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	ms, err := listManifests(snap)
	if err != nil {
		return nil, err
	}
	st.Models = len(ms)
	bd := &st.Breakdown
	var inline int64
	for _, m := range ms {
		st.LogicalBytes += m.LogicalBytes()
		n, elems, logical, cost, err := inlineCost(m)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			bd.add(EncInline.String(), n, elems, logical, cost)
			inline += cost
		}
	}
	var pages int64
	err = snap.Scan(nil, []byte{0xff}, func(k, v []byte) error {
		n := int64(len(k) + len(v))
		st.KeptBytes += n
		switch k[0] {
		case prefixIndex:
			st.IndexBytes += n
		case prefixRecord:
			rec, err := decodeRecord(v)
			if err != nil {
				return err
			}
			st.Tensors++
			st.StoredBytes += rec.Stored
			if rec.Encoding.isDelta() {
				st.Deltas++
			}
			bd.Records += n
			bd.add(rec.Encoding.String(), 1, numel(rec), numel(rec)*int64(rec.DType.Size()), rec.Stored)
		case prefixPage:
			pages += n
		case prefixManifest:
			bd.Manifests += n
		case prefixGraph:
			bd.Graphs += n
		default:
			bd.Other += n
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Payloads are counted by encoding; what is left of the pages is keys and
	// checksums, and of the manifests what is not inline tensors.
	bd.Pages = pages - st.StoredBytes
	bd.Manifests -= inline
	bd.Index = st.IndexBytes
	if st.PhysicalBytes, err = s.be.DiskBytes(); err != nil {
		return nil, err
	}
	if st.KeptBytes > 0 {
		st.Ratio = float64(st.LogicalBytes) / float64(st.KeptBytes)
	}
	if st.PhysicalBytes > 0 {
		st.DiskRatio = float64(st.LogicalBytes) / float64(st.PhysicalBytes)
	}
	return st, nil
}

// verifyIndex checks the index nodes of snap against records.
func verifyIndex(snap Reader, records map[TensorID]*Record) []string {
	var faults []string
	byCount := map[int64][][]byte{}
	err := snap.Scan([]byte{prefixIndex}, []byte{prefixIndex + 1}, func(k, v []byte) error {
		if len(k) != 17 || len(v) < 33 || v[0] > 1 {
			faults = append(faults, fmt.Sprintf("index key %x: bad key or value", k))
			return nil
		}
		n := int64(binary.BigEndian.Uint64(k[1:]))
		node := binary.BigEndian.Uint64(k[9:])
		byCount[n] = append(byCount[n], slices.Clone(v[33:]))
		if v[0] == 0 {
			return nil
		}
		var id TensorID
		copy(id[:], v[1:33])
		rec := records[id]
		switch {
		case rec == nil:
			faults = append(faults, fmt.Sprintf("index node %d of size %d: tensor %s is missing", node, n, id.Short()))
		case rec.Blob != node || rec.Encoding.isDelta() || numel(rec) != n:
			faults = append(faults, fmt.Sprintf("index node %d of size %d: tensor %s is not that base", node, n, id.Short()))
		}
		return nil
	})
	if err != nil {
		return append(faults, fmt.Sprintf("index: %v", err))
	}
	for n, recs := range byCount {
		_, err := hnsw.Load(int(n), hnsw.DefaultParams(int(n)), func(yield func([]byte) bool) {
			for _, r := range recs {
				if !yield(r) {
					return
				}
			}
		})
		if err != nil {
			faults = append(faults, fmt.Sprintf("index of size %d: %v", n, err))
		}
	}
	sort.Strings(faults)
	return faults
}
