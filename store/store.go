package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"
)

// formatVersion is the store format version kept under key "F". Version 2 added
// the codes in classes of cells (quant codec 3), low-rank factors in grid
// parameters, manifests with inline tensors as planes (manifest version 3),
// compressed graphs (graph_zstd) and chains of bit deltas, which a version 1
// binary cannot decode. A version 1 store is read as
// it is, since version 2 only adds encodings, and is marked version 2 when opened,
// as its next import may write them; a binary that knows only version 1 then
// refuses it with a clear error instead of reporting corrupt tensors.
const formatVersion = 2

// oldestFormat is the oldest format version this binary opens.
const oldestFormat = 1

// DefaultPageSize is the payload size of a full page.
const DefaultPageSize = 1 << 20

// blobReserve is how many blob numbers one reservation takes.
const blobReserve = 1024

// Key prefixes (see the package comment).
const (
	prefixFormat   = 'F'
	prefixNextBlob = 'N'
	prefixManifest = 'm'
	prefixGraph    = 'g'
	prefixRecord   = 't'
	prefixPage     = 'p'
)

// Store is a model store over a Backend. Its methods are safe for concurrent use:
// writers (Import, Remove, GC) run one at a time; readers work on snapshots.
type Store struct {
	be Backend

	// mu serializes writers and guards nextBlob and reserved.
	mu       sync.Mutex
	nextBlob uint64
	reserved uint64 // blob numbers below this are reserved on disk

	// freeBytes reports free disk space; tests replace it.
	freeBytes func() (int64, error)
	// reserveBytes is the free space an import must leave untouched.
	reserveBytes int64
	// smallTensor is the size up to which import reads a tensor in one pass.
	smallTensor int64
	// maxDedup is the size above which a float tensor skips the dedup engine
	// (maxDedupBytes; smaller in tests).
	maxDedup int64
	// indexes are the HNSW indexes loaded so far, by element count (guarded by mu).
	indexes map[int64]*tensorIndex
	// baseCodes keeps decoded grid codes of bases between imports.
	baseCodes codeCache
}

// Open opens the store in dir with the embedded Pebble backend, creating it if needed.
func Open(dir string) (*Store, error) {
	be, err := OpenPebble(dir)
	if err != nil {
		return nil, err
	}
	s, err := New(be)
	if err != nil {
		be.Close()
		return nil, err
	}
	return s, nil
}

// New returns a Store over be, initialising an empty backend.
func New(be Backend) (*Store, error) {
	s := &Store{be: be, freeBytes: be.FreeBytes, reserveBytes: 64 << 20, smallTensor: defaultSmallTensor, maxDedup: maxDedupBytes}
	v, err := be.Get([]byte{prefixFormat})
	switch {
	case errors.Is(err, ErrNotFound):
		var b Batch
		b.Set([]byte{prefixFormat}, []byte{formatVersion})
		if err := be.Apply(&b, true); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	case len(v) != 1:
		return nil, corruptf("format version %x", v)
	case v[0] > formatVersion:
		return nil, fmt.Errorf("store: format version %d is newer than this binary's %d: use a newer neurrun", v[0], formatVersion)
	case v[0] < oldestFormat:
		return nil, fmt.Errorf("store: format version %d is older than this binary reads (%d to %d)", v[0], oldestFormat, formatVersion)
	case v[0] < formatVersion:
		var b Batch
		b.Set([]byte{prefixFormat}, []byte{formatVersion})
		if err := be.Apply(&b, true); err != nil {
			return nil, err
		}
	}
	v, err = be.Get([]byte{prefixNextBlob})
	switch {
	case errors.Is(err, ErrNotFound):
		s.nextBlob, s.reserved = 1, 1
	case err != nil:
		return nil, err
	default:
		n, k := binary.Uvarint(v)
		if k <= 0 {
			return nil, corruptf("next blob number %x", v)
		}
		s.nextBlob, s.reserved = n, n
	}
	return s, nil
}

// Close closes the backend.
func (s *Store) Close() error { return s.be.Close() }

// Backend returns the store's backend.
func (s *Store) Backend() Backend { return s.be }

// allocBlobLocked returns a fresh blob number, reserving a new range on disk first
// when the current one is used up, so that a number is never handed out twice, even
// across crashes.
func (s *Store) allocBlobLocked() (uint64, error) {
	if s.nextBlob >= s.reserved {
		// Synced: pages under these numbers may become durable (bulk-loaded tables
		// do not wait for the log) before any later synced write, and a crash
		// must never let a number be handed out again while its pages survive.
		var b Batch
		b.Set([]byte{prefixNextBlob}, binary.AppendUvarint(nil, s.nextBlob+blobReserve))
		if err := s.be.Apply(&b, true); err != nil {
			return 0, err
		}
		s.reserved = s.nextBlob + blobReserve
	}
	n := s.nextBlob
	s.nextBlob++
	return n, nil
}

func manifestKey(name, tag string) []byte {
	return append([]byte{prefixManifest}, name+":"+tag...)
}

func graphKey(name, tag string) []byte {
	return append([]byte{prefixGraph}, name+":"+tag...)
}

func recordKey(id TensorID) []byte {
	return append([]byte{prefixRecord}, id[:]...)
}

func pageKey(blob uint64, page uint32) []byte {
	k := make([]byte, 13)
	k[0] = prefixPage
	binary.BigEndian.PutUint64(k[1:], blob)
	binary.BigEndian.PutUint32(k[9:], page)
	return k
}

// blobRange returns the key range holding every page of blob.
func blobRange(blob uint64) (start, end []byte) {
	return pageKey(blob, 0), pageKey(blob+1, 0)
}

// Model returns the manifest of ref ("name[:tag]"), or an error wrapping ErrNotFound.
func (s *Store) Model(ref string) (*Manifest, error) {
	return getManifest(s.be, ref)
}

func getManifest(r Reader, ref string) (*Manifest, error) {
	name, tag, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	v, err := r.Get(manifestKey(name, tag))
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: model %s:%s", ErrNotFound, name, tag)
	}
	if err != nil {
		return nil, err
	}
	m, err := decodeManifest(v)
	if err != nil {
		return nil, fmt.Errorf("model %s:%s: %w", name, tag, err)
	}
	return m, nil
}

// Models returns every manifest, sorted by name and tag.
func (s *Store) Models() ([]*Manifest, error) {
	return listManifests(s.be)
}

func listManifests(r Reader) ([]*Manifest, error) {
	var out []*Manifest
	err := r.Scan([]byte{prefixManifest}, []byte{prefixManifest + 1}, func(k, v []byte) error {
		m, err := decodeManifest(v)
		if err != nil {
			return fmt.Errorf("model %s: %w", k[1:], err)
		}
		out = append(out, m)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Ref() < out[j].Ref() })
	return out, err
}

// Record returns the record of tensor id, or an error wrapping ErrNotFound.
func (s *Store) Record(id TensorID) (*Record, error) {
	return getRecord(s.be, id)
}

func getRecord(r Reader, id TensorID) (*Record, error) {
	v, err := r.Get(recordKey(id))
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: tensor %s", ErrNotFound, id.Short())
	}
	if err != nil {
		return nil, err
	}
	rec, err := decodeRecord(v)
	if err != nil {
		return nil, fmt.Errorf("tensor %s: %w", id.Short(), err)
	}
	return rec, nil
}

// Graph returns the graph blob of ref.
func (s *Store) Graph(ref string) ([]byte, error) {
	name, tag, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	v, err := s.be.Get(graphKey(name, tag))
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	m, err := getManifest(s.be, ref)
	if err != nil {
		return nil, err
	}
	return m.loadGraph(v)
}

// Remove deletes model ref. Tensors no other model uses are deleted with it, in the
// same atomic write. It returns an error wrapping ErrNotFound if ref does not exist.
func (s *Store) Remove(ref string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := getManifest(s.be, ref)
	if err != nil {
		return err
	}
	pending := map[TensorID]*Record{}
	if err := s.releaseLocked(m, pending); err != nil {
		return err
	}
	var b Batch
	b.Delete(manifestKey(m.Name, m.Tag))
	b.Delete(graphKey(m.Name, m.Tag))
	if err := s.writeRecordsLocked(&b, pending); err != nil {
		return err
	}
	return s.be.Apply(&b, true)
}

// releaseLocked decrements the refcounts of m's tensors in pending, the records
// changed by the write being built (loaded from the store when not there yet).
func (s *Store) releaseLocked(m *Manifest, pending map[TensorID]*Record) error {
	for _, t := range m.Tensors {
		if t.Inline() {
			continue
		}
		rec := pending[t.ID]
		if rec == nil {
			var err error
			if rec, err = getRecord(s.be, t.ID); err != nil {
				return wrapf(err, "release %s", m.Ref())
			}
			pending[t.ID] = rec
		}
		if rec.Refs--; rec.Refs < 0 {
			return corruptf("tensor %s: refcount below zero", t.ID.Short())
		}
	}
	return nil
}

// writeRecordsLocked adds the changed records to b. A record no longer referenced is
// deleted with its pages; a deleted delta releases its base (which may go too), and
// a deleted base's index node is marked removed. The others are rewritten.
func (s *Store) writeRecordsLocked(b *Batch, pending map[TensorID]*Record) error {
	released := map[TensorID]bool{}
	for again := true; again; {
		again = false
		for id, rec := range pending {
			if rec.Refs > 0 || released[id] || !rec.Encoding.isDelta() {
				continue
			}
			released[id] = true
			var bid TensorID
			copy(bid[:], rec.Base)
			base := pending[bid]
			if base == nil {
				var err error
				if base, err = getRecord(s.be, bid); err != nil {
					return wrapf(err, "tensor %s: base", id.Short())
				}
				pending[bid] = base
			}
			if base.Refs--; base.Refs < 0 {
				return corruptf("tensor %s: refcount below zero", bid.Short())
			}
			again = true
		}
	}
	for id, rec := range pending {
		if rec.Refs > 0 {
			b.Set(recordKey(id), rec.encode())
			continue
		}
		b.Delete(recordKey(id))
		s.baseCodes.drop(rec.Blob)
		start, end := blobRange(rec.Blob)
		b.DeleteRange(start, end)
		if err := s.markRemovedLocked(b, rec); err != nil {
			return err
		}
	}
	return nil
}
