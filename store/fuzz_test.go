package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"reflect"
	"testing"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/quant"
)

// memReader is a Reader over a map, for fuzzing the decoders without a database.
type memReader map[string][]byte

func (m memReader) Get(k []byte) ([]byte, error) {
	if v, ok := m[string(k)]; ok {
		return append([]byte(nil), v...), nil
	}
	return nil, ErrNotFound
}

func (m memReader) Scan(lower, upper []byte, fn func(k, v []byte) error) error {
	panic("not used")
}

// FuzzDecodeRecord: record and manifest decoders never panic, and a record that
// decodes survives encoding and decoding again unchanged (the bytes may differ:
// a varint can be written in more than one way).
func FuzzDecodeRecord(f *testing.F) {
	base := make([]byte, 32)
	for _, r := range []*Record{
		{Encoding: EncRaw, DType: graph.F32, Shape: []int64{2, 3}, Size: 24, Stored: 24, Blob: 7, PageSize: DefaultPageSize, Pages: 1, Refs: 1},
		{Encoding: EncGridDelta, DType: graph.BF16, Shape: []int64{4}, Size: 8, Stored: 5, Blob: 9, PageSize: 4, Pages: 2, Refs: 2, Base: base, Params: gridParams{Tau: 1e-3}.encode()},
	} {
		f.Add(r.encode())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeManifest(b)
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		again, err := decodeRecord(r.encode())
		if err != nil || fmt.Sprint(again) != fmt.Sprint(r) {
			t.Fatalf("record %+v re-decodes as %+v (%v)", r, again, err)
		}
	})
}

// FuzzDecodeManifest: the manifest decoder never panics, and a manifest that
// decodes survives encoding (always as version 3) and decoding again unchanged.
func FuzzDecodeManifest(f *testing.F) {
	m := inlineManifest()
	for _, v := range []byte{manifestPlain, manifestZstd, manifestPlanes} {
		b, err := encodeManifestAs(m, v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeManifest(b)
		if err != nil {
			return
		}
		enc, err := m.encode()
		if err != nil {
			return // a version 1 or 2 manifest can hold what version 3 refuses
		}
		again, err := decodeManifest(enc)
		if err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("manifest %+v re-decodes as %+v (%v)", m, again, err)
		}
	})
}

// FuzzTensorPayload: any payload under any encoding decodes to an error or to
// exactly the tensor's size, never a panic or an allocation beyond the bounds.
func FuzzTensorPayload(f *testing.F) {
	f.Add(uint8(EncPlanes), uint8(graph.F32), uint16(300), []byte{containerMagic, containerVersion, 0x80, 0x80, 0x10, 3, 1, 2, 3})
	f.Add(uint8(EncGrid), uint8(graph.F16), uint16(70), []byte{containerMagic, containerVersion, 0x80, 0x80, 0x10, 0})
	f.Add(uint8(EncGridDelta), uint8(graph.F32), uint16(5), []byte{})
	{
		// a grid delta of a 2 x 32 matrix with rank-1 factors, then its payload
		lr := &quant.LowRank{Rows: 2, Cols: 32, Rank: 1, Shift: 1, A: []int32{3, -1}, Bt: make([]int32, 32)}
		for j := range lr.Bt {
			lr.Bt[j] = int32(j - 16)
		}
		blob := lr.Encode()
		codes, _ := quant.Encode(&quant.Codes{Tau: 1e-3, Q: make([]int64, 64)})
		w := newContainer()
		w.add(codes)
		var pay bytes.Buffer
		io.Copy(&pay, w.parts.reader())
		f.Add(uint8(EncGridDelta-1), uint8(graph.F32-1), uint16(64), append(append([]byte{byte(len(blob))<<1 | 1}, blob...), pay.Bytes()...))
	}
	f.Fuzz(func(t *testing.T, enc, dt uint8, n uint16, payload []byte) {
		e, d := Encoding(enc%5+1), graph.DType(dt%3+1) // F32, F16, BF16
		if d == 2 {
			d = graph.F16
		} else if d == 3 {
			d = graph.BF16
		}
		size := int64(n) * int64(d.Size())
		gp, shape := gridParams{Tau: 1e-3}, []int64{int64(n)}
		if e == EncGridDelta && n%2 == 0 && len(payload) > 0 && payload[0]&1 == 1 {
			// a matrix of two rows with low-rank factors taken from the payload
			k := min(int(payload[0]>>1), len(payload)-1)
			gp.LowRank, payload = payload[1:1+k], payload[1+k:]
			shape = []int64{2, int64(n / 2)}
		}
		rec := &Record{Encoding: e, DType: d, Shape: shape, Size: size, Stored: int64(len(payload)),
			Blob: 5, PageSize: 64, Refs: 1, Params: gp.encode()}
		rec.Pages = (rec.Stored + rec.PageSize - 1) / rec.PageSize
		m := memReader{}
		var baseID TensorID
		baseID[0] = 1
		if e.isDelta() {
			rec.Base = baseID[:]
			// a raw base of the same shape and dtype
			bv := make([]byte, size)
			for i := 0; i+1 < len(bv); i += 2 {
				binary.LittleEndian.PutUint16(bv[i:], uint16(i*7))
			}
			if d == graph.F32 {
				for i := 0; i+4 <= len(bv); i += 4 {
					binary.LittleEndian.PutUint32(bv[i:], math.Float32bits(float32(i)/1000))
				}
			}
			br := &Record{Encoding: EncRaw, DType: d, Shape: rec.Shape, Size: size, Stored: size, Blob: 6, PageSize: 64, Refs: 1}
			br.Pages = (br.Stored + 63) / 64
			m[string(recordKey(baseID))] = br.encode()
			putPages(m, br, bv)
		}
		putPages(m, rec, payload)
		var got int64
		err := readTensor(m, TensorID{2}, rec, func(b []byte) error {
			got += int64(len(b))
			return nil
		})
		if err == nil && e != EncRaw && got != size {
			t.Fatalf("%s decoded to %d bytes, want %d", e, got, size)
		}
	})
}

func putPages(m memReader, rec *Record, payload []byte) {
	for p := int64(0); p < rec.Pages; p++ {
		chunk := payload[p*rec.PageSize : min((p+1)*rec.PageSize, int64(len(payload)))]
		v := binary.LittleEndian.AppendUint32(nil, crc32.Checksum(chunk, crcTable))
		m[string(pageKey(rec.Blob, uint32(p)))] = append(v, chunk...)
	}
}
