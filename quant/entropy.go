package quant

// Entropy coding of byte streams whose decoded length the reader already knows.
//
// A stream is (part of the format; do not change):
//
//	+------+-----------------+------------------+
//	| kind | payload length  | payload          |
//	| u8   | uvarint         | length bytes     |
//	+------+-----------------+------------------+
//
//	kind 0 raw:     the bytes as they are
//	kind 1 chunked: the bytes cut into chunks of 128 KiB (the last shorter), each
//	                chunk = ckind u8 | uvarint len | len bytes, where ckind is
//	                0 raw, 1 RLE (one byte repeated), 2 huff0 4X, 3 huff0 1X, 4 FSE
//	kind 2 zstd:    one zstd frame (github.com/klauspost/compress/zstd)

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/klauspost/compress/fse"
	"github.com/klauspost/compress/huff0"
	"github.com/klauspost/compress/zstd"
)

const (
	streamRaw     = 0
	streamChunked = 1
	streamZstd    = 2

	chunkRaw    = 0
	chunkRLE    = 1
	chunkHuff4X = 2
	chunkHuff1X = 3
	chunkFSE    = 4

	chunkSize = 1 << 17

	// fseTableLog is FSE's largest table (4096 states): the finest probabilities
	// it can represent, 0.1% smaller than its default of 2048 on grid codes.
	fseTableLog = 12
)

var errCorrupt = errors.New("quant: corrupt input")

var (
	zOnce sync.Once
	zEnc  *zstd.Encoder
	zDec  *zstd.Decoder
	zErr  error
)

func zstdCodecs() (*zstd.Encoder, *zstd.Decoder, error) {
	zOnce.Do(func() {
		zEnc, zErr = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderCRC(false),
			zstd.WithZeroFrames(true))
		if zErr != nil {
			return
		}
		zDec, zErr = zstd.NewReader(nil,
			zstd.WithDecodeAllCapLimit(true),
			zstd.WithDecoderConcurrency(0),
			zstd.WithDecoderMaxWindow(1<<27),
			zstd.WithDecoderMaxMemory(1<<32))
	})
	return zEnc, zDec, zErr
}

type scratch struct {
	h   huff0.Scratch
	f   fse.Scratch
	out []byte // encodeChunks' output, reused
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// appendStream appends the smallest encoding of src it finds to dst. Only
// lossless byte planes try zstd (withZstd): on planes of grid codes it saved
// 0.03% of text-medium at tau 1e-3 and cost a fine-tune's import 15%.
func appendStream(dst, src []byte, withZstd bool) []byte {
	best := streamRaw
	var bestPayload = src
	s := scratchPool.Get().(*scratch)
	defer scratchPool.Put(s)
	ch, prefixIn, prefixOut := encodeChunks(s, src) // valid until s goes back
	if len(ch) < len(bestPayload) {
		best, bestPayload = streamChunked, ch
	}
	// zstd also models repeats, which helps structured planes. It costs more
	// than the chunked coders, so it is tried only when they left enough on the
	// table but found some structure (a plane of noise, like the low mantissa
	// bytes of floats, gains nothing from it either) and, for long inputs, when
	// it wins on a prefix first.
	if withZstd && len(src) >= 64 && len(bestPayload) > len(src)/16 && len(bestPayload) < len(src)-len(src)/32 {
		if enc, _, err := zstdCodecs(); err == nil {
			try := true
			if len(src) >= 2*probeSize {
				z := enc.EncodeAll(src[:prefixIn], nil)
				try = len(z) < prefixOut
			}
			if try {
				z := enc.EncodeAll(src, make([]byte, 0, len(bestPayload)))
				if len(z) < len(bestPayload) {
					best, bestPayload = streamZstd, z
				}
			}
		}
	}
	dst = append(dst, byte(best))
	dst = binary.AppendUvarint(dst, uint64(len(bestPayload)))
	return append(dst, bestPayload...)
}

// probeSize is the prefix on which zstd must win before it is run on everything
// (inputs over twice as long only; zstd rarely wins on planes of codes, and then
// the probe costs a third of a full try).
const probeSize = chunkSize

// encodeChunks codes src chunk by chunk into s.out, which it returns; it also
// returns how many input bytes the first probeSize bytes' chunks hold and their
// coded size (capped at raw size).
func encodeChunks(s *scratch, src []byte) (out []byte, prefixIn, prefixOut int) {
	out = s.out[:0]
	defer func() { s.out = out }()
	for off := 0; off < len(src); off += chunkSize {
		c := src[off:min(off+chunkSize, len(src))]
		kind, payload := chunkRaw, c
		// FSE (tANS) spends fractions of a bit where Huffman spends whole ones,
		// which counts on skewed bytes: below 5 bits per byte it goes first and
		// Huffman is tried only where FSE declines. Above that Huffman's loss is
		// a fraction of a percent and its decoder twice as fast
		// (BenchmarkChunkDecode, 6-bit codes: 0.67% more bytes, 600-650 against
		// 280-320 MB/s). FSE up to 7 bits kept text-medium at tau 1e-3 0.23%
		// smaller but cost a fine-tune's import 5-10%, most of it decoding its
		// base. Above 7.95 bits no coder gains a percent.
		h, used := order0(c)
		// A short input (a bias's byte planes) is coded only where what order 0
		// saves pays for a table of its symbols (about half a byte each). On
		// text-medium's base and a fine-tune at tau 1e-3, 414 of 641 short
		// planes were over 6 bits per byte, where coding saved 2 bytes in all
		// and trying it cost the import 5%; with this rule text-medium's stores
		// keep 0.0008% (lossless) and 0.003% (tau 1e-3) more bytes, and
		// digits-cnn, whose inline tensors are a quarter of it, 0.3%.
		short := len(c) < 4096
		if short && float64(len(c))*(8-h)/8 < float64(used)/2+16 {
			short, h = false, 8 // kept raw
		}
		if h < 5 || short {
			s.f.TableLog = fseTableLog
			f, err := fse.Compress(c, &s.f)
			switch {
			case err == fse.ErrUseRLE:
				kind, payload = chunkRLE, c[:1]
			case err == nil && len(f) < len(payload):
				kind, payload = chunkFSE, f
			}
		}
		if kind == chunkRaw && h <= 7.95 || short && kind != chunkRLE {
			s.h.Reuse = huff0.ReusePolicyNone
			hb, _, err := huff0.Compress4X(c, &s.h)
			switch {
			case err == huff0.ErrUseRLE:
				kind, payload = chunkRLE, c[:1]
			case err == nil && len(hb) < len(payload):
				kind, payload = chunkHuff4X, hb
			}
		}
		out = append(out, byte(kind))
		out = binary.AppendUvarint(out, uint64(len(payload)))
		out = append(out, payload...)
		if off < probeSize {
			prefixIn, prefixOut = off+len(c), len(out)
		}
	}
	return out, prefixIn, prefixOut
}

// order0 returns the order-0 entropy of c in bits per byte and how many byte
// values c uses. It costs one pass over c, a fraction of a failed Huffman attempt.
func order0(c []byte) (h float64, used int) {
	var hist [256]uint32
	for _, b := range c {
		hist[b]++
	}
	if len(c) == 0 {
		return 0, 0
	}
	bits, used := histBits(&hist, len(c))
	return bits / float64(len(c)), used
}

// histBits returns the order-0 entropy in bits of the total symbols counted in
// hist, (total log2 total - sum k log2 k) from xlog2x's table (most counts of a
// chunk or a sample are in it), and how many byte values it uses.
func histBits(hist *[256]uint32, total int) (bits float64, used int) {
	var sum float64
	for _, k := range hist {
		if k > 0 {
			sum += xlog2x(int(k))
			used++
		}
	}
	return max(xlog2x(total)-sum, 0), used
}

// readStream decodes one stream of exactly n bytes from b and returns the rest of b.
func readStream(b []byte, n int) (out, rest []byte, err error) { return readStreamInto(b, n, nil) }

// readStreamInto is readStream decoding into buf where it holds n bytes (out may
// then be buf, or a piece of b for a raw stream).
func readStreamInto(b []byte, n int, buf []byte) (out, rest []byte, err error) {
	if len(b) < 1 {
		return nil, nil, errCorrupt
	}
	kind := b[0]
	l, k := binary.Uvarint(b[1:])
	if k <= 0 || l > uint64(len(b)-1-k) {
		return nil, nil, errCorrupt
	}
	payload := b[1+k : 1+k+int(l)]
	rest = b[1+k+int(l):]
	switch kind {
	case streamRaw:
		if len(payload) != n {
			return nil, nil, errCorrupt
		}
		return payload, rest, nil
	case streamChunked:
		out, err = decodeChunks(payload, n, buf)
		return out, rest, err
	case streamZstd:
		_, dec, err := zstdCodecs()
		if err != nil {
			return nil, nil, err
		}
		// a frame cannot expand by more than its block limits allow; refuse
		// absurd claims before allocating n bytes.
		if n > 0 && len(payload) == 0 {
			return nil, nil, errCorrupt
		}
		if cap(buf) < n {
			buf = make([]byte, 0, n)
		}
		out, err = dec.DecodeAll(payload, buf[:0])
		if err != nil || len(out) != n {
			return nil, nil, errCorrupt
		}
		return out, rest, nil
	}
	return nil, nil, fmt.Errorf("quant: unknown stream kind %d", kind)
}

// decScratch holds the entropy decoders' tables and buffers between decodes.
type decScratch struct {
	h huff0.Scratch
	f fse.Scratch
}

var decScratchPool = sync.Pool{New: func() any { return new(decScratch) }}

// decodeChunks decodes the chunks of a stream of n bytes, into buf where it holds
// n bytes.
func decodeChunks(b []byte, n int, buf []byte) ([]byte, error) {
	// Every chunk costs at least 2 bytes and holds at most chunkSize bytes: check
	// that before allocating the output.
	if uint64(n) > uint64(len(b))/2*chunkSize+chunkSize {
		return nil, errCorrupt
	}
	out := buf[:0]
	if cap(out) < n {
		out = make([]byte, 0, n)
	}
	ds := decScratchPool.Get().(*decScratch)
	defer decScratchPool.Put(ds)
	hs, fs := &ds.h, &ds.f
	for len(out) < n {
		want := min(chunkSize, n-len(out))
		if len(b) < 1 {
			return nil, errCorrupt
		}
		kind := b[0]
		l, k := binary.Uvarint(b[1:])
		if k <= 0 || l > uint64(len(b)-1-k) {
			return nil, errCorrupt
		}
		p := b[1+k : 1+k+int(l)]
		b = b[1+k+int(l):]
		var got []byte
		var err error
		switch kind {
		case chunkRaw:
			got = p
		case chunkRLE:
			if len(p) != 1 {
				return nil, errCorrupt
			}
			for range want {
				out = append(out, p[0])
			}
			continue
		case chunkHuff4X, chunkHuff1X:
			hs.MaxDecodedSize = want
			var s *huff0.Scratch
			var remain []byte
			s, remain, err = huff0.ReadTable(p, hs)
			if err != nil {
				return nil, errCorrupt
			}
			// straight into out: the decoders fill dst up to its capacity
			dst := out[len(out) : len(out) : len(out)+want]
			if kind == chunkHuff4X {
				got, err = s.Decoder().Decompress4X(dst, remain)
			} else {
				got, err = s.Decoder().Decompress1X(dst, remain)
			}
			if err == nil && len(got) == want && want > 0 && &got[0] == &out[:len(out)+1][len(out)] {
				out = out[:len(out)+want]
				continue
			}
		case chunkFSE:
			fs.DecompressLimit = want
			got, err = fse.Decompress(p, fs)
		default:
			return nil, errCorrupt
		}
		if err != nil || len(got) != want {
			return nil, errCorrupt
		}
		out = append(out, got...)
	}
	if len(b) != 0 {
		return nil, errCorrupt
	}
	return out, nil
}
