package serve

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/runtime"
	"github.com/neurstore/neurstore/store"
)

// Requests for several fine-tunes of one base, sent together, share runs (the
// cross-model runs counter moves), and each request gets its own model's answer:
// what that model computes alone on the same row.
func TestCrossModelBatching(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	refs := []string{"mlp:base", "mlp:ft1", "mlp:ft2", "mlp:ft3"}
	for i, ref := range refs {
		file := "digits-mlp-base.onnx"
		base := ""
		if i > 0 {
			file, base = "digits-mlp-"+strings.TrimPrefix(ref, "mlp:")+".onnx", "mlp:base"
		}
		src, err := graph.OpenFile(filepath.Join(familyDir, file))
		if err != nil {
			t.Fatal(err)
		}
		_, err = st.Import(context.Background(), src, store.ImportOptions{Ref: ref, Tau: 1e-3, Base: base})
		src.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	cache, err := runtime.NewBaseCache(64 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	// one worker per model and a long delay: requests pile up in the queues,
	// and a worker takes its siblings' along
	s, err := New(Config{Store: st, Load: runtime.Options{Cache: cache}, Workers: 1,
		MaxDelay: 30 * time.Millisecond, Timeout: time.Minute, Preload: refs})
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, s)

	// each model alone, as reference
	want := map[string][][]float32{}
	x, xs := refArray(t, "digits-mlp-ft1.input.npy")
	in := xs[1]
	for _, ref := range refs {
		md, err := runtime.Load(st, ref, runtime.Options{Cache: cache})
		if err != nil {
			t.Fatal(err)
		}
		out, err := md.NewSession().Run(context.Background(), map[string]*runtime.Tensor{
			md.Inputs()[0].Name: {DType: graph.F32, Shape: xs, F32: x}})
		if err != nil {
			t.Fatal(err)
		}
		y := out[md.Outputs()[0].Name]
		per := y.Len() / xs[0]
		for r := range xs[0] {
			want[ref] = append(want[ref], y.F32[r*per:(r+1)*per])
		}
	}
	inName := "input"
	if md, err := runtime.Load(st, refs[0], runtime.Options{Cache: cache}); err == nil {
		inName = md.Inputs()[0].Name
	}

	for round := 0; round < 5; round++ {
		var wg sync.WaitGroup
		for c := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ref := refs[c%len(refs)]
				name, tag, _ := strings.Cut(ref, ":")
				r := (c + round) % xs[0]
				code, out, body := ts.infer("/v2/models/"+name+"/versions/"+tag+"/infer",
					request(input(inName, "FP32", []int{1, in}, x[r*in:(r+1)*in])))
				if !check(t, "infer "+ref, code, body, 200) {
					return
				}
				got := floats(t, out.Outputs[0].Data)
				if e := relL2(got, want[ref][r]); !(e <= 1e-5) {
					t.Errorf("%s row %d: relative L2 %.3g against the model alone", ref, r, e)
				}
			}()
		}
		wg.Wait()
	}
	code, body := ts.get("/metrics")
	expect(t, "metrics", code, body, 200)
	var runs string
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "neurstore_cross_model_runs_total ") {
			runs = strings.TrimPrefix(line, "neurstore_cross_model_runs_total ")
		}
	}
	if runs == "" || runs == "0" {
		t.Errorf("no cross-model run: neurstore_cross_model_runs_total %q", runs)
	} else {
		t.Logf("cross-model runs: %s", runs)
	}
}
