package graph

import "testing"

// lnGraph is x [batch, 4, 8] through a decomposed LayerNorm (as torch 1.13
// exports it) and a decomposed Gelu; mutate may change it before Fuse.
func lnGraph(mutate func(b *testGraph)) *testGraph {
	b := newTestGraph(13).input("x", F32, dims("batch", 4, 8)).
		floats("two", nil, 2).floats("eps", nil, 1e-5).floats("sqrt2", nil, 1.4142135).
		floats("one", nil, 1).floats("half", nil, 0.5).
		floats("gamma", []int64{8}, 1, 2, 3, 4, 5, 6, 7, 8).floats("beta", []int64{8}, 0, 0, 0, 0, 1, 1, 1, 1).
		node("ReduceMean", in("x"), in("m"), "axes", []int64{-1}).
		node("Sub", in("x", "m"), in("d")).
		node("Pow", in("d", "two"), in("p")).
		node("ReduceMean", in("p"), in("v"), "axes", []int64{-1}).
		node("Add", in("v", "eps"), in("e")).
		node("Sqrt", in("e"), in("s")).
		node("Div", in("d", "s"), in("n")).
		node("Mul", in("n", "gamma"), in("y")).
		node("Add", in("y", "beta"), in("z")).
		node("Div", in("z", "sqrt2"), in("q")).
		node("Erf", in("q"), in("r")).
		node("Add", in("r", "one"), in("a")).
		node("Mul", in("z", "a"), in("g")).
		node("Mul", in("g", "half"), in("out")).
		output("out")
	if mutate != nil {
		mutate(b)
	}
	return b
}

func fuseOps(t *testing.T, g *Graph) (int, map[string]int) {
	t.Helper()
	if err := g.Infer(); err != nil {
		t.Fatal(err)
	}
	n := g.Fuse()
	if err := g.Infer(); err != nil {
		t.Fatalf("Infer after Fuse: %v", err)
	}
	ops := map[string]int{}
	for _, nd := range g.Nodes {
		ops[nd.Op]++
	}
	return n, ops
}

func TestFuseLayerNormAndGelu(t *testing.T) {
	g := lnGraph(nil).g
	n, ops := fuseOps(t, g)
	if n != 2 || len(g.Nodes) != 2 || ops["LayerNormalization"] != 1 || ops["Gelu"] != 1 {
		t.Fatalf("fused %d chains, nodes %v", n, ops)
	}
	ln, ge := g.Nodes[0], g.Nodes[1]
	if ln.Op != "LayerNormalization" || ge.Op != "Gelu" {
		t.Fatalf("order %s, %s", ln.Op, ge.Op)
	}
	if got := ln.Inputs; len(got) != 3 || got[0] != "x" || got[1] != "gamma" || got[2] != "beta" || ln.Outputs[0] != "z" {
		t.Errorf("LayerNormalization %v -> %v", ln.Inputs, ln.Outputs)
	}
	if ln.Attrs["epsilon"].F != 1e-5 || ln.Attrs["axis"].I != -1 {
		t.Errorf("attrs %+v", ln.Attrs)
	}
	if ge.Inputs[0] != "z" || ge.Outputs[0] != "out" {
		t.Errorf("Gelu %v -> %v", ge.Inputs, ge.Outputs)
	}
	checkShape(t, g, "out", F32, dims("batch", 4, 8))
}

// Chains that differ from the decomposed ops in any way stay as they are.
func TestFuseLeavesOtherChains(t *testing.T) {
	for name, c := range map[string]struct {
		mutate  func(b *testGraph)
		ln, gel bool // still fusable
	}{
		"Pow 3":                        {func(b *testGraph) { b.floats("two", nil, 3) }, false, true},
		"axis 1":                       {func(b *testGraph) { b.g.Nodes[3].Attrs["axes"] = Attr{Type: AttrInts, Ints: []int64{1}} }, false, true},
		"mean over two axes":           {func(b *testGraph) { b.g.Nodes[0].Attrs["axes"] = Attr{Type: AttrInts, Ints: []int64{1, 2}} }, false, true},
		"variance read elsewhere":      {func(b *testGraph) { b.output("v") }, false, true},
		"centred value read elsewhere": {func(b *testGraph) { b.node("Neg", in("d"), in("nd")).output("nd") }, false, true},
		"scale of another size":        {func(b *testGraph) { b.floats("gamma", []int64{1}, 2) }, false, true},
		"Erf input scaled by 2":        {func(b *testGraph) { b.floats("sqrt2", nil, 2) }, true, false},
		"Gelu of another value":        {func(b *testGraph) { b.g.Nodes[12].Inputs = in("q", "a") }, true, false},
		"no half":                      {func(b *testGraph) { b.floats("half", nil, 0.25) }, true, false},
	} {
		t.Run(name, func(t *testing.T) {
			g := lnGraph(c.mutate).g
			_, ops := fuseOps(t, g)
			if (ops["LayerNormalization"] == 1) != c.ln || (ops["Gelu"] == 1) != c.gel {
				t.Errorf("ops after Fuse: %v", ops)
			}
		})
	}
}

// The committed transformer (torch 1.13, opset 13) has 5 LayerNorms and 2 GELUs.
func TestFuseTextTiny(t *testing.T) {
	src, err := OpenONNX("../testdata/family/text-tiny-ft1.onnx")
	if err != nil {
		t.Fatal(err)
	}
	src.Close()
	g, err := ParseModel(src.Graph)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Fold(); err != nil {
		t.Fatal(err)
	}
	before := len(g.Nodes)
	n, ops := fuseOps(t, g)
	if n != 7 || ops["LayerNormalization"] != 5 || ops["Gelu"] != 2 || ops["Erf"] != 0 || ops["ReduceMean"] != 0 {
		t.Fatalf("fused %d chains (%d -> %d nodes): %v", n, before, len(g.Nodes), ops)
	}
}
