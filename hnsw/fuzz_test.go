package hnsw

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"slices"
	"testing"
)

// FuzzLoadNode feeds arbitrary bytes to the record decoder (dim 16) and to Load:
// they must return an error or a record that re-encodes to the same bytes, never
// panic. Each input is also tried with its checksum fixed, so the fuzzer gets past
// the CRC to the field checks.
func FuzzLoadNode(f *testing.F) {
	const dim = 16
	bases, _, _ := family(17, dim, 30, 0)
	x := build(f, dim, DefaultParams(dim), bases)
	for _, r := range records(f, x)[:3] {
		f.Add(r)
	}
	f.Fuzz(func(t *testing.T, rec []byte) {
		fuzzRecord(t, rec, dim)
		if len(rec) >= 4 {
			fixed := slices.Clone(rec)
			body := fixed[:len(fixed)-4]
			binary.LittleEndian.PutUint32(fixed[len(body):], crc32.Checksum(body, castagnoli))
			fuzzRecord(t, fixed, dim)
		}
	})
}

func fuzzRecord(t *testing.T, rec []byte, dim int) {
	r, err := decodeRecord(rec, dim)
	if err != nil {
		return
	}
	if len(r.links) != r.n.level+1 {
		t.Fatalf("decoded %d layers for level %d", len(r.links), r.n.level)
	}
	y, err := Load(dim, DefaultParams(dim), func(yield func([]byte) bool) { yield(rec) })
	if err != nil {
		return // links to nodes that are not there
	}
	b, err := y.MarshalNode(r.n.id)
	if err != nil || !bytes.Equal(b, rec) {
		t.Fatalf("re-encoded record differs (%v)", err)
	}
}
