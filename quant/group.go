package quant

// Per-group packed form for compute kernels.
//
// The elements are cut into groups of Group consecutive elements (the last group
// may be shorter). Each group g has a zero point Zero[g], the smallest code it
// keeps, and element i of group g = i / Group is the unsigned integer
//
//	u = Q[i] - Zero[g]   at bits [i*Bits, (i+1)*Bits) of Data (the PackBits layout)
//
// whose value is float32(float64(int64(u) + int64(Zero[g])) * Scale64), exactly what
// (*Codes).Dequantize computes from Q[i]. A group's kept codes must lie in
// [Zero[g], Zero[g] + 2^Bits); codes outside the window that keeps the most of
// them (outliers) become exceptions holding their reconstructed float32 bits, with
// u = 0 in their slot, so the reconstruction stays bit for bit that of the Codes.
// The Codes' own exceptions are kept; all exceptions are sorted by index and
// override their elements.

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
)

// GroupPacked is the per-group fixed-width form of Codes (see above).
type GroupPacked struct {
	Bits       int     // bits per element: 1..8 or 16
	Group      int     // elements per group, >= 1
	N          int     // number of elements
	Data       []byte  // PackedLen(N, Bits) bytes: u of element i at bits [i*Bits, (i+1)*Bits)
	Zero       []int32 // one per group (ceil(N/Group)): the group's smallest kept code
	Scale      float32 // the grid step 2 tau as a float32, for kernels
	Scale64    float64 // the grid step 2 tau
	Exceptions []Exception
}

func validPackBits(b int) bool { return b >= 1 && b <= 8 || b == 16 }

// groupCount is the number of groups of n elements.
func groupCount(n, group int) int { return int((uint64(n) + uint64(group) - 1) / uint64(group)) }

// Validate checks that p's fields are consistent with each other.
func (p *GroupPacked) Validate() error {
	switch {
	case !validPackBits(p.Bits):
		return fmt.Errorf("quant: group pack width %d not in 1..8 or 16", p.Bits)
	case p.Group < 1:
		return fmt.Errorf("quant: group size %d < 1", p.Group)
	case p.N < 0 || len(p.Data) != PackedLen(p.N, p.Bits):
		return fmt.Errorf("quant: %d data bytes for %d elements of %d bits", len(p.Data), p.N, p.Bits)
	case len(p.Zero) != groupCount(p.N, p.Group):
		return fmt.Errorf("quant: %d zero points for %d groups", len(p.Zero), groupCount(p.N, p.Group))
	case !(p.Scale64 > 0) || math.IsInf(p.Scale64, 0) || p.Scale != float32(p.Scale64):
		return errors.New("quant: group packed form has no valid scale")
	}
	return checkExceptions(p.Exceptions, p.N)
}

// checkExceptions checks that exception indices are strictly increasing and < n.
func checkExceptions(ex []Exception, n int) error {
	prev := -1
	for _, e := range ex {
		if int(e.Index) <= prev || int(e.Index) >= n {
			return fmt.Errorf("quant: exceptions not sorted or out of range at %d", e.Index)
		}
		prev = int(e.Index)
	}
	return nil
}

// PackGroups returns the per-group form of c at the given width (1..8 or 16) and
// group size (>= 1). It never fails for lack of width: codes that do not fit their
// group's window become exceptions (ChooseGroupBits picks a width that keeps them
// rare). It fails on a bad width, group size or tau, or unsorted exceptions.
func (c *Codes) PackGroups(bits, group int) (*GroupPacked, error) {
	return c.packGroups(bits, group, nil)
}

// packGroups is PackGroups; zero, if not nil, holds the zero points the groups
// get (from chooseGroupBits, as PackGroups would pick them) and becomes p.Zero.
func (c *Codes) packGroups(bits, group int, zero []int32) (*GroupPacked, error) {
	if !validPackBits(bits) {
		return nil, fmt.Errorf("quant: group pack width %d not in 1..8 or 16", bits)
	}
	if group < 1 {
		return nil, fmt.Errorf("quant: group size %d < 1", group)
	}
	if err := checkTau(c.Tau); err != nil {
		return nil, err
	}
	n := len(c.Q)
	if err := checkExceptions(c.Exceptions, n); err != nil {
		return nil, err
	}
	step := 2 * c.Tau
	p := &GroupPacked{
		Bits: bits, Group: group, N: n,
		Data:  make([]byte, PackedLen(n, bits)),
		Zero:  zero,
		Scale: float32(step), Scale64: step,
	}
	if zero == nil {
		p.Zero = make([]int32, groupCount(n, group))
	}
	// the result has the Codes' exceptions plus the outliers: usually none
	p.Exceptions = make([]Exception, 0, len(c.Exceptions))
	width := uint64(1) << bits
	w := packWriter{out: p.Data, bits: uint(bits)}
	var scratch []int64
	ex := c.Exceptions
	for g := range p.Zero {
		start := g * group
		end := min(start+group, n)
		q := c.Q[start:end]
		if zero == nil {
			var z int64
			z, scratch = groupZero(q, start, ex, width, scratch)
			p.Zero[g] = int32(z)
		}
		z := int64(p.Zero[g])
		for j, v := range q {
			i := start + j
			if len(ex) > 0 && int(ex[0].Index) == i {
				p.Exceptions = append(p.Exceptions, ex[0])
				ex = ex[1:]
				w.put(0)
				continue
			}
			u := uint64(v) - uint64(z)
			if u >= width {
				p.Exceptions = append(p.Exceptions, Exception{uint32(i), math.Float32bits(float32(float64(v) * step))})
				u = 0
			}
			w.put(u)
		}
	}
	w.flush()
	return p, nil
}

// groupZero returns the zero point of the group q starting at element start (ex:
// the exceptions from the group on) at the given window width: its smallest kept
// code if all fit, else bestWindow's. scratch is reused and returned.
func groupZero(q []int64, start int, ex []Exception, width uint64, scratch []int64) (int64, []int64) {
	lo, hi, kept := groupRange(q, start, ex)
	if kept == 0 {
		return 0, scratch
	}
	if lo >= math.MinInt32 && lo <= math.MaxInt32 && uint64(hi)-uint64(lo) < width {
		return lo, scratch
	}
	scratch = keptCodes(scratch[:0], q, start, ex)
	slices.Sort(scratch)
	z, _ := bestWindow(scratch, width)
	return z, scratch
}

// groupRange returns the smallest and largest code of q (the group starting at
// element start) that is not an exception, and how many there are; ex is the
// exception list from this group on.
func groupRange(q []int64, start int, ex []Exception) (lo, hi int64, kept int) {
	end := start + len(q)
	if len(ex) == 0 || int(ex[0].Index) >= end {
		// no exception in the group: the common case
		if len(q) == 0 {
			return 0, 0, 0
		}
		lo, hi = q[0], q[0]
		for _, v := range q[1:] {
			lo = min(lo, v)
			hi = max(hi, v)
		}
		return lo, hi, len(q)
	}
	first := true
	for j, v := range q {
		if len(ex) > 0 && int(ex[0].Index) == start+j {
			ex = ex[1:]
			continue
		}
		if first {
			lo, hi, first = v, v, false
		} else {
			lo, hi = min(lo, v), max(hi, v)
		}
		kept++
	}
	return lo, hi, kept
}

// keptCodes appends the non-exception codes of the group q starting at start.
func keptCodes(dst, q []int64, start int, ex []Exception) []int64 {
	for j, v := range q {
		if len(ex) > 0 && int(ex[0].Index) == start+j {
			ex = ex[1:]
			continue
		}
		dst = append(dst, v)
	}
	return dst
}

// bestWindow returns the smallest zero point z, itself one of the sorted codes s
// and within int32, that maximizes the number of codes in [z, z+width), and that
// number (z = 0 and 0 if no code is within int32).
func bestWindow(s []int64, width uint64) (z int64, count int) {
	k := 0
	for j, v := range s {
		if v < math.MinInt32 {
			continue
		}
		if v > math.MaxInt32 {
			break
		}
		if j > 0 && s[j-1] == v && count > 0 {
			continue // same window as before, fewer codes
		}
		k = max(k, j)
		for k < len(s) && uint64(s[k])-uint64(v) < width {
			k++
		}
		if k-j > count {
			z, count = v, k-j
		}
	}
	return z, count
}

// packWriter writes values of at most 32 bits in the PackBits layout.
type packWriter struct {
	out  []byte
	o    int
	acc  uint64
	nacc uint
	bits uint
}

func (w *packWriter) put(u uint64) {
	w.acc |= u << w.nacc
	w.nacc += w.bits
	if w.nacc >= 32 {
		o := w.out[w.o : w.o+4]
		o[0], o[1], o[2], o[3] = byte(w.acc), byte(w.acc>>8), byte(w.acc>>16), byte(w.acc>>24)
		w.o += 4
		w.acc >>= 32
		w.nacc -= 32
	}
}

func (w *packWriter) flush() {
	for w.nacc > 0 {
		w.out[w.o] = byte(w.acc)
		w.o++
		w.acc >>= 8
		w.nacc -= min(w.nacc, 8)
	}
}

// ChooseGroupBits returns the smallest width among 1..8 and 16 at which
// PackGroups(width, group) turns at most len(c.Q)/1024 codes into outliers (16 if
// none does). Exceptions of c are not counted. It returns 0 for a group size < 1.
func ChooseGroupBits(c *Codes, group int) int {
	if group < 1 {
		return 0
	}
	b, _ := chooseGroupBits(c, group)
	return b
}

// chooseGroupBits is ChooseGroupBits (group >= 1); it also returns the zero
// points PackGroups would give the groups at that width (nil if it gives up and
// returns 16). Exceptions must be sorted.
func chooseGroupBits(c *Codes, group int) (int, []int32) {
	n := len(c.Q)
	limit := n >> 10
	ng := groupCount(n, group)
	// lo[g] is group g's smallest kept code; need[g] the width it needs to keep
	// all its codes (65: no width will, its smallest code is beyond int32)
	lo := make([]int64, ng)
	need := make([]uint8, ng)
	var hist [66]int
	ex := c.Exceptions
	for g := range need {
		start := g * group
		end := min(start+group, n)
		for len(ex) > 0 && int(ex[0].Index) < start {
			ex = ex[1:]
		}
		l, h, kept := groupRange(c.Q[start:end], start, ex)
		switch {
		case kept == 0:
			need[g] = 0
		case l < math.MinInt32 || l > math.MaxInt32:
			need[g] = 65
		default:
			lo[g] = l
			need[g] = uint8(bits.Len64(uint64(h) - uint64(l)))
		}
		hist[need[g]]++
	}
	var scratch []int64
	type slowZero struct {
		g int
		z int64
	}
	var slow []slowZero
	for _, b := range [...]int{1, 2, 3, 4, 5, 6, 7, 8, 16} {
		over := ng // groups needing more than b bits
		for k := 0; k <= b; k++ {
			over -= hist[k]
		}
		if over > limit {
			continue // each such group has an outlier at least
		}
		outliers := 0
		slow = slow[:0]
		ex := c.Exceptions
		for g, nb := range need {
			if int(nb) <= b {
				continue
			}
			start := g * group
			end := min(start+group, n)
			for len(ex) > 0 && int(ex[0].Index) < start {
				ex = ex[1:]
			}
			scratch = keptCodes(scratch[:0], c.Q[start:end], start, ex)
			slices.Sort(scratch)
			z, kept := bestWindow(scratch, uint64(1)<<b)
			slow = append(slow, slowZero{g, z})
			outliers += len(scratch) - kept
			if outliers > limit {
				break
			}
		}
		if outliers <= limit {
			zero := make([]int32, ng)
			for g, l := range lo {
				zero[g] = int32(l) // 0 for an empty group
			}
			for _, s := range slow {
				zero[s.g] = int32(s.z)
			}
			return b, zero
		}
	}
	return 16, nil
}

// Dequantize writes the reconstruction into dst, which must hold p.N values; it is
// the same, bit for bit, as the Dequantize of the Codes p was packed from. It is
// the reference a kernel is tested against, written for clarity. It panics if p
// fails Validate or dst is short.
func (p *GroupPacked) Dequantize(dst []float32) {
	if err := p.Validate(); err != nil {
		panic(err.Error())
	}
	if len(dst) < p.N {
		panic("quant: Dequantize destination too short")
	}
	mask := uint32(1)<<p.Bits - 1
	for i := range p.N {
		bit := uint64(i) * uint64(p.Bits)
		// an element spans at most 3 bytes (16 bits at a bit offset up to 7)
		var win uint32
		for k := uint64(0); k < 3 && bit/8+k < uint64(len(p.Data)); k++ {
			win |= uint32(p.Data[bit/8+k]) << (8 * k)
		}
		u := win >> (bit % 8) & mask
		q := int64(u) + int64(p.Zero[i/p.Group])
		dst[i] = float32(float64(q) * p.Scale64)
	}
	for _, e := range p.Exceptions {
		dst[e.Index] = math.Float32frombits(e.Bits)
	}
}

// DecodeGroupPacked turns a blob written by Encode straight into its per-group
// form: Decode(blob, maxElems) followed by PackGroups(bits, group), with bits 0
// meaning ChooseGroupBits(codes, group). The intermediate codes live in a buffer
// reused across calls (held until the garbage collector drops it).
func DecodeGroupPacked(blob []byte, maxElems, bits, group int) (*GroupPacked, error) {
	if bits != 0 && !validPackBits(bits) {
		return nil, fmt.Errorf("quant: group pack width %d not in 0 (choose), 1..8 or 16", bits)
	}
	if group < 1 {
		return nil, fmt.Errorf("quant: group size %d < 1", group)
	}
	c, err := decode(blob, maxElems, takeCodes())
	if err != nil {
		return nil, err
	}
	var zero []int32
	if bits == 0 && checkExceptions(c.Exceptions, len(c.Q)) == nil {
		bits, zero = chooseGroupBits(c, group)
	} else if bits == 0 {
		bits = 16 // packGroups refuses the exceptions below
	}
	p, err := c.packGroups(bits, group, zero)
	Release(c)
	return p, err
}
