package hnsw

// Node record layout (part of the on-disk format; do not change: add a new format
// version instead). All integers little endian.
//
//	  0        1        2                 10                18         22
//	+--------+--------+-----------------+-----------------+----------+
//	| ver=2  | level L| id (u64)        | seq (u64)       | n (u32)  |
//	+--------+--------+-----------------+-----------------+----------+
//	  22         26         30               38               46
//	+----------+----------+----------------+----------------+----------------+
//	| min f32  | scale f32| sum(q) u64     | sum(q^2) u64   | codes: n bytes |
//	+----------+----------+----------------+----------------+----------------+
//	  then for each layer lc = 0 .. L:
//	+-----------------+--------------------------------------+
//	| count (uvarint) | count neighbour ids (uvarint each)   |
//	+-----------------+--------------------------------------+
//	  then
//	+---------------------------------------------+
//	| CRC-32C (Castagnoli) of all preceding bytes |
//	+---------------------------------------------+
//
// ver is the format version byte. level is the node's top HNSW layer (0..31). id is
// the caller's node id, seq the node's insertion sequence number (Load orders nodes by
// it, which restores the entry point and every tie-break exactly). n is the code
// count: SketchSize(dim) (dim itself up to SketchThreshold; dim/64 clamped to
// [64, 65536] in indexes written before 2026-12-04). min and scale are the 8-bit
// quantizer's zero point and step (float32 bits); the two sums are over the codes.
// Neighbour lists name neighbours by id.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
)

// FormatVersion is the version byte of node records written by MarshalNode.
// Version 2 writes neighbour counts and ids as uvarints (version 1, never kept by
// a store, wrote them as u16 and u64).
const FormatVersion = 2

const headerSize = 46

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// MarshalNode returns the record of node id (layout at the top of record.go).
func (x *Index) MarshalNode(id ID) ([]byte, error) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	i, ok := x.byID[id]
	if !ok {
		return nil, fmt.Errorf("hnsw: no node %d", id)
	}
	n := x.nodes[i]
	size := headerSize + len(n.vec.code) + 4
	for _, l := range n.links {
		size += binary.MaxVarintLen16 + binary.MaxVarintLen64*len(l)
	}
	b := make([]byte, 0, size)
	b = append(b, FormatVersion, byte(n.level))
	b = binary.LittleEndian.AppendUint64(b, uint64(n.id))
	b = binary.LittleEndian.AppendUint64(b, n.seq)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(n.vec.code)))
	b = binary.LittleEndian.AppendUint32(b, math.Float32bits(n.vec.min))
	b = binary.LittleEndian.AppendUint32(b, math.Float32bits(n.vec.scale))
	b = binary.LittleEndian.AppendUint64(b, n.vec.sumQ)
	b = binary.LittleEndian.AppendUint64(b, n.vec.sumQ2)
	b = append(b, n.vec.code...)
	for _, l := range n.links {
		b = binary.AppendUvarint(b, uint64(len(l)))
		for _, j := range l {
			b = binary.AppendUvarint(b, uint64(x.nodes[j].id))
		}
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

// record is a decoded node record whose neighbours are still ids.
type record struct {
	n     *node
	links [][]ID
}

var errCorrupt = errors.New("hnsw: corrupted node record")

func corrupt(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errCorrupt, fmt.Sprintf(format, a...))
}

// recordCodeLen returns the code count a record claims, or -1 if it is too short
// to say. decodeRecord checks the rest.
func recordCodeLen(rec []byte) int {
	if len(rec) < headerSize+4 {
		return -1
	}
	return int(binary.LittleEndian.Uint32(rec[18:]))
}

// decodeRecord parses and checks one record for an index whose nodes keep codeLen
// codes. It copies what it keeps; rec may be reused by the caller.
func decodeRecord(rec []byte, codeLen int) (*record, error) {
	if len(rec) < headerSize+4 {
		return nil, corrupt("%d bytes, too short", len(rec))
	}
	body := rec[:len(rec)-4]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(rec[len(body):]) {
		return nil, corrupt("checksum mismatch")
	}
	if body[0] != FormatVersion {
		return nil, corrupt("format version %d, want %d", body[0], FormatVersion)
	}
	le := binary.LittleEndian
	lvl := int(body[1])
	if lvl > maxLevelCap {
		return nil, corrupt("level %d above %d", lvl, maxLevelCap)
	}
	n := &node{id: ID(le.Uint64(body[2:])), seq: le.Uint64(body[10:]), level: lvl}
	if cl := le.Uint32(body[18:]); uint64(cl) != uint64(codeLen) {
		return nil, corrupt("%d codes, index keeps %d", cl, codeLen)
	}
	v := &n.vec
	v.min = math.Float32frombits(le.Uint32(body[22:]))
	v.scale = math.Float32frombits(le.Uint32(body[26:]))
	v.sumQ, v.sumQ2 = le.Uint64(body[30:]), le.Uint64(body[38:])
	if !finite(v.min) || !finite(v.scale) || v.scale < 0 {
		return nil, corrupt("bad quantizer min %v scale %v", v.min, v.scale)
	}
	p := body[headerSize:]
	if len(p) < codeLen {
		return nil, corrupt("codes truncated")
	}
	v.code = slices.Clone(p[:codeLen])
	p = p[codeLen:]
	if s, s2 := codeSums(v.code); s != v.sumQ || s2 != v.sumQ2 {
		return nil, corrupt("code sums do not match the codes")
	}
	if v.scale == 0 && v.sumQ != 0 {
		return nil, corrupt("constant vector with nonzero codes")
	}
	r := &record{n: n, links: make([][]ID, lvl+1)}
	for lc := range r.links {
		c, k := uvarint(p)
		if k <= 0 || c > maxLinks || c > uint64(len(p)-k) {
			return nil, corrupt("layer %d: bad neighbour count", lc)
		}
		p = p[k:]
		cnt := int(c)
		l := make([]ID, cnt)
		for i := range l {
			v, k := uvarint(p)
			if k <= 0 {
				return nil, corrupt("layer %d neighbours truncated", lc)
			}
			p = p[k:]
			l[i] = ID(v)
			if l[i] == n.id {
				return nil, corrupt("node %d links to itself", n.id)
			}
		}
		s := slices.Clone(l)
		slices.Sort(s)
		if len(slices.Compact(s)) != cnt {
			return nil, corrupt("node %d: duplicate neighbour on layer %d", n.id, lc)
		}
		r.links[lc] = l
	}
	if len(p) != 0 {
		return nil, corrupt("%d trailing bytes", len(p))
	}
	return r, nil
}

func finite(f float32) bool { return !math.IsNaN(float64(f)) && !math.IsInf(float64(f), 0) }

// Load rebuilds an index from node records (MarshalNode output) given in any order by
// the iterator nodes. dim and p must be those of the index that wrote them. Nodes are
// ordered by their insertion sequence numbers, so the entry point, the maximum level
// and every search result are those of the original index, and later Inserts build
// the same graph as they would have there. Corrupted or inconsistent records (bad
// checksum, unknown version, duplicate ids, links to missing nodes or to nodes below
// the layer) give an error.
func Load(dim int, p Params, nodes func(yield func(rec []byte) bool)) (*Index, error) {
	x, err := New(dim, p)
	if err != nil {
		return nil, err
	}
	var recs []*record
	nodes(func(rec []byte) bool {
		if len(recs) == 0 {
			// The first record says which sketch size the index was written
			// with; every other record must agree.
			if n := recordCodeLen(rec); n != x.codeLen() && n == sketchSize(dim, oldSketchDiv) {
				x, err = newIndex(dim, p, n)
				if err != nil {
					return false
				}
			}
		}
		var r *record
		r, err = decodeRecord(rec, x.codeLen())
		if err != nil {
			return false
		}
		recs = append(recs, r)
		return true
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(recs, func(a, b *record) int {
		switch {
		case a.n.seq < b.n.seq:
			return -1
		case a.n.seq > b.n.seq:
			return 1
		}
		return 0
	})
	for i, r := range recs {
		if i > 0 && recs[i-1].n.seq == r.n.seq {
			return nil, corrupt("duplicate sequence number %d", r.n.seq)
		}
		if _, dup := x.byID[r.n.id]; dup {
			return nil, corrupt("duplicate id %d", r.n.id)
		}
		x.byID[r.n.id] = int32(i)
		x.nodes = append(x.nodes, r.n)
	}
	for i, r := range recs {
		r.n.links = make([][]int32, len(r.links))
		for lc, l := range r.links {
			r.n.links[lc] = make([]int32, len(l))
			for k, id := range l {
				j, ok := x.byID[id]
				if !ok {
					return nil, corrupt("node %d links to missing node %d", r.n.id, id)
				}
				if x.nodes[j].level < lc {
					return nil, corrupt("node %d links on layer %d to node %d of level %d", r.n.id, lc, id, x.nodes[j].level)
				}
				r.n.links[lc][k] = j
			}
		}
		if x.entry < 0 || r.n.level > x.maxLevel {
			x.entry, x.maxLevel = int32(i), r.n.level
		}
		x.nextSeq = r.n.seq + 1
	}
	return x, nil
}

// uvarint reads a uvarint written the shortest way (as AppendUvarint writes it), so
// that a record has exactly one encoding; k <= 0 means none.
func uvarint(p []byte) (v uint64, k int) {
	v, k = binary.Uvarint(p)
	if k > 0 && k != len(binary.AppendUvarint(nil, v)) {
		return 0, -1
	}
	return v, k
}
