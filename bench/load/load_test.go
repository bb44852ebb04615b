package load

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	var vals []time.Duration
	for range 20000 {
		// log-uniform over 50 ns .. 5 s
		d := time.Duration(50 * math.Exp(rng.Float64()*math.Log(1e8)))
		vals = append(vals, d)
		h.Record(d)
	}
	slices.Sort(vals)
	for _, q := range []float64{0, 0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 1} {
		rank := max(int(math.Ceil(q*float64(len(vals)))), 1)
		want := vals[rank-1]
		got := h.Quantile(q)
		if rel := math.Abs(float64(got-want)) / float64(want); rel > 1.0/subCount {
			t.Errorf("q %g: got %v, want %v (rel. error %.4f)", q, got, want, rel)
		}
	}
	if h.Max() != vals[len(vals)-1] || h.Min() != vals[0] || h.Count() != uint64(len(vals)) {
		t.Errorf("max %v min %v count %d, want %v %v %d", h.Max(), h.Min(), h.Count(), vals[len(vals)-1], vals[0], len(vals))
	}
	// exact below subCount ns, and buckets are contiguous
	for v := range uint64(1 << 16) {
		lo, hi := bucketRange(bucketOf(v))
		if v < lo || v > hi {
			t.Fatalf("value %d in bucket %d of range [%d, %d]", v, bucketOf(v), lo, hi)
		}
		if v < subCount && lo != hi {
			t.Fatalf("value %d not exact", v)
		}
	}
	// merge equals recording everything in one
	var a, b Histogram
	for i, v := range vals {
		if i%3 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
	}
	a.Merge(&b)
	if a.Quantile(0.99) != h.Quantile(0.99) || a.Count() != h.Count() || a.Max() != h.Max() || a.Min() != h.Min() {
		t.Errorf("merged histogram differs")
	}
	var empty Histogram
	if empty.Quantile(0.5) != 0 || empty.Mean() != 0 {
		t.Errorf("empty histogram not zero")
	}
}

// fakeServer answers inference requests like neurrun serve; fail decides
// per request what goes wrong ("" for nothing).
func fakeServer(t *testing.T, delay time.Duration, fail func(n int64, model string) string) (*httptest.Server, *atomic.Int64, *sync.Map) {
	var n atomic.Int64
	var conns sync.Map
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		model, ok := strings.CutPrefix(r.URL.Path, "/v2/models/")
		model, ok2 := strings.CutSuffix(model, "/infer")
		if r.Method != http.MethodPost || !ok || !ok2 {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		var req struct {
			Inputs []struct {
				Name string    `json:"name"`
				Data []float32 `json:"data"`
			} `json:"inputs"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Inputs) != 1 || req.Inputs[0].Name != "input" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		i := n.Add(1)
		time.Sleep(delay)
		switch fail(i, model) {
		case "503":
			http.Error(w, `{"error": "overloaded"}`, http.StatusServiceUnavailable)
		case "garbage":
			io.WriteString(w, "<html>not json</html>")
		case "no output":
			fmt.Fprintf(w, `{"model_name": %q, "outputs": [{"name": "other", "data": [1]}]}`, model)
		case "wrong model":
			io.WriteString(w, `{"model_name": "someone-else", "outputs": [{"name": "logits", "data": [1]}]}`)
		default:
			fmt.Fprintf(w, `{"model_name": %q, "outputs": [{"name": "logits", "shape": [1, 2], "datatype": "FP32", "data": [0.5, 0.25]}]}`, model)
		}
	}))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Store(c.RemoteAddr().String(), true)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &n, &conns
}

func body(string) []byte {
	return []byte(`{"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}`)
}

func TestRunCountsAndSpreads(t *testing.T) {
	srv, served, conns := fakeServer(t, time.Millisecond, func(int64, string) string { return "" })
	models := []string{"a", "b", "c"}
	t0 := time.Now()
	r, err := Run(context.Background(), Config{
		URL: srv.URL + "/", Models: models, Clients: 6, Duration: 200 * time.Millisecond,
		Body: body, Output: "logits", Token: "tok",
	})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(t0); took > 2*time.Second {
		t.Errorf("run took %v", took)
	}
	if r.Errors != 0 || r.OK == 0 || r.Requests != r.OK {
		t.Fatalf("ok %d errors %d %v %v", r.OK, r.Errors, r.ErrorsBy, r.ErrorSample)
	}
	if r.Requests != served.Load() {
		t.Errorf("counted %d requests, the server answered %d", r.Requests, served.Load())
	}
	var sum int64
	for _, m := range models {
		sum += r.PerModel[m]
		if d := r.PerModel[m] - r.Requests/3; d < -6 || d > 6 {
			t.Errorf("model %s got %d of %d requests", m, r.PerModel[m], r.Requests)
		}
	}
	if sum != r.Requests {
		t.Errorf("per-model counts add to %d, want %d", sum, r.Requests)
	}
	if r.Seconds < 0.2 || r.RequestsPerS <= 0 || r.P50Ms < 1 || r.P99Ms < r.P50Ms || r.MaxMs < r.P99Ms || r.Latency.Count() != uint64(r.OK) {
		t.Errorf("bad result %+v", r)
	}
	n := 0
	conns.Range(func(any, any) bool { n++; return true })
	// a connection is handed back to the pool just after its answer is read,
	// so a client may dial a spare one now and then, but not one per request
	if int64(n) > r.Requests/5 {
		t.Errorf("%d connections for %d requests of 6 clients: keep-alive not used", n, r.Requests)
	}
	cfg := Config{URL: srv.URL, Body: body, Output: "logits", Token: "tok"}
	if err := Do(context.Background(), cfg, "a"); err != nil {
		t.Errorf("Do: %v", err)
	}
	cfg.Output = "probs"
	if err := Do(context.Background(), cfg, "a"); err == nil || !strings.Contains(err.Error(), "bad response") {
		t.Errorf("Do, missing output: %v", err)
	}
}

func TestRunErrors(t *testing.T) {
	kinds := []string{"", "503", "garbage", "no output", "wrong model"}
	srv, _, _ := fakeServer(t, 0, func(n int64, model string) string { return kinds[n%int64(len(kinds))] })
	r, err := Run(context.Background(), Config{
		URL: srv.URL, Models: []string{"m"}, Clients: 2, Duration: 200 * time.Millisecond,
		Body: body, Output: "logits", Token: "tok",
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.OK == 0 || r.ErrorsBy["http 503"] == 0 || r.ErrorsBy["bad response"] == 0 || r.Errors != r.ErrorsBy["http 503"]+r.ErrorsBy["bad response"] {
		t.Fatalf("ok %d errors %v", r.OK, r.ErrorsBy)
	}
	// 1 in 5 is fine; 3 in 5 are bad responses
	if lo := r.Requests / 5; r.OK < lo-2 || r.OK > lo+2 {
		t.Errorf("ok %d of %d", r.OK, r.Requests)
	}
	if !strings.Contains(r.ErrorSample["http 503"], "overloaded") {
		t.Errorf("sample %q", r.ErrorSample["http 503"])
	}
	if got := r.Kinds(); len(got) != 2 || got[0] != "bad response" {
		t.Errorf("kinds %v", got)
	}

	// a wrong token: every answer is a 401
	r, err = Run(context.Background(), Config{URL: srv.URL, Models: []string{"m"}, Clients: 1, Duration: 50 * time.Millisecond, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	if r.OK != 0 || r.ErrorsBy["http 401"] != r.Requests || r.Requests == 0 {
		t.Errorf("no token: %+v", r)
	}
}

func TestRunNoServer(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close() // nothing listens there now
	r, err := Run(context.Background(), Config{URL: u, Models: []string{"m"}, Clients: 2, Duration: 100 * time.Millisecond, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	if r.OK != 0 || r.ErrorsBy["transport"] == 0 || r.Requests > 100 {
		t.Errorf("%+v", r)
	}
}

func TestRunDeadlineWaitsForRequestsInFlight(t *testing.T) {
	srv, served, _ := fakeServer(t, 150*time.Millisecond, func(int64, string) string { return "" })
	r, err := Run(context.Background(), Config{URL: srv.URL, Models: []string{"m"}, Clients: 3, Duration: 50 * time.Millisecond, Body: body, Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	if r.OK != 3 || served.Load() != 3 || r.Seconds < 0.15 {
		t.Errorf("ok %d served %d seconds %.3f: the requests in flight at the deadline must be counted", r.OK, served.Load(), r.Seconds)
	}
}

func TestRunContextCancelled(t *testing.T) {
	srv, _, _ := fakeServer(t, 20*time.Millisecond, func(int64, string) string { return "" })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	r, err := Run(ctx, Config{URL: srv.URL, Models: []string{"m"}, Clients: 2, Duration: time.Hour, Body: body, Token: "tok"})
	if err == nil || r == nil || time.Since(t0) > 2*time.Second || r.Errors != 0 {
		t.Errorf("err %v result %+v after %v", err, r, time.Since(t0))
	}
}

func TestRunBadConfig(t *testing.T) {
	for _, c := range []Config{
		{URL: "http://x", Models: []string{"m"}, Clients: 0, Duration: time.Second, Body: body},
		{URL: "http://x", Clients: 1, Duration: time.Second, Body: body},
		{URL: "http://x", Models: []string{"m"}, Clients: 1, Body: body},
		{URL: "http://x", Models: []string{"m"}, Clients: 1, Duration: time.Second},
		{URL: "x:1", Models: []string{"m"}, Clients: 1, Duration: time.Second, Body: body},
	} {
		if _, err := Run(context.Background(), c); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

func TestModelBody(t *testing.T) {
	m := &Model{Name: "m", Inputs: []Tensor{
		{Name: "x", Datatype: "FP32", Shape: []int64{-1, 4}},
		{Name: "ids", Datatype: "INT64", Shape: []int64{-1, -1}},
	}}
	b, err := m.Body(2, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	var req struct {
		Inputs []struct {
			Name     string    `json:"name"`
			Shape    []int64   `json:"shape"`
			Datatype string    `json:"datatype"`
			Data     []float64 `json:"data"`
		} `json:"inputs"`
	}
	if err := json.Unmarshal(b, &req); err != nil {
		t.Fatal(err)
	}
	if len(req.Inputs) != 2 || !slices.Equal(req.Inputs[0].Shape, []int64{2, 4}) || len(req.Inputs[0].Data) != 8 ||
		!slices.Equal(req.Inputs[1].Shape, []int64{2, 1}) || len(req.Inputs[1].Data) != 2 || req.Inputs[1].Datatype != "INT64" {
		t.Errorf("%s", b)
	}
	b2, _ := m.Body(2, rand.New(rand.NewPCG(1, 1)))
	if string(b) != string(b2) {
		t.Errorf("same seed, different bodies")
	}
	if _, err := (&Model{Inputs: []Tensor{{Name: "s", Datatype: "BYTES", Shape: []int64{1}}}}).Body(1, rand.New(rand.NewPCG(1, 1))); err == nil {
		t.Errorf("BYTES input: no error")
	}
}

func TestParseSamples(t *testing.T) {
	text := `# HELP neurstore_batch_size Rows per run.
# TYPE neurstore_batch_size histogram
neurstore_batch_size_bucket{model="a",le="1"} 3
neurstore_batch_size_bucket{model="a",le="+Inf"} 5
neurstore_batch_size_sum{model="a"} 20
neurstore_batch_size_count{model="a"} 5
neurstore_batch_size_sum{model="b c"} 10
neurstore_batch_size_count{model="b c"} 1
neurstore_batch_size_summary_count 99
go_goroutines 12
process_start_time_seconds 1.7e+09 1700000000000
`
	s, err := ParseSamples([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if s["go_goroutines"] != 12 || s[`neurstore_batch_size_sum{model="b c"}`] != 10 || s["process_start_time_seconds"] != 1.7e9 {
		t.Errorf("%v", s)
	}
	if got := s.Sum("neurstore_batch_size_count"); got != 6 {
		t.Errorf("count sum %g", got)
	}
	before, _ := ParseSamples([]byte("neurstore_batch_size_sum{model=\"a\"} 4\nneurstore_batch_size_count{model=\"a\"} 2\n"))
	if mean, n := HistogramMean(before, s, "neurstore_batch_size"); mean != 26.0/4 || n != 4 {
		t.Errorf("mean %g of %g", mean, n)
	}
	if mean, n := HistogramMean(s, s, "neurstore_batch_size"); mean != 0 || n != 0 {
		t.Errorf("no runs: mean %g of %g", mean, n)
	}
	if _, err := ParseSamples([]byte("lonely\n")); err == nil {
		t.Errorf("no value: no error")
	}
}

func TestWaitReadyAndMetadata(t *testing.T) {
	var ready atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v2/health/ready":
			if !ready.Load() {
				http.Error(w, "loading", http.StatusServiceUnavailable)
				return
			}
		case "/v2/models/m":
			io.WriteString(w, `{"name": "m", "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 3]}], "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 2]}]}`)
		case "/metrics":
			io.WriteString(w, "x 1\n")
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	c := NewClient(1)
	time.AfterFunc(120*time.Millisecond, func() { ready.Store(true) })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := WaitReady(ctx, c, srv.URL, nil); err != nil || !ready.Load() {
		t.Fatal(err)
	}
	m, err := Metadata(ctx, c, srv.URL, "m", "")
	if err != nil || len(m.Inputs) != 1 || m.Outputs[0].Name != "logits" {
		t.Fatalf("%v %+v", err, m)
	}
	if _, err := Metadata(ctx, c, srv.URL, "nope", ""); err == nil {
		t.Errorf("unknown model: no error")
	}
	if s, err := Scrape(ctx, c, srv.URL, ""); err != nil || s["x"] != 1 {
		t.Errorf("%v %v", s, err)
	}
	ready.Store(false)
	dead := fmt.Errorf("exited")
	if err := WaitReady(ctx, c, srv.URL, func() error { return dead }); err != dead {
		t.Errorf("dead server: %v", err)
	}
}
