package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// testServer is a Server running on a loopback port.
type testServer struct {
	t      *testing.T
	s      *Server
	url    string
	token  string
	client *http.Client
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// start runs a server over be (1 worker and a 20s timeout unless cfg says).
func start(t *testing.T, cfg Config, be backend) *testServer {
	t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = 20 * time.Second
	}
	if cfg.Workers == 0 {
		cfg.Workers = 1
	}
	return startServer(t, newServer(cfg, be))
}

// startServer runs s on a loopback port until the test ends.
func startServer(t *testing.T, s *Server) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{t: t, s: s, url: "http://" + ln.Addr().String(), token: s.cfg.Token,
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}, cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- ts.s.Run(ctx, ln) }()
	t.Cleanup(func() { ts.stop() })
	return ts
}

// stop shuts the server down and returns Run's error.
func (ts *testServer) stop() error {
	ts.once.Do(func() {
		ts.cancel()
		select {
		case ts.err = <-ts.done:
		case <-time.After(60 * time.Second):
			ts.t.Error("server did not stop")
		}
		ts.client.CloseIdleConnections()
	})
	return ts.err
}

// do sends a request; body is a string or a value sent as JSON. Extra headers
// come as name, value pairs.
func (ts *testServer) do(method, path string, body any, headers ...string) (int, []byte) {
	ts.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			ts.t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, ts.url+path, r)
	if err != nil {
		ts.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if ts.token != "" {
		req.Header.Set("Authorization", "Bearer "+ts.token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := ts.client.Do(req)
	if err != nil {
		ts.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		ts.t.Fatal(err)
	}
	return resp.StatusCode, b
}

func (ts *testServer) get(path string) (int, []byte) {
	ts.t.Helper()
	return ts.do("GET", path, nil)
}

// expect checks a response's status and, for errors, that the body is a JSON
// error object.
func expect(t *testing.T, what string, code int, body []byte, want int) {
	t.Helper()
	if code != want {
		t.Fatalf("%s: status %d, want %d: %s", what, code, want, body)
	}
	if code >= 400 {
		var e struct {
			Error string
			Ready *bool // the health and ready answers: false is a 4xx
		}
		if err := json.Unmarshal(body, &e); err != nil || e.Error == "" && e.Ready == nil {
			t.Fatalf("%s: error body is not {\"error\": ...}: %s", what, body)
		}
	}
}

// check is expect for other goroutines than the test's: it does not stop the test.
func check(t *testing.T, what string, code int, body []byte, want int) bool {
	t.Helper()
	if code != want {
		t.Errorf("%s: status %d, want %d: %s", what, code, want, body)
		return false
	}
	return true
}

type tensorJSON struct {
	Name     string `json:"name"`
	Shape    []int  `json:"shape"`
	Datatype string `json:"datatype"`
	Data     any    `json:"data"`
}

type inferJSON struct {
	ModelName    string       `json:"model_name"`
	ModelVersion string       `json:"model_version"`
	ID           string       `json:"id"`
	Outputs      []tensorJSON `json:"outputs"`
}

func input(name, dt string, shape []int, data any) tensorJSON {
	return tensorJSON{Name: name, Shape: shape, Datatype: dt, Data: data}
}

func request(inputs ...tensorJSON) map[string]any {
	return map[string]any{"inputs": inputs}
}

// infer posts an inference request and decodes a successful answer.
func (ts *testServer) infer(path string, req any) (int, inferJSON, []byte) {
	ts.t.Helper()
	code, body := ts.do("POST", path, req)
	var out inferJSON
	if code == http.StatusOK {
		if err := json.Unmarshal(body, &out); err != nil {
			ts.t.Fatalf("bad answer: %v: %s", err, body)
		}
	}
	return code, out, body
}

// floats returns a flat JSON array as float64s.
func floats(t *testing.T, data any) []float64 {
	t.Helper()
	a, ok := data.([]any)
	if !ok {
		t.Fatalf("data %v is not an array", data)
	}
	out := make([]float64, len(a))
	for i, v := range a {
		f, ok := v.(float64)
		if !ok {
			t.Fatalf("data element %v is not a number", v)
		}
		out[i] = f
	}
	return out
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHealthAndMetadata(t *testing.T) {
	be := newFakeBackend()
	be.add("double", doubler())
	be.add("double:v2", doubler())
	be.add("fixed", fixed())
	gate := make(chan struct{})
	be.loadGate = gate
	ts := start(t, Config{Preload: []string{"double"}}, be)

	code, body := ts.get("/v2")
	expect(t, "server metadata", code, body, 200)
	var md serverMetadata
	if err := json.Unmarshal(body, &md); err != nil || md.Name != "neurstore" || md.Extensions == nil || !strings.Contains(string(body), `"extensions":[]`) {
		t.Fatalf("server metadata: %s", body)
	}
	code, body = ts.get("/v2/health/live")
	expect(t, "live", code, body, 200)

	// not ready while the preload is loading
	code, body = ts.get("/v2/health/ready")
	expect(t, "ready during preload", code, body, 400)
	if !strings.Contains(string(body), `"ready":false`) {
		t.Fatalf("ready during preload: %s", body)
	}
	close(gate)
	waitFor(t, "ready", func() bool { c, _ := ts.get("/v2/health/ready"); return c == 200 })

	code, body = ts.get("/v2/models/double")
	expect(t, "model metadata", code, body, 200)
	var mm modelMetadata
	if err := json.Unmarshal(body, &mm); err != nil {
		t.Fatal(err)
	}
	if mm.Name != "double" || mm.Platform != "neurstore_onnx" || !slices.Equal(mm.Versions, []string{"latest", "v2"}) ||
		len(mm.Inputs) != 1 || mm.Inputs[0].Name != "x" || mm.Inputs[0].Datatype != "FP32" || !slices.Equal(mm.Inputs[0].Shape, []int64{-1, 4}) ||
		len(mm.Outputs) != 1 || mm.Outputs[0].Name != "y" {
		t.Fatalf("model metadata: %s", body)
	}
	// an unloaded model's metadata comes from its stored graph
	code, body = ts.get("/v2/models/fixed/versions/latest")
	expect(t, "metadata by version", code, body, 200)
	if !strings.Contains(string(body), `"shape":[1,3]`) || !strings.Contains(string(body), `"datatype":"INT64"`) {
		t.Fatalf("metadata of fixed: %s", body)
	}
	code, body = ts.get("/v2/models/nope")
	expect(t, "unknown model", code, body, 404)
	code, body = ts.get("/v2/models/double/versions/v9")
	expect(t, "unknown version", code, body, 404)
	code, body = ts.get("/v2/models/-bad")
	expect(t, "bad name", code, body, 400)
	code, body = ts.get("/v2/models/..%2F..%2Fetc")
	expect(t, "path as name", code, body, 400)

	// model readiness: preloaded yes, fixed only after its first request
	code, body = ts.get("/v2/models/double/ready")
	expect(t, "double ready", code, body, 200)
	code, body = ts.get("/v2/models/fixed/ready")
	expect(t, "fixed not ready", code, body, 400)
	if !strings.Contains(string(body), `"ready":false`) {
		t.Fatalf("fixed ready: %s", body)
	}
	code, _, body = ts.infer("/v2/models/fixed/infer", request(input("ids", "INT64", []int{1, 3}, []int{1, 2, 3})))
	expect(t, "infer fixed", code, body, 200)
	code, body = ts.get("/v2/models/fixed/versions/latest/ready")
	expect(t, "fixed ready", code, body, 200)
	code, body = ts.get("/v2/models/nope/ready")
	expect(t, "unknown ready", code, body, 404)

	// the mux's own errors are JSON too
	code, body = ts.get("/v2/nothing/here")
	expect(t, "no such path", code, body, 404)
	code, body = ts.do("DELETE", "/v2/health/live", nil)
	expect(t, "wrong method", code, body, 405)
}

func TestInfer(t *testing.T) {
	be := newFakeBackend()
	be.add("double", doubler())
	be.add("double:v2", doubler())
	be.add("fixed", fixed())
	be.add("pair", pair())
	ts := start(t, Config{}, be)

	req := request(input("x", "FP32", []int{2, 4}, []float64{1, 2, 3, 4, 5, 6, 7, 8.5}))
	req["id"] = "req-42"
	code, out, body := ts.infer("/v2/models/double/infer", req)
	expect(t, "flat", code, body, 200)
	if out.ModelName != "double" || out.ModelVersion != "latest" || out.ID != "req-42" || len(out.Outputs) != 1 {
		t.Fatalf("answer: %s", body)
	}
	y := out.Outputs[0]
	if y.Name != "y" || y.Datatype != "FP32" || !slices.Equal(y.Shape, []int{2, 4}) ||
		!slices.Equal(floats(t, y.Data), []float64{2, 4, 6, 8, 10, 12, 14, 17}) {
		t.Fatalf("output: %s", body)
	}

	// nested data, an explicit output list, a version
	req = request(input("x", "FP32", []int{2, 4}, [][]float64{{1, 2, 3, 4}, {5, 6, 7, 8}}))
	req["outputs"] = []map[string]any{{"name": "y", "parameters": map[string]any{"binary_data": false}}}
	req["parameters"] = map[string]any{"priority": 1}
	code, out, body = ts.infer("/v2/models/double/versions/v2/infer", req)
	expect(t, "nested", code, body, 200)
	if out.ModelVersion != "v2" || !slices.Equal(floats(t, out.Outputs[0].Data), []float64{2, 4, 6, 8, 10, 12, 14, 16}) {
		t.Fatalf("nested: %s", body)
	}
	// name:tag in the name segment works too
	code, _, body = ts.infer("/v2/models/double:v2/infer", request(input("x", "FP32", []int{1, 4}, []float64{1, 2, 3, 4})))
	expect(t, "name:tag", code, body, 200)

	// integers
	code, out, body = ts.infer("/v2/models/fixed/infer", request(input("ids", "INT64", []int{1, 3}, []int64{-5, 0, 1 << 40})))
	expect(t, "int64", code, body, 200)
	if out.Outputs[0].Datatype != "INT64" || !strings.Contains(string(body), `"data":[-4,1,1099511627777]`) {
		t.Fatalf("int64: %s", body)
	}
	// two inputs, INT8 and BOOL (booleans as true/false or 0/1)
	code, out, body = ts.infer("/v2/models/pair/infer", request(
		input("b", "BOOL", []int{2, 2}, []any{true, false, 1, 0}),
		input("a", "INT8", []int{2, 2}, []int{-128, 0, 5, 126})))
	expect(t, "pair", code, body, 200)
	if out.Outputs[0].Datatype != "INT8" || !slices.Equal(floats(t, out.Outputs[0].Data), []float64{-127, 1, 6, 127}) {
		t.Fatalf("pair: %s", body)
	}
}

func TestInferValidation(t *testing.T) {
	be := newFakeBackend()
	be.add("double", doubler())
	be.add("fixed", fixed())
	be.add("pair", pair())
	ts := start(t, Config{}, be)
	x := func(dt string, shape []int, data any) map[string]any {
		return request(input("x", dt, shape, data))
	}
	ok4 := []float64{1, 2, 3, 4}
	cases := []struct {
		name, path string
		body       any
		header     []string
		want       int
	}{
		{"bad json", "double", `{"inputs": [`, nil, 400},
		{"not an object", "double", `[1, 2]`, nil, 400},
		{"trailing data", "double", `{"inputs": []} {}`, nil, 400},
		{"no inputs", "double", `{"inputs": []}`, nil, 400},
		{"unknown input", "double", request(input("z", "FP32", []int{1, 4}, ok4)), nil, 400},
		{"input twice", "double", request(input("x", "FP32", []int{1, 4}, ok4), input("x", "FP32", []int{1, 4}, ok4)), nil, 400},
		{"missing input", "pair", request(input("a", "INT8", []int{1, 2}, []int{1, 2})), nil, 400},
		{"wrong datatype", "double", x("FP64", []int{1, 4}, ok4), nil, 400},
		{"BYTES", "double", x("BYTES", []int{1, 4}, []string{"a", "b", "c", "d"}), nil, 400},
		{"unknown datatype", "double", x("FLOAT", []int{1, 4}, ok4), nil, 400},
		{"wrong rank", "double", x("FP32", []int{4}, ok4), nil, 400},
		{"wrong fixed dim", "double", x("FP32", []int{1, 5}, []float64{1, 2, 3, 4, 5}), nil, 400},
		{"negative dim", "double", x("FP32", []int{-1, 4}, ok4), nil, 400},
		{"too few values", "double", x("FP32", []int{2, 4}, ok4), nil, 400},
		{"too many values", "double", x("FP32", []int{1, 4}, []float64{1, 2, 3, 4, 5}), nil, 400},
		{"no data", "double", `{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32"}]}`, nil, 400},
		{"data not an array", "double", x("FP32", []int{1, 4}, 5), nil, 400},
		{"text as float", "double", x("FP32", []int{1, 4}, []any{1, 2, "three", 4}), nil, 400},
		{"fraction as int", "fixed", request(input("ids", "INT64", []int{1, 3}, []any{1, 2.5, 3})), nil, 400},
		{"int8 out of range", "pair", request(input("a", "INT8", []int{1, 2}, []int{1, 300}), input("b", "BOOL", []int{1, 2}, []bool{true, true})), nil, 400},
		{"bool out of range", "pair", request(input("a", "INT8", []int{1, 2}, []int{1, 3}), input("b", "BOOL", []int{1, 2}, []int{2, 0})), nil, 400},
		{"unknown output", "double", map[string]any{"inputs": []tensorJSON{input("x", "FP32", []int{1, 4}, ok4)}, "outputs": []map[string]string{{"name": "z"}}}, nil, 400},
		{"binary extension", "double", x("FP32", []int{1, 4}, ok4), []string{"Inference-Header-Content-Length", "10"}, 400},
		{"bad model name", "-x", x("FP32", []int{1, 4}, ok4), nil, 400},
		{"bad version", "double/versions/a:b", x("FP32", []int{1, 4}, ok4), nil, 400},
		{"unknown model", "nope", x("FP32", []int{1, 4}, ok4), nil, 404},
		{"unknown version", "double/versions/v7", x("FP32", []int{1, 4}, ok4), nil, 404},
	}
	for _, c := range cases {
		code, body := ts.do("POST", "/v2/models/"+c.path+"/infer", c.body, c.header...)
		expect(t, c.name, code, body, c.want)
	}
	// the server still answers good requests
	code, _, body := ts.infer("/v2/models/double/infer", x("FP32", []int{1, 4}, ok4))
	expect(t, "good after bad", code, body, 200)
}

func TestAuth(t *testing.T) {
	be := newFakeBackend()
	be.add("double", doubler())
	ts := start(t, Config{Token: "s3cret"}, be)
	for _, path := range []string{"/v2", "/v2/models/double", "/v2/models/double/ready", "/api/models", "/metrics"} {
		for _, auth := range []string{"", "Bearer wrong", "s3cret", "Basic s3cret"} {
			code, body := ts.do("GET", path, nil, "Authorization", auth)
			expect(t, "GET "+path+" with "+auth, code, body, 401)
		}
		code, body := ts.get(path)
		if code == 401 || code >= 500 {
			t.Fatalf("GET %s with the token: %d %s", path, code, body)
		}
	}
	code, body := ts.do("POST", "/v2/models/double/infer", request(input("x", "FP32", []int{1, 4}, []int{1, 2, 3, 4})), "Authorization", "")
	expect(t, "infer without token", code, body, 401)
	code, body = ts.do("DELETE", "/api/models/double", nil, "Authorization", "Bearer nope")
	expect(t, "delete with a bad token", code, body, 401)
	// the probes need no token
	for _, path := range []string{"/v2/health/live", "/v2/health/ready"} {
		code, body := ts.do("GET", path, nil, "Authorization", "")
		expect(t, path, code, body, 200)
	}
}

func TestBodyLimit(t *testing.T) {
	be := newFakeBackend()
	be.add("double", doubler())
	ts := start(t, Config{MaxBody: 1024}, be)
	big := request(input("x", "FP32", []int{250, 4}, make([]float64, 1000)))
	code, body := ts.do("POST", "/v2/models/double/infer", big)
	expect(t, "too large", code, body, 413)

	// a chunked body (no Content-Length) is cut at the limit too
	j, _ := json.Marshal(big)
	req, _ := http.NewRequest("POST", ts.url+"/v2/models/double/infer", io.MultiReader(bytes.NewReader(j)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if req.ContentLength != 0 && req.ContentLength != -1 {
		t.Fatalf("request has a Content-Length of %d", req.ContentLength)
	}
	expect(t, "too large, chunked", resp.StatusCode, b, 413)

	code, body = ts.do("POST", "/api/models?name=up", strings.Repeat("x", 2000), "Content-Type", "application/octet-stream")
	expect(t, "upload too large", code, body, 413)

	code, _, body = ts.infer("/v2/models/double/infer", request(input("x", "FP32", []int{1, 4}, []int{1, 2, 3, 4})))
	expect(t, "small", code, body, 200)
}

func TestQueueFull(t *testing.T) {
	be := newFakeBackend()
	fm := be.add("fixed", fixed())
	ts := start(t, Config{Queue: 2, Workers: 1, MaxBatch: 1}, be)
	// load it (and run the warm-up) before holding the runs
	code, _, body := ts.infer("/v2/models/fixed/infer", request(input("ids", "INT64", []int{1, 3}, []int{1, 2, 3})))
	expect(t, "first", code, body, 200)
	release := fm.hold()
	defer release()

	// one run held, one batch waiting for the worker, two queued: the rest answer 429
	const n = 10
	codes := make(chan int, n)
	for i := range n {
		go func() {
			code, _, body := ts.infer("/v2/models/fixed/infer", request(input("ids", "INT64", []int{1, 3}, []int{i, i, i})))
			if code != 200 {
				check(t, "queued", code, body, 429)
			}
			codes <- code
		}()
	}
	counts := map[int]int{}
	for range n - 4 {
		counts[<-codes]++
	}
	if counts[429] != n-4 {
		t.Fatalf("before the release: %v, want %d answers 429", counts, n-4)
	}
	release()
	for range 4 {
		counts[<-codes]++
	}
	if counts[200] < 2 || counts[200]+counts[429] != n {
		t.Fatalf("answers %v", counts)
	}
}

func TestTimeout(t *testing.T) {
	be := newFakeBackend()
	fm := be.add("fixed", fixed())
	ts := start(t, Config{Timeout: 300 * time.Millisecond}, be)
	code, _, body := ts.infer("/v2/models/fixed/infer", request(input("ids", "INT64", []int{1, 3}, []int{1, 2, 3})))
	expect(t, "first", code, body, 200)
	release := fm.hold()
	defer release()
	start := time.Now()
	code, _, body = ts.infer("/v2/models/fixed/infer", request(input("ids", "INT64", []int{1, 3}, []int{1, 2, 3})))
	expect(t, "held", code, body, 504)
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("504 after %s", d)
	}
	// the held run saw its context cancelled
	waitFor(t, "the run to be cancelled", func() bool { _, c := fm.snapshot(); return c == 1 })
	release()
	code, _, body = ts.infer("/v2/models/fixed/infer", request(input("ids", "INT64", []int{1, 3}, []int{1, 2, 3})))
	expect(t, "after", code, body, 200)
}

func TestBatching(t *testing.T) {
	be := newFakeBackend()
	fm := be.add("double", doubler())
	fx := be.add("fixed", fixed())
	// a long delay: the run starts when 5 rows are there
	ts := start(t, Config{MaxBatch: 5, MaxDelay: time.Minute, Workers: 1}, be)

	type reqAns struct {
		in  []float64
		out []float64
	}
	rows := []int{2, 1, 2}
	ans := make([]reqAns, len(rows))
	var wg sync.WaitGroup
	for i, r := range rows {
		in := make([]float64, r*4)
		for k := range in {
			in[k] = float64(100*i + k)
		}
		ans[i].in = in
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, out, body := ts.infer("/v2/models/double/infer", request(input("x", "FP32", []int{r, 4}, in)))
			if !check(t, "batched", code, body, 200) {
				return
			}
			if !slices.Equal(out.Outputs[0].Shape, []int{r, 4}) {
				t.Errorf("request %d: output shape %v", i, out.Outputs[0].Shape)
			}
			ans[i].out = floats(t, out.Outputs[0].Data)
		}()
	}
	wg.Wait()
	for i, a := range ans {
		for k := range a.in {
			if a.out[k] != 2*a.in[k] {
				t.Fatalf("request %d got %v for %v", i, a.out, a.in)
			}
		}
	}
	runs, _ := fm.snapshot()
	if !slices.Equal(runs, []int{1, 5}) { // the warm-up, then one run of all three
		t.Fatalf("runs %v, want [1 5]", runs)
	}

	// a model without a batch dimension runs each request alone
	var wg2 sync.WaitGroup
	for i := range 3 {
		wg2.Add(1)
		go func() {
			defer wg2.Done()
			code, out, body := ts.infer("/v2/models/fixed/infer", request(input("ids", "INT64", []int{1, 3}, []int{i, i, i})))
			if !check(t, "fixed", code, body, 200) {
				return
			}
			if got := floats(t, out.Outputs[0].Data); got[0] != float64(i+1) {
				t.Errorf("request %d got %v", i, got)
			}
		}()
	}
	wg2.Wait()
	if runs, _ := fx.snapshot(); !slices.Equal(runs, []int{1, 1, 1, 1}) {
		t.Fatalf("fixed runs %v", runs)
	}
}

// While the worker is busy, the dispatcher gathers requests of one shape into
// the next run; one of another shape waits for the run after.
func TestBatchingShapes(t *testing.T) {
	be := newFakeBackend()
	fm := be.add("flex", flex())
	ts := start(t, Config{MaxBatch: 64, MaxDelay: 0, Workers: 1}, be)
	code, _, body := ts.infer("/v2/models/flex/infer", request(input("x", "FP32", []int{1, 2}, []int{1, 2})))
	expect(t, "warm", code, body, 200)
	release := fm.hold()
	defer release()

	var wg sync.WaitGroup
	send := func(shape []int, in []float64) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, out, body := ts.infer("/v2/models/flex/infer", request(input("x", "FP32", shape, in)))
			if !check(t, fmt.Sprint("flex ", shape), code, body, 200) {
				return
			}
			got := floats(t, out.Outputs[0].Data)
			for k := range in {
				if got[k] != 2*in[k] {
					t.Errorf("shape %v: got %v for %v", shape, got, in)
				}
			}
		}()
	}
	send([]int{1, 2}, []float64{1, 2}) // runs, held
	waitFor(t, "the held run", func() bool { r, _ := fm.snapshot(); return len(r) == 3 })
	send([]int{1, 3}, []float64{1, 2, 3})
	time.Sleep(100 * time.Millisecond)
	send([]int{2, 3}, []float64{4, 5, 6, 7, 8, 9})
	time.Sleep(100 * time.Millisecond)
	send([]int{1, 4}, []float64{1, 2, 3, 4})
	time.Sleep(100 * time.Millisecond)
	release()
	wg.Wait()
	if runs, _ := fm.snapshot(); !slices.Equal(runs, []int{1, 1, 1, 3, 1}) {
		t.Fatalf("runs %v, want [1 1 1 3 1]", runs)
	}
}

func TestShutdownDrains(t *testing.T) {
	be := newFakeBackend()
	fm := be.add("fixed", fixed())
	ts := start(t, Config{Workers: 1, DrainTimeout: 30 * time.Second}, be)
	code, _, body := ts.infer("/v2/models/fixed/infer", request(input("ids", "INT64", []int{1, 3}, []int{1, 2, 3})))
	expect(t, "first", code, body, 200)
	release := fm.hold()
	defer release()

	const n = 4 // one running, the others waiting
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, out, body := ts.infer("/v2/models/fixed/infer", request(input("ids", "INT64", []int{1, 3}, []int{i, i, i})))
			if !check(t, "drained", code, body, 200) {
				return
			}
			if got := floats(t, out.Outputs[0].Data); got[0] != float64(i+1) {
				t.Errorf("request %d got %v", i, got)
			}
		}()
	}
	waitFor(t, "the held run", func() bool { r, _ := fm.snapshot(); return len(r) == 3 })
	time.Sleep(100 * time.Millisecond) // let the others reach the queue

	stopped := make(chan error, 1)
	go func() { stopped <- ts.stop() }()
	// it stops accepting...
	waitFor(t, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(ts.url, "http://"), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-stopped:
		t.Fatalf("Run returned with requests in flight: %v", err)
	default:
	}
	// ...and answers every request it took
	release()
	wg.Wait()
	if err := <-stopped; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if runs, _ := fm.snapshot(); len(runs) != 2+n {
		t.Fatalf("runs %v", runs)
	}
}

func TestShutdownDrainTimeout(t *testing.T) {
	be := newFakeBackend()
	fm := be.add("fixed", fixed())
	ts := start(t, Config{DrainTimeout: 200 * time.Millisecond}, be)
	code, _, body := ts.infer("/v2/models/fixed/infer", request(input("ids", "INT64", []int{1, 3}, []int{1, 2, 3})))
	expect(t, "first", code, body, 200)
	release := fm.hold()
	defer release()
	go func() {
		req, _ := http.NewRequest("POST", ts.url+"/v2/models/fixed/infer", strings.NewReader(`{"inputs":[{"name":"ids","shape":[1,3],"datatype":"INT64","data":[1,2,3]}]}`))
		if resp, err := ts.client.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, "the held run", func() bool { r, _ := fm.snapshot(); return len(r) == 3 })
	if err := ts.stop(); err == nil || !strings.Contains(err.Error(), "drain timeout") {
		t.Fatalf("Run: %v, want a drain timeout", err)
	}
}

func TestManagement(t *testing.T) {
	be := newFakeBackend()
	be.add("double", doubler())
	fx := be.add("fixed", fixed())
	ts := start(t, Config{}, be)

	code, body := ts.get("/api/models")
	expect(t, "list", code, body, 200)
	var list struct{ Models []modelSummary }
	if err := json.Unmarshal(body, &list); err != nil || len(list.Models) != 2 || list.Models[0].Ref != "double:latest" ||
		list.Models[0].Loaded || list.Models[0].Tensors != 1 || list.Models[0].LogicalBytes != 64 || list.Models[0].Format != "onnx" {
		t.Fatalf("list: %s", body)
	}
	code, _, body = ts.infer("/v2/models/double/infer", request(input("x", "FP32", []int{1, 4}, []int{1, 2, 3, 4})))
	expect(t, "infer", code, body, 200)
	code, body = ts.get("/api/models")
	expect(t, "list", code, body, 200)
	if err := json.Unmarshal(body, &list); err != nil || !list.Models[0].Loaded || list.Models[1].Loaded {
		t.Fatalf("list after infer: %s", body)
	}

	code, body = ts.get("/api/models/double")
	expect(t, "show", code, body, 200)
	var d modelDetail
	if err := json.Unmarshal(body, &d); err != nil || d.Ref != "double:latest" || len(d.TensorList) != 1 || d.TensorList[0].Name != "w" || d.GraphBytes != 100 {
		t.Fatalf("show: %s", body)
	}
	code, body = ts.get("/api/models/nope")
	expect(t, "show unknown", code, body, 404)
	code, body = ts.get("/api/models/..%2Fetc")
	expect(t, "show path", code, body, 400)

	// import from a server-side path
	dir := t.TempDir()
	file := filepath.Join(dir, "my-model.onnx")
	os.WriteFile(file, []byte("onnx bytes"), 0o644)
	for _, c := range []struct {
		name string
		body any
		want int
	}{
		{"relative path", map[string]any{"path": "my-model.onnx"}, 400},
		{"dot path", map[string]any{"path": "../" + file}, 400},
		{"missing file", map[string]any{"path": filepath.Join(dir, "nope.onnx")}, 400},
		{"no path", map[string]any{"name": "x"}, 400},
		{"device", map[string]any{"path": os.DevNull}, 400},
		{"unknown field", map[string]any{"path": file, "nmae": "x"}, 400},
		{"bad name", map[string]any{"path": file, "name": "../x"}, 400},
		{"bad base", map[string]any{"path": file, "name": "x", "base": "a b"}, 400},
		{"bad tau", map[string]any{"path": file, "name": "x", "tau": -1}, 400},
		{"name taken", map[string]any{"path": file, "name": "double"}, 409},
		{"bad json", "{", 400},
	} {
		code, body := ts.do("POST", "/api/models", c.body)
		expect(t, "import: "+c.name, code, body, c.want)
	}
	code, body = ts.do("POST", "/api/models", map[string]any{"path": file, "tau": 0.001, "base": "double"})
	expect(t, "import path", code, body, 201)
	if imp := be.lastImport(); imp.path != file || imp.opts.Ref != "my-model:latest" || imp.opts.Tau != 0.001 || imp.opts.Base != "double" {
		t.Fatalf("import: %+v", imp)
	}
	if !strings.Contains(string(body), `"ref":"my-model:latest"`) {
		t.Fatalf("import answer: %s", body)
	}
	// replacing a loaded model unloads the old one
	code, body = ts.do("POST", "/api/models", map[string]any{"path": file, "name": "double", "force": true})
	expect(t, "import force", code, body, 201)
	code, body = ts.get("/v2/models/double/ready")
	expect(t, "replaced model unloaded", code, body, 400)

	// uploads
	code, body = ts.do("POST", "/api/models?name=up1:v1&tau=0.01", "raw model bytes", "Content-Type", "application/octet-stream")
	expect(t, "upload", code, body, 201)
	imp := be.lastImport()
	if imp.content != "raw model bytes" || imp.opts.Ref != "up1:v1" || imp.opts.Tau != 0.01 || !strings.HasSuffix(imp.path, ".onnx") {
		t.Fatalf("upload: %+v", imp)
	}
	if _, err := os.Stat(imp.path); !os.IsNotExist(err) {
		t.Fatalf("the upload's temporary file is still there: %v", err)
	}
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	mw.WriteField("comment", "ignored")
	fw, _ := mw.CreateFormFile("file", "weights.bin")
	st := append([]byte{2, 0, 0, 0, 0, 0, 0, 0}, "{}"...) // a safetensors header
	fw.Write(st)
	mw.Close()
	code, body = ts.do("POST", "/api/models?name=up2", mp.Bytes(), "Content-Type", mw.FormDataContentType())
	expect(t, "multipart upload", code, body, 201)
	if imp := be.lastImport(); imp.content != string(st) || imp.opts.Ref != "up2:latest" || !strings.HasSuffix(imp.path, ".safetensors") {
		t.Fatalf("multipart upload: %+v", imp)
	}
	code, body = ts.do("POST", "/api/models?name=up3&format=safetensors", "x", "Content-Type", "application/octet-stream")
	expect(t, "upload with format", code, body, 201)
	if imp := be.lastImport(); !strings.HasSuffix(imp.path, ".safetensors") {
		t.Fatalf("upload with format: %+v", imp)
	}
	for _, c := range []struct {
		name, query, ctype string
		want               int
	}{
		{"no name", "", "application/octet-stream", 400},
		{"bad name", "?name=/etc/passwd", "application/octet-stream", 400},
		{"bad tau", "?name=u&tau=abc", "application/octet-stream", 400},
		{"bad format", "?name=u&format=pickle", "application/octet-stream", 400},
		{"bad media type", "?name=u", "text/plain", 415},
		{"multipart without file", "?name=u", "multipart/form-data; boundary=xyz", 400},
	} {
		code, body := ts.do("POST", "/api/models"+c.query, "--xyz--\r\n", "Content-Type", c.ctype)
		expect(t, "upload: "+c.name, code, body, c.want)
	}

	// delete, while a request is running on the model: it finishes first
	code, _, body = ts.infer("/v2/models/fixed/infer", request(input("ids", "INT64", []int{1, 3}, []int{1, 2, 3})))
	expect(t, "fixed", code, body, 200)
	release := fx.hold()
	defer release()
	inferred := make(chan int, 1)
	go func() {
		code, _, _ := ts.infer("/v2/models/fixed/infer", request(input("ids", "INT64", []int{1, 3}, []int{1, 2, 3})))
		inferred <- code
	}()
	waitFor(t, "the held run", func() bool { r, _ := fx.snapshot(); return len(r) == 3 })
	deleted := make(chan int, 1)
	go func() {
		code, _ := ts.do("DELETE", "/api/models/fixed", nil)
		deleted <- code
	}()
	waitFor(t, "requests to answer 404", func() bool { c, _ := ts.get("/v2/models/fixed/ready"); return c == 404 })
	select {
	case c := <-deleted:
		t.Fatalf("delete answered %d with a request in flight", c)
	case <-time.After(100 * time.Millisecond):
	}
	release()
	if c := <-inferred; c != 200 {
		t.Fatalf("the request in flight answered %d", c)
	}
	if c := <-deleted; c != 200 {
		t.Fatalf("delete answered %d", c)
	}
	code, body = ts.get("/v2/models/fixed")
	expect(t, "deleted", code, body, 404)
	code, body = ts.do("DELETE", "/api/models/fixed", nil)
	expect(t, "delete again", code, body, 404)
	code, body = ts.do("DELETE", "/api/models/a%2Fb", nil)
	expect(t, "delete path", code, body, 400)
}

func TestMemoryBudget(t *testing.T) {
	be := newFakeBackend()
	a, b := doubler(), doubler()
	a.bytes, b.bytes = 60, 60
	be.add("a", a)
	be.add("b", b)
	huge := doubler()
	huge.bytes = 1000
	be.add("huge", huge)
	ts := start(t, Config{MemoryBytes: 100}, be)
	one := request(input("x", "FP32", []int{1, 4}, []int{1, 2, 3, 4}))
	loaded := func() (n int) {
		n, _ = ts.s.mgr.loadedStats()
		return n
	}

	code, _, body := ts.infer("/v2/models/a/infer", one)
	expect(t, "a", code, body, 200)
	code, _, body = ts.infer("/v2/models/b/infer", one)
	expect(t, "b", code, body, 200)
	if ts.s.mgr.isLoaded("a:latest") || !ts.s.mgr.isLoaded("b:latest") || loaded() != 1 {
		t.Fatal("a was not unloaded for b")
	}
	code, _, body = ts.infer("/v2/models/huge/infer", one)
	expect(t, "over the budget", code, body, 503)

	// b busy: a cannot take its place
	release := b.hold()
	defer release()
	done := make(chan int, 1)
	go func() {
		code, _, _ := ts.infer("/v2/models/b/infer", one)
		done <- code
	}()
	waitFor(t, "the held run", func() bool { r, _ := b.snapshot(); return len(r) == 3 })
	code, _, body = ts.infer("/v2/models/a/infer", one)
	expect(t, "budget full of busy models", code, body, 503)
	release()
	if c := <-done; c != 200 {
		t.Fatalf("b answered %d", c)
	}
	code, _, body = ts.infer("/v2/models/a/infer", one)
	expect(t, "a again", code, body, 200)
	// loads: the first, the one refused for want of room, this one
	if n := a.loadCount(); n != 3 {
		t.Fatalf("a loaded %d times, want 3", n)
	}
}

func TestMetrics(t *testing.T) {
	be := newFakeBackend()
	be.add("double", doubler())
	ts := start(t, Config{}, be)
	one := request(input("x", "FP32", []int{1, 4}, []int{1, 2, 3, 4}))
	for range 3 {
		code, _, body := ts.infer("/v2/models/double/infer", one)
		expect(t, "ok", code, body, 200)
	}
	code, body := ts.do("POST", "/v2/models/double/infer", request(input("x", "FP32", []int{1, 5}, []int{1, 2, 3, 4, 5})))
	expect(t, "bad", code, body, 400)
	code, body = ts.do("POST", "/v2/models/nope/infer", one)
	expect(t, "unknown", code, body, 404)

	code, body = ts.get("/metrics")
	if code != 200 {
		t.Fatalf("metrics: %d %s", code, body)
	}
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("metrics do not parse: %v\n%s", err, body)
	}
	value := func(name string, labels ...string) float64 {
		t.Helper()
		f := fams[name]
		if f == nil {
			t.Fatalf("no metric %s", name)
		}
	next:
		for _, m := range f.Metric {
			for i := 0; i+1 < len(labels); i += 2 {
				if labelOf(m, labels[i]) != labels[i+1] {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
		t.Fatalf("no metric %s%v", name, labels)
		return 0
	}
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"neurstore_inference_requests_total", []string{"model", "double:latest", "code", "200"}, 3},
		{"neurstore_inference_requests_total", []string{"model", "double:latest", "code", "400"}, 1},
		{"neurstore_inference_requests_total", []string{"model", "", "code", "404"}, 1},
		{"neurstore_inference_errors_total", []string{"model", "double:latest", "code", "400"}, 1},
		{"neurstore_inference_errors_total", []string{"model", "", "code", "404"}, 1},
		{"neurstore_inference_duration_seconds", []string{"model", "double:latest"}, 4},
		{"neurstore_batch_size", []string{"model", "double:latest"}, 3},
		{"neurstore_batch_requests", []string{"model", "double:latest"}, 3},
		{"neurstore_queue_depth", []string{"model", "double:latest"}, 0},
		{"neurstore_base_cache_hits_total", nil, 7},
		{"neurstore_base_cache_misses_total", nil, 3},
		{"neurstore_base_cache_bytes", nil, 1024},
		{"neurstore_base_cache_max_bytes", nil, 4096},
		{"neurstore_loaded_models", nil, 1},
		{"neurstore_loaded_weight_bytes", nil, 10},
		{"neurstore_model_loads_total", nil, 1},
		{"neurstore_model_evictions_total", nil, 0},
	}
	for _, c := range checks {
		if got := value(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if fams["go_goroutines"] == nil {
		t.Error("no Go runtime metrics")
	}
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// Imports and deletes go on while other models serve requests.
func TestConcurrentManagement(t *testing.T) {
	be := newFakeBackend()
	be.add("double", doubler())
	be.add("victim", doubler())
	ts := start(t, Config{Workers: 2, MaxDelay: time.Millisecond}, be)
	file := filepath.Join(t.TempDir(), "m.onnx")
	os.WriteFile(file, []byte("x"), 0o644)
	one := request(input("x", "FP32", []int{1, 4}, []int{1, 2, 3, 4}))
	code, _, body := ts.infer("/v2/models/victim/infer", one)
	expect(t, "victim", code, body, 200)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, out, body := ts.infer("/v2/models/double/infer", one)
				if !check(t, "double", code, body, 200) {
					return
				}
				if !slices.Equal(floats(t, out.Outputs[0].Data), []float64{2, 4, 6, 8}) {
					t.Errorf("double: %s", body)
				}
			}
		}()
	}
	for i := range 5 {
		code, body := ts.do("POST", "/api/models", map[string]any{"path": file, "name": fmt.Sprint("new", i)})
		expect(t, "import", code, body, 201)
		code, _, body = ts.infer(fmt.Sprintf("/v2/models/new%d/infer", i), one)
		expect(t, "new model", code, body, 200)
	}
	code, body = ts.do("DELETE", "/api/models/victim", nil)
	expect(t, "delete", code, body, 200)
	close(stop)
	wg.Wait()
	code, body = ts.do("POST", "/v2/models/victim/infer", one)
	expect(t, "deleted", code, body, 404)
}

// A joint run whose outputs are not per row is run again request by request.
func TestBatchingFallback(t *testing.T) {
	be := newFakeBackend()
	fm := doubler()
	fm.collapse = true
	be.add("sum", fm)
	ts := start(t, Config{MaxBatch: 2, MaxDelay: time.Minute}, be)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := []float64{float64(i), 1, 2, 3}
			code, out, body := ts.infer("/v2/models/sum/infer", request(input("x", "FP32", []int{1, 4}, in)))
			if !check(t, "sum", code, body, 200) {
				return
			}
			if got := floats(t, out.Outputs[0].Data); !slices.Equal(got, []float64{2 * in[0], 2, 4, 6}) {
				t.Errorf("request %d got %v", i, got)
			}
		}()
	}
	wg.Wait()
	if runs, _ := fm.snapshot(); !slices.Equal(runs, []int{1, 2, 1, 1}) {
		t.Fatalf("runs %v, want [1 2 1 1]", runs)
	}
}
