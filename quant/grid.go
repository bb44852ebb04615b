package quant

import (
	"errors"
	"fmt"
	"math"
	"sync"
)

// MaxCode is the largest magnitude of a grid code. Values with |w|/step above it are
// stored as exceptions, so codes and their differences always fit in int64 and
// float64(q) is exact.
const MaxCode = 1 << 52

// Exception is an element kept exactly: its index and its float32 bit pattern.
type Exception struct {
	Index uint32
	Bits  uint32
}

// Codes are the grid codes of a tensor (or of a delta between two tensors on the same
// grid). Element i reconstructs as float32(float64(Q[i]) * 2 * Tau) unless it is
// listed in Exceptions, which are sorted by index; Q is 0 at exception indices.
type Codes struct {
	Tau        float64
	Q          []int64
	Exceptions []Exception
}

// Step returns the grid step 2*tau.
func (c *Codes) Step() float64 { return 2 * c.Tau }

func checkTau(tau float64) error {
	if math.IsNaN(tau) || math.IsInf(tau, 0) || tau <= 0 || math.IsInf(2*tau, 0) {
		return fmt.Errorf("quant: tau must be finite and > 0, got %v", tau)
	}
	return nil
}

// Quantize maps w onto the grid of step 2*tau. Every element of the result's
// Dequantize is within tau of w (absolute, compared in float64 after the rounding to
// float32); elements that cannot be held on the grid are exceptions.
func Quantize(w []float32, tau float64) (*Codes, error) {
	if err := checkTau(tau); err != nil {
		return nil, err
	}
	if uint64(len(w)) > math.MaxUint32 {
		return nil, errors.New("quant: tensor has more than 2^32-1 elements")
	}
	step := 2 * tau
	inv := 1 / step
	c := &Codes{Tau: tau, Q: codesOf(len(w))}
	for i, v := range w {
		x := float64(v)
		r := math.RoundToEven(x * inv)
		// r != r catches NaN; Inf and huge values fail the magnitude test.
		if !(r <= MaxCode && r >= -MaxCode) {
			c.Exceptions = append(c.Exceptions, Exception{uint32(i), math.Float32bits(v)})
			c.Q[i] = 0
			continue
		}
		q := int64(r)
		rec := float64(float32(r * step))
		if math.Abs(rec-x) > tau {
			var ok bool
			if q, ok = fixCode(x, q, step, tau); !ok {
				c.Exceptions = append(c.Exceptions, Exception{uint32(i), math.Float32bits(v)})
				q = 0
			}
		}
		c.Q[i] = q
	}
	return c, nil
}

// codeBufs holds *[]int64 code arrays given back by Release, for Quantize,
// QuantizeFor and Decode to fill again: an import quantizes and decodes a few
// arrays of 8 bytes an element per tensor, and fresh ones cost it 6-10% (zeroing,
// page faults, collections).
var codeBufs sync.Pool

// takeCodes returns a released code array (length 0), or nil.
func takeCodes() []int64 {
	if b, ok := codeBufs.Get().(*[]int64); ok {
		return (*b)[:0]
	}
	return nil
}

// codesOf returns an array of n codes to be overwritten in full: a released one
// when it is large enough, else a new one.
func codesOf(n int) []int64 {
	if b := takeCodes(); cap(b) >= n {
		return b[:n]
	}
	return make([]int64, n)
}

// Release gives the array of c's codes back for later Quantize, QuantizeFor and
// Decode calls to reuse, and clears c.Q. Nothing may use the array afterwards:
// not c, nor Codes that share it (DeltaOver's result shares its base's).
func Release(c *Codes) {
	if c == nil || cap(c.Q) == 0 {
		return
	}
	q := c.Q[:0]
	c.Q = nil
	codeBufs.Put(&q)
}

// fixCode looks at the neighbours of q for a code whose float32 reconstruction is
// within tau of x.
func fixCode(x float64, q int64, step, tau float64) (int64, bool) {
	for _, cand := range [...]int64{q - 1, q + 1} {
		if cand > MaxCode || cand < -MaxCode {
			continue
		}
		rec := float64(float32(float64(cand) * step))
		if math.Abs(rec-x) <= tau {
			return cand, true
		}
	}
	return 0, false
}

// Dequantize writes the reconstruction into dst, which must hold len(c.Q) values
// (it panics otherwise, like copy into a short slice would be a bug).
func (c *Codes) Dequantize(dst []float32) {
	if len(dst) < len(c.Q) {
		panic("quant: Dequantize destination too short")
	}
	step := 2 * c.Tau
	dst = dst[:len(c.Q)]
	for i, q := range c.Q {
		dst[i] = float32(float64(q) * step)
	}
	for _, e := range c.Exceptions {
		if int(e.Index) < len(dst) {
			dst[e.Index] = math.Float32frombits(e.Bits)
		}
	}
}

// Delta returns c - base on the common grid: Q = c.Q - base.Q, with c's exceptions
// (Q is 0 there). Both must have the same tau and length. The result's array may
// be given back with Release.
func Delta(c, base *Codes) (*Codes, error) {
	if err := sameGrid(c, base); err != nil {
		return nil, err
	}
	return delta(c, base, &Codes{Tau: c.Tau, Q: codesOf(len(c.Q))}), nil
}

// DeltaOver is Delta written over base, for a caller done with base's codes: it
// saves a copy of the codes (8 bytes an element) on a large tensor's import.
func DeltaOver(c, base *Codes) (*Codes, error) {
	if err := sameGrid(c, base); err != nil {
		return nil, err
	}
	return delta(c, base, base), nil
}

// Narrow is a copy of a base's codes at 2 bytes a code, for a caller that keeps
// them between deltas (a quarter of Codes' memory, and of the page faults of
// filling it). It has no exceptions: Delta reads only a base's Q, which is 0 at
// its exceptions.
type Narrow struct {
	Tau float64
	Q   []int16
}

// NarrowOf copies c's codes into a Narrow, or returns nil if one does not fit in
// an int16.
func NarrowOf(c *Codes) *Narrow {
	q := make([]int16, len(c.Q))
	for i, v := range c.Q {
		if v < math.MinInt16 || v > math.MaxInt16 {
			return nil
		}
		q[i] = int16(v)
	}
	return &Narrow{Tau: c.Tau, Q: q}
}

// DeltaNarrow is Delta against a base kept as a Narrow.
func DeltaNarrow(c *Codes, base *Narrow) (*Codes, error) {
	if c.Tau != base.Tau || len(c.Q) != len(base.Q) {
		return nil, fmt.Errorf("quant: delta against a narrow base of tau %v and %d codes, not %v and %d", base.Tau, len(base.Q), c.Tau, len(c.Q))
	}
	d := &Codes{Tau: c.Tau, Q: codesOf(len(c.Q))}
	b := base.Q[:len(c.Q)]
	for i, q := range c.Q {
		d.Q[i] = q - int64(b[i])
	}
	d.Exceptions = append([]Exception(nil), c.Exceptions...)
	for _, e := range d.Exceptions {
		if int(e.Index) < len(d.Q) {
			d.Q[e.Index] = 0
		}
	}
	return d, nil
}

func sameGrid(c, base *Codes) error {
	if c.Tau != base.Tau {
		return fmt.Errorf("quant: delta across grids (tau %v vs %v)", c.Tau, base.Tau)
	}
	if len(c.Q) != len(base.Q) {
		return fmt.Errorf("quant: delta length %d vs base %d", len(c.Q), len(base.Q))
	}
	return nil
}

// delta sets d to c - base (d may be base) and returns it.
func delta(c, base, d *Codes) *Codes {
	for i, q := range c.Q {
		d.Q[i] = q - base.Q[i]
	}
	d.Exceptions = append([]Exception(nil), c.Exceptions...)
	for _, e := range d.Exceptions {
		if int(e.Index) < len(d.Q) {
			d.Q[e.Index] = 0
		}
	}
	return d
}

// AddBase reverses Delta: it returns the codes base.Q + d.Q with d's exceptions. It
// fails when the grids or lengths differ or a sum leaves [-MaxCode, MaxCode] (which
// only corrupt input can cause).
func (d *Codes) AddBase(base *Codes) (*Codes, error) {
	if d.Tau != base.Tau {
		return nil, fmt.Errorf("quant: base on another grid (tau %v vs %v)", base.Tau, d.Tau)
	}
	if len(d.Q) != len(base.Q) {
		return nil, fmt.Errorf("quant: delta length %d vs base %d", len(d.Q), len(base.Q))
	}
	c := &Codes{Tau: d.Tau, Q: make([]int64, len(d.Q))}
	var bad int64
	for i, q := range d.Q {
		s := q + base.Q[i]
		c.Q[i] = s
		// flag any sum out of range without a branch per element
		bad |= (MaxCode - s) | (s + MaxCode)
	}
	c.Exceptions = append([]Exception(nil), d.Exceptions...)
	for _, e := range c.Exceptions {
		if int(e.Index) < len(c.Q) {
			c.Q[e.Index] = 0
		}
	}
	if bad < 0 {
		// recheck precisely: the flag can only be negative if some sum is out of range
		for i, s := range c.Q {
			if s > MaxCode || s < -MaxCode {
				if !isException(c.Exceptions, i) {
					return nil, fmt.Errorf("quant: code %d out of range at %d", s, i)
				}
			}
		}
	}
	return c, nil
}

func isException(ex []Exception, i int) bool {
	lo, hi := 0, len(ex)
	for lo < hi {
		m := (lo + hi) / 2
		if int(ex[m].Index) < i {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo < len(ex) && int(ex[lo].Index) == i
}
