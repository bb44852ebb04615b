package hnsw_test

import (
	"encoding/binary"
	"io"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/hnsw"
)

type tensor struct {
	family, model, name string
	vec                 []float32
}

func readF32(t *testing.T, path string) []tensor {
	src, err := graph.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	base := strings.TrimSuffix(filepath.Base(path), ".safetensors")
	k := strings.LastIndex(base, "-")
	var out []tensor
	for i, ti := range src.Tensors {
		if ti.DType != graph.F32 {
			continue
		}
		r, err := src.Open(i)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		v := make([]float32, len(b)/4)
		for j := range v {
			v[j] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*j:]))
		}
		out = append(out, tensor{base[:k], base[k+1:], ti.Name, v})
	}
	return out
}

// TestRealFamilies indexes the base and "other" models of the families in
// testdata/family (one index per element count) and checks that every fine-tune
// tensor finds its own family's base tensor, and that search + rerank agrees with
// brute force.
func TestRealFamilies(t *testing.T) {
	files, _ := filepath.Glob("../testdata/family/*.safetensors")
	var bases, queries []tensor
	for _, f := range files {
		m := strings.TrimSuffix(filepath.Base(f), ".safetensors")
		switch {
		case strings.HasSuffix(m, "-base"), strings.HasSuffix(m, "-other"):
			bases = append(bases, readF32(t, f)...)
		case strings.Contains(m, "-ft"):
			queries = append(queries, readF32(t, f)...)
		}
	}
	if len(bases) == 0 || len(queries) == 0 {
		t.Skip("no model families in testdata/family")
	}
	idx := map[int]*hnsw.Index{}
	for i, b := range bases {
		d := len(b.vec)
		if idx[d] == nil {
			idx[d], _ = hnsw.New(d, hnsw.DefaultParams(d))
		}
		if _, err := idx[d].Insert(hnsw.ID(i), b.vec); err != nil {
			t.Fatal(err)
		}
	}
	exact := func(id hnsw.ID) ([]float32, error) { return bases[id].vec, nil }
	checked, own := 0, 0
	for _, q := range queries {
		x := idx[len(q.vec)]
		if x == nil {
			continue
		}
		res, err := x.Search(q.vec, 5)
		if err != nil {
			t.Fatal(err)
		}
		res, err = hnsw.Rerank(q.vec, res, exact)
		if err != nil {
			t.Fatal(err)
		}
		// brute force over exact distances
		best, bd := -1, math.Inf(1)
		for i, b := range bases {
			if len(b.vec) != len(q.vec) {
				continue
			}
			var d float64
			for j := range b.vec {
				e := float64(b.vec[j]) - float64(q.vec[j])
				d += e * e
			}
			if d < bd {
				best, bd = i, d
			}
		}
		checked++
		if int(res[0].ID) != best {
			t.Errorf("%s-%s %s: got %d, brute force %d", q.family, q.model, q.name, res[0].ID, best)
		}
		got := bases[res[0].ID]
		if got.family == q.family && got.model == "base" && got.name == q.name {
			own++
		} else {
			t.Errorf("%s-%s %s: nearest is %s-%s %s", q.family, q.model, q.name, got.family, got.model, got.name)
		}
	}
	t.Logf("%d fine-tune tensors, %d indexes: recall 1 vs brute force checked, %d/%d found their own base", checked, len(idx), own, checked)
}
