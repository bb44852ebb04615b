package serve

import (
	"context"
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/runtime"
	"github.com/neurstore/neurstore/runtime/npy"
	"github.com/neurstore/neurstore/store"
)

const familyDir = "../../testdata/family"

// refArray reads a reference .npy file as float32 values and its shape.
func refArray(t *testing.T, name string) ([]float32, []int) {
	t.Helper()
	a, err := npy.ReadFile(filepath.Join(familyDir, "ref", name))
	if err != nil {
		t.Fatal(err)
	}
	x, err := runtime.FromBytes(a.DType, a.Shape, a.Data)
	if err != nil {
		t.Fatal(err)
	}
	return x.Floats(), x.Shape
}

// relL2 is ||a - b|| / ||b||.
func relL2(a []float64, b []float32) float64 {
	var num, den float64
	for i := range b {
		d := a[i] - float64(b[i])
		num += d * d
		den += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(num / den)
}

func abs(t *testing.T, path string) string {
	t.Helper()
	p, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The real store and runtime behind the server: models imported over HTTP
// compute torch's reference outputs, whole or one row per request (the rows
// batched together), while other models are imported and deleted.
func TestEndToEnd(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cache, err := runtime.NewBaseCache(64 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	s, err := New(Config{Store: st, Load: runtime.Options{Cache: cache}, Workers: 2, MaxDelay: 20 * time.Millisecond, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, s)

	imp := func(file, name string, tau float64, base string) {
		t.Helper()
		code, body := ts.do("POST", "/api/models", map[string]any{"path": abs(t, filepath.Join(familyDir, file)), "name": name, "tau": tau, "base": base})
		expect(t, "import "+name, code, body, 201)
	}
	imp("digits-mlp-base.onnx", "digits", 0, "")
	imp("digits-mlp-ft1.onnx", "digits:ft1", 0, "digits")
	imp("digits-mlp-other.onnx", "other", 0, "")

	code, body := ts.get("/v2/models/digits/versions/ft1")
	expect(t, "metadata", code, body, 200)
	var md modelMetadata
	if err := json.Unmarshal(body, &md); err != nil || len(md.Inputs) != 1 || len(md.Outputs) != 1 {
		t.Fatalf("metadata: %s", body)
	}
	inName, outName := md.Inputs[0].Name, md.Outputs[0].Name
	if md.Inputs[0].Datatype != "FP32" || md.Inputs[0].Shape[0] != -1 {
		t.Fatalf("metadata: %s", body)
	}

	x, xs := refArray(t, "digits-mlp-ft1.input.npy")
	want, ws := refArray(t, "digits-mlp-ft1.output.npy")
	inferRows := func(path string, x []float32, shape []int) []float64 {
		t.Helper()
		req := request(input(inName, "FP32", shape, x))
		req["outputs"] = []map[string]string{{"name": outName}}
		code, out, body := ts.infer(path, req)
		if !check(t, "infer "+path, code, body, 200) {
			return nil
		}
		if len(out.Outputs) != 1 || out.Outputs[0].Shape[0] != shape[0] {
			t.Errorf("answer: %s", body)
			return nil
		}
		return floats(t, out.Outputs[0].Data)
	}
	got := inferRows("/v2/models/digits/versions/ft1/infer", x, xs)
	if e := relL2(got, want); !(e <= 1e-4) {
		t.Fatalf("ft1 over HTTP vs torch: relative L2 %.3g", e)
	}
	code, _, body = ts.infer("/v2/models/other/infer", request(input(inName, "FP32", xs, x)))
	expect(t, "other", code, body, 200)

	// one row per request from several clients, while ft2 is imported (compressed,
	// against the base) and "other" is deleted
	rows, in, out := xs[0], xs[1], ws[1]
	var wg sync.WaitGroup
	for r := range rows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				got := inferRows("/v2/models/digits:ft1/infer", x[r*in:(r+1)*in], []int{1, in})
				if got == nil {
					return
				}
				if e := relL2(got, want[r*out:(r+1)*out]); !(e <= 1e-4) {
					t.Errorf("row %d: relative L2 %.3g", r, e)
					return
				}
			}
		}()
	}
	imp("digits-mlp-ft2.onnx", "digits:ft2", 1e-3, "digits")
	code, body = ts.do("DELETE", "/api/models/other", nil)
	expect(t, "delete other", code, body, 200)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	code, body = ts.do("POST", "/v2/models/other/infer", request(input(inName, "FP32", xs, x)))
	expect(t, "deleted", code, body, 404)

	// ft2 (compressed mode, bases from the cache) answers what the runtime computes
	x2, _ := refArray(t, "digits-mlp-ft2.input.npy")
	got = inferRows("/v2/models/digits/versions/ft2/infer", x2, xs)
	md2, err := runtime.Load(st, "digits:ft2", runtime.Options{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	if md2.Mode != runtime.ModeCompressed {
		t.Fatalf("ft2 loads in mode %s", md2.Mode)
	}
	res, err := md2.NewSession().Run(context.Background(), map[string]*runtime.Tensor{inName: {DType: graph.F32, Shape: xs, F32: x2}})
	if err != nil {
		t.Fatal(err)
	}
	if e := relL2(got, res[outName].Floats()); !(e <= 1e-6) {
		t.Fatalf("ft2 over HTTP vs the runtime: relative L2 %.3g", e)
	}

	// the metrics saw all that
	code, body = ts.get("/metrics")
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	for _, want := range []string{
		`neurstore_inference_requests_total{code="200",model="digits:ft1"}`,
		`neurstore_loaded_models 2`,
		`neurstore_base_cache_hits_total`,
	} {
		if !containsLine(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	t.Logf("requests per run:\n%s\n%s", grepLines(string(body), "neurstore_batch_requests_sum"), grepLines(string(body), "neurstore_batch_requests_count"))
}

func containsLine(text, prefix string) bool {
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// grepLines returns the lines of text that start with prefix and do not end in 0.
func grepLines(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) && !strings.HasSuffix(l, " 0") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
