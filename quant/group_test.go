package quant

import (
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

var groupWidths = []int{1, 2, 3, 4, 5, 6, 7, 8, 16}

// checkGroupPacked fails t unless p is a faithful per-group form of c: its
// Dequantize equals c's bit for bit, every stored u is the code less its group's
// zero point, outliers are exactly the codes outside their group's best window,
// and c's exceptions are kept. It returns the number of outliers.
func checkGroupPacked(t testing.TB, c *Codes, p *GroupPacked) int {
	t.Helper()
	n := len(c.Q)
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if p.N != n || p.Scale64 != 2*c.Tau || p.Scale != float32(2*c.Tau) {
		t.Fatalf("N %d / scale %v for %d codes at tau %v", p.N, p.Scale64, n, c.Tau)
	}
	want := make([]float32, n)
	got := make([]float32, n)
	c.Dequantize(want)
	p.Dequantize(got)
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("bits %d group %d elem %d: %08x want %08x", p.Bits, p.Group, i, math.Float32bits(got[i]), math.Float32bits(want[i]))
		}
	}
	u, err := UnpackBits(p.Data, n, p.Bits)
	if err != nil {
		t.Fatal(err)
	}
	orig := map[uint32]uint32{}
	for _, e := range c.Exceptions {
		orig[e.Index] = e.Bits
	}
	exc := map[uint32]uint32{}
	for k, e := range p.Exceptions {
		if k > 0 && e.Index <= p.Exceptions[k-1].Index {
			t.Fatal("exceptions not sorted")
		}
		exc[e.Index] = e.Bits
	}
	for i, b := range orig {
		if eb, ok := exc[i]; !ok || eb != b {
			t.Fatalf("original exception %d lost", i)
		}
	}
	width := int64(1) << p.Bits
	outliers := 0
	for g, z := range p.Zero {
		start, end := g*p.Group, min((g+1)*p.Group, n)
		var kept []int64
		minIn, any := int64(0), false
		for i := start; i < end; i++ {
			if _, ok := orig[uint32(i)]; ok {
				if u[i] != 0 {
					t.Fatalf("exception slot %d holds %d", i, u[i])
				}
				continue
			}
			q := c.Q[i]
			kept = append(kept, q)
			if eb, ok := exc[uint32(i)]; ok { // an outlier
				outliers++
				if u[i] != 0 || eb != math.Float32bits(float32(float64(q)*2*c.Tau)) {
					t.Fatalf("outlier %d: slot %d, bits %08x", i, u[i], eb)
				}
				if q >= int64(z) && q-int64(z) < width {
					t.Fatalf("outlier %d: code %d fits window at %d", i, q, z)
				}
				continue
			}
			if int64(u[i])+int64(z) != q {
				t.Fatalf("elem %d: u %d + zero %d != code %d", i, u[i], z, q)
			}
			if !any || q < minIn {
				minIn, any = q, true
			}
		}
		if any && int64(z) != minIn {
			t.Fatalf("group %d: zero %d, smallest kept code %d", g, z, minIn)
		}
		// brute force: no window within int32 keeps more codes
		best := 0
		for _, zz := range kept {
			if zz < math.MinInt32 || zz > math.MaxInt32 {
				continue
			}
			cnt := 0
			for _, q := range kept {
				if q >= zz && q-zz < width {
					cnt++
				}
			}
			best = max(best, cnt)
		}
		groupOut := 0
		for i := start; i < end; i++ {
			if _, ok := orig[uint32(i)]; !ok {
				if _, ok := exc[uint32(i)]; ok {
					groupOut++
				}
			}
		}
		if groupOut != len(kept)-best {
			t.Fatalf("group %d: %d outliers, best window leaves %d", g, groupOut, len(kept)-best)
		}
	}
	if len(p.Exceptions) != len(c.Exceptions)+outliers {
		t.Fatalf("%d exceptions: %d original + %d outliers expected", len(p.Exceptions), len(c.Exceptions), outliers)
	}
	return outliers
}

func randomCodes(r *rand.Rand, n int, kind string) *Codes {
	c := &Codes{Tau: 5e-4, Q: make([]int64, n)}
	for i := range c.Q {
		var q int64
		switch kind {
		case "zeros":
		case "small":
			q = int64(r.NormFloat64() * 2)
		case "medium":
			q = int64(r.NormFloat64()*60) + 1000
		case "wide":
			q = int64(r.NormFloat64() * 1e7)
		case "extreme":
			q = r.Int64N(2*MaxCode+1) - MaxCode
		case "outliers":
			q = int64(i%5) - 2
			if r.IntN(200) == 0 {
				q = []int64{1 << 40, -1 << 40, 300, -70000, math.MaxInt32, math.MinInt32}[r.IntN(6)]
			}
		case "far": // a cluster beyond int32: no zero point can reach it
			q = 1<<35 + int64(r.IntN(8))
			if i%3 == 0 {
				q = int64(r.IntN(8))
			}
		case "uniform8":
			q = r.Int64N(256) - 128
		}
		c.Q[i] = q
	}
	for i := 0; i < n; i += 1 + r.IntN(300) {
		c.Exceptions = append(c.Exceptions, Exception{uint32(i), r.Uint32()})
		c.Q[i] = 0
		if r.IntN(2) == 0 {
			c.Q[i] = 1 << 45 // exception slots may hold any code
		}
	}
	return c
}

var codeKinds = []string{"zeros", "small", "medium", "wide", "extreme", "outliers", "far", "uniform8"}

func TestPackGroupsRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	for _, kind := range codeKinds {
		for _, n := range []int{0, 1, 100, 3000} {
			c := randomCodes(r, n, kind)
			for _, bits := range groupWidths {
				for _, group := range []int{1, 3, 32, 64, 128, 1000, n, n + 7} {
					if group < 1 {
						continue
					}
					p, err := c.PackGroups(bits, group)
					if err != nil {
						t.Fatal(kind, n, bits, group, err)
					}
					checkGroupPacked(t, c, p)
				}
			}
		}
	}
}

// groupOutliers is how many codes PackGroups(bits, group) turns into exceptions.
func groupOutliers(t *testing.T, c *Codes, bits, group int) int {
	p, err := c.PackGroups(bits, group)
	if err != nil {
		t.Fatal(err)
	}
	return len(p.Exceptions) - len(c.Exceptions)
}

func TestChooseGroupBits(t *testing.T) {
	r := rand.New(rand.NewPCG(43, 44))
	for _, kind := range codeKinds {
		for _, n := range []int{1, 1000, 50000} {
			c := randomCodes(r, n, kind)
			for _, group := range []int{1, 16, 64, 128, 4096} {
				b := ChooseGroupBits(c, group)
				limit := n / 1024
				out := groupOutliers(t, c, b, group)
				if b != 16 && out > limit {
					t.Fatalf("%s/%d/%d: width %d leaves %d outliers > %d", kind, n, group, b, out, limit)
				}
				// no smaller width would do
				for _, s := range groupWidths {
					if s >= b {
						break
					}
					if o := groupOutliers(t, c, s, group); o <= limit {
						t.Fatalf("%s/%d/%d: chose %d but %d leaves only %d outliers", kind, n, group, b, s, o)
					}
				}
				if n == 50000 && group == 128 {
					t.Logf("%-8s group %4d: %2d bits, %d outliers", kind, group, b, out)
				}
			}
		}
	}
	if ChooseGroupBits(&Codes{Tau: 1}, 0) != 0 {
		t.Fatal("group 0")
	}
}

// Codes of a realistic fine-tune: the base, the fine-tune and their delta.
func TestGroupPackedFineTune(t *testing.T) {
	const n = 1 << 18
	base, ft := fineTunePair(n, 45)
	for _, tau := range []float64{1e-4, 1e-3} {
		cb, _ := Quantize(base, tau)
		cf, _ := Quantize(ft, tau)
		d, _ := Delta(cf, cb)
		for name, c := range map[string]*Codes{"base": cb, "finetune": cf, "delta": d} {
			for _, group := range []int{32, 128} {
				bits := ChooseGroupBits(c, group)
				p, err := c.PackGroups(bits, group)
				if err != nil {
					t.Fatal(err)
				}
				out := checkGroupPacked(t, c, p)
				size := len(p.Data) + 4*len(p.Zero) + 8*len(p.Exceptions)
				t.Logf("tau %g %-8s group %3d: %2d bits, %4d outliers, %.3f bytes/elem",
					tau, name, group, bits, out, float64(size)/n)
			}
		}
	}
}

func TestDecodeGroupPacked(t *testing.T) {
	r := rand.New(rand.NewPCG(47, 48))
	for _, kind := range codeKinds {
		c := randomCodes(r, 20000, kind)
		blob, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, group := range []int{1, 64, 128} {
			for _, bits := range []int{0, 4, 16} {
				p, err := DecodeGroupPacked(blob, len(c.Q), bits, group)
				if err != nil {
					t.Fatal(kind, err)
				}
				b := bits
				if b == 0 {
					b = ChooseGroupBits(c, group)
				}
				want, err := c.PackGroups(b, group)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(p, want) {
					t.Fatalf("%s bits %d group %d: differs from PackGroups", kind, bits, group)
				}
			}
		}
		if _, err := DecodeGroupPacked(blob, len(c.Q)-1, 0, 64); err == nil {
			t.Fatal("maxElems not enforced")
		}
		if _, err := DecodeGroupPacked(blob[:len(blob)/2], len(c.Q), 0, 64); err == nil {
			t.Fatal("truncated blob accepted")
		}
	}
	blob, _ := Encode(&Codes{Tau: 1, Q: []int64{1, 2}})
	for _, a := range [][2]int{{9, 64}, {-1, 64}, {17, 64}, {8, 0}, {0, -5}} {
		if _, err := DecodeGroupPacked(blob, 2, a[0], a[1]); err == nil {
			t.Fatalf("bits %d group %d accepted", a[0], a[1])
		}
	}
}

func TestPackGroupsErrors(t *testing.T) {
	c := &Codes{Tau: 1e-3, Q: []int64{1, 2, 3}}
	for _, b := range []int{0, 9, 15, 17, -1} {
		if _, err := c.PackGroups(b, 2); err == nil {
			t.Errorf("width %d accepted", b)
		}
	}
	if _, err := c.PackGroups(8, 0); err == nil {
		t.Error("group 0 accepted")
	}
	if _, err := (&Codes{Tau: 0, Q: []int64{1}}).PackGroups(8, 2); err == nil {
		t.Error("tau 0 accepted")
	}
	bad := &Codes{Tau: 1e-3, Q: []int64{1, 2, 3}, Exceptions: []Exception{{2, 0}, {1, 0}}}
	if _, err := bad.PackGroups(8, 2); err == nil {
		t.Error("unsorted exceptions accepted")
	}
	bad.Exceptions = []Exception{{3, 0}}
	if _, err := bad.PackGroups(8, 2); err == nil {
		t.Error("exception out of range accepted")
	}

	p, err := c.PackGroups(2, 2)
	if err != nil {
		t.Fatal(err)
	}
	breakers := []func(q *GroupPacked){
		func(q *GroupPacked) { q.Bits = 9 },
		func(q *GroupPacked) { q.Group = 0 },
		func(q *GroupPacked) { q.Data = q.Data[:0] },
		func(q *GroupPacked) { q.Zero = q.Zero[:1] },
		func(q *GroupPacked) { q.Scale64 = math.NaN() },
		func(q *GroupPacked) { q.Scale = 3 },
		func(q *GroupPacked) { q.Exceptions = []Exception{{5, 0}} },
		func(q *GroupPacked) { q.N = 100 },
	}
	for k, br := range breakers {
		q := *p
		q.Data, q.Zero = slices.Clone(p.Data), slices.Clone(p.Zero)
		br(&q)
		if q.Validate() == nil {
			t.Errorf("breaker %d: Validate passed", k)
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("breaker %d: Dequantize did not panic", k)
				}
			}()
			q.Dequantize(make([]float32, 8))
		}()
	}
}

func benchGroupCodes(b *testing.B, tau float64) *Codes {
	d, _ := benchDelta(b, tau)
	return d
}

func BenchmarkPackGroups(b *testing.B) {
	for _, tau := range []float64{1e-4, 1e-3} {
		b.Run(tauName(tau), func(b *testing.B) {
			d := benchGroupCodes(b, tau)
			bits := ChooseGroupBits(d, 128)
			b.ReportMetric(float64(bits), "bits")
			b.SetBytes(4 * benchN)
			for b.Loop() {
				if _, err := d.PackGroups(bits, 128); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkChooseGroupBits(b *testing.B) {
	for _, tau := range []float64{1e-4, 1e-3} {
		b.Run(tauName(tau), func(b *testing.B) {
			d := benchGroupCodes(b, tau)
			b.SetBytes(4 * benchN)
			for b.Loop() {
				ChooseGroupBits(d, 128)
			}
		})
	}
}

// BenchmarkDecodeGroupPacked is the read path for a kernel: an Encode()d delta
// blob to its per-group form, width chosen, in MB/s of float32 weights.
func BenchmarkDecodeGroupPacked(b *testing.B) {
	for _, tau := range []float64{1e-4, 1e-3} {
		b.Run(tauName(tau), func(b *testing.B) {
			d := benchGroupCodes(b, tau)
			blob, _ := Encode(d)
			b.SetBytes(4 * benchN)
			for b.Loop() {
				if _, err := DecodeGroupPacked(blob, benchN, 0, 128); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkGroupDequantize(b *testing.B) {
	d := benchGroupCodes(b, 1e-4)
	p, _ := d.PackGroups(ChooseGroupBits(d, 128), 128)
	dst := make([]float32, benchN)
	b.SetBytes(4 * benchN)
	for b.Loop() {
		p.Dequantize(dst)
	}
}

// Decode reads every packed width and plane count the same whether it allocates
// or reuses a dirty buffer (as DecodeGroupPacked does).
func TestDecodeEveryWidth(t *testing.T) {
	r := rand.New(rand.NewPCG(49, 50))
	for _, n := range []int{0, 1, 2, 7, 9, 64, 1001} {
		for _, kind := range codeKinds {
			c := randomCodes(r, n, kind)
			var blobs [][]byte
			for width := 0; width <= 64; width++ {
				b, err := encodeAs(c, codecPacked, width, math.MaxInt)
				if err != nil {
					t.Fatal(err)
				}
				blobs = append(blobs, b)
				if width%8 == 0 {
					if b, err = encodeAs(c, codecPlanes, width, math.MaxInt); err != nil {
						t.Fatal(err)
					}
					blobs = append(blobs, b)
				}
			}
			for _, b := range blobs {
				for _, buf := range [][]int64{nil, make([]int64, n), make([]int64, 3, n+5)} {
					for i := range buf[:cap(buf)] {
						buf[:cap(buf)][i] = -12345
					}
					d, err := decode(b, n, buf)
					if err != nil {
						t.Fatalf("%s n %d codec %d width %d: %v", kind, n, b[1], b[2], err)
					}
					if !slices.Equal(d.Q, c.Q) || !slices.Equal(d.Exceptions, c.Exceptions) {
						t.Fatalf("%s n %d codec %d width %d: codes differ", kind, n, b[1], b[2])
					}
				}
			}
		}
	}
}
