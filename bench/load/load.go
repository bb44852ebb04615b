// Package load is a closed-loop HTTP load generator for servers speaking the
// KServe v2 / Open Inference Protocol (`neurrun serve`), behind `neurrun bench
// serve`: a fixed number of clients each POST /v2/models/{model}/infer over
// keep-alive connections, one request after the other, for a fixed duration,
// and every answer's latency and status is recorded.
//
// It only sends requests: it never starts or stops a server (the caller does),
// so that what it measures is the server it is pointed at.
package load

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
)

// Config says what load to send.
type Config struct {
	// URL is the server's base URL ("http://127.0.0.1:8080").
	URL string
	// Models are the model names requests go to ("name" or "name/versions/tag").
	// Client c's k-th request goes to Models[(c+k) % len(Models)], so every model
	// gets the same share of the requests and of the clients at any moment.
	Models []string
	// Clients is the number of concurrent clients (each one request at a time).
	Clients int
	// Duration is how long clients start new requests; the requests in flight
	// at the deadline are waited for and counted.
	Duration time.Duration
	// Body is the JSON body of a request for model (called once per request;
	// return a shared slice, it is not modified).
	Body func(model string) []byte
	// Output is the name of an output every answer must carry ("": any one).
	Output string
	// Token, when set, is sent as "Authorization: Bearer TOKEN".
	Token string
	// Timeout bounds each request (0: one minute); a request past it counts as
	// an error of kind "timeout".
	Timeout time.Duration
	// Client sends the requests (nil: NewClient(Clients)).
	Client *http.Client
}

// Result is what a run measured. Latencies are of correct answers only (an
// error answered fast would otherwise look like a fast request).
type Result struct {
	Clients  int     `json:"clients"`
	Seconds  float64 `json:"seconds"`  // from the start until the last request answered
	Requests int64   `json:"requests"` // answered: OK + Errors
	OK       int64   `json:"ok"`
	Errors   int64   `json:"errors"`
	// ErrorsBy counts errors by kind: "http 429" (any status but 200),
	// "bad response" (a 200 whose body is not a valid answer), "timeout",
	// "transport" (connection refused, reset, ...).
	ErrorsBy map[string]int64 `json:"errors_by,omitempty"`
	// ErrorSample is the first error message of each kind.
	ErrorSample  map[string]string `json:"error_sample,omitempty"`
	RequestsPerS float64           `json:"requests_per_s"` // OK / Seconds
	MeanMs       float64           `json:"mean_ms"`
	P50Ms        float64           `json:"p50_ms"`
	P90Ms        float64           `json:"p90_ms"`
	P99Ms        float64           `json:"p99_ms"`
	MaxMs        float64           `json:"max_ms"`
	PerModel     map[string]int64  `json:"per_model"` // answered requests per model

	// Latency holds the latencies of the correct answers.
	Latency *Histogram `json:"-"`
}

// NewClient is an HTTP client for n concurrent clients on one host: n
// keep-alive connections stay open between requests.
func NewClient(n int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = n + 16
	t.MaxIdleConnsPerHost = n + 16
	t.DisableCompression = true
	t.Proxy = nil // the load goes straight to the server
	return &http.Client{Transport: t}
}

// clientStats is one client's tally, merged into the Result at the end.
type clientStats struct {
	hist     Histogram
	ok       int64
	errs     map[string]int64
	sample   map[string]string
	perModel []int64
}

func (s *clientStats) fail(kind, msg string) {
	s.errs[kind]++
	if _, ok := s.sample[kind]; !ok {
		s.sample[kind] = msg
	}
}

// Run sends the load and returns what it measured. It returns an error before
// starting for a bad Config, and ctx's error (with the partial result) when ctx
// ends first; requests that ctx cut short are not counted.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Clients < 1 {
		return nil, fmt.Errorf("load: Clients must be >= 1")
	}
	if len(cfg.Models) == 0 {
		return nil, fmt.Errorf("load: no Models")
	}
	if cfg.Duration <= 0 {
		return nil, fmt.Errorf("load: Duration must be > 0")
	}
	if cfg.Body == nil {
		return nil, fmt.Errorf("load: no Body")
	}
	base, err := url.Parse(strings.TrimSuffix(cfg.URL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("load: URL %q is not an http(s) URL", cfg.URL)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Minute
	}
	client := cfg.Client
	if client == nil {
		client = NewClient(cfg.Clients)
		defer client.CloseIdleConnections()
	}
	urls := make([]string, len(cfg.Models))
	for i, m := range cfg.Models {
		urls[i] = base.String() + "/v2/models/" + m + "/infer"
	}

	stats := make([]*clientStats, cfg.Clients)
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	var wg sync.WaitGroup
	for c := range cfg.Clients {
		s := &clientStats{errs: map[string]int64{}, sample: map[string]string{}, perModel: make([]int64, len(cfg.Models))}
		stats[c] = s
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ctx.Err() == nil && time.Now().Before(deadline); k++ {
				mi := (c + k) % len(cfg.Models)
				t0 := time.Now()
				kind, msg := do(ctx, client, &cfg, urls[mi], cfg.Models[mi])
				lat := time.Since(t0)
				if ctx.Err() != nil {
					return // cut short: not an answer
				}
				s.perModel[mi]++
				if kind == "" {
					s.ok++
					s.hist.Record(lat)
					continue
				}
				s.fail(kind, msg)
				if kind == "transport" {
					// the server is not answering: do not spin
					select {
					case <-ctx.Done():
					case <-time.After(10 * time.Millisecond):
					}
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	r := &Result{Clients: cfg.Clients, Seconds: elapsed.Seconds(), PerModel: map[string]int64{}, Latency: &Histogram{}}
	for _, s := range stats {
		r.Latency.Merge(&s.hist)
		r.OK += s.ok
		for k, n := range s.errs {
			if r.ErrorsBy == nil {
				r.ErrorsBy, r.ErrorSample = map[string]int64{}, map[string]string{}
			}
			r.ErrorsBy[k] += n
			r.Errors += n
			if _, ok := r.ErrorSample[k]; !ok {
				r.ErrorSample[k] = s.sample[k]
			}
		}
		for i, n := range s.perModel {
			r.PerModel[cfg.Models[i]] += n
		}
	}
	r.Requests = r.OK + r.Errors
	if r.Seconds > 0 {
		r.RequestsPerS = float64(r.OK) / r.Seconds
	}
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	r.MeanMs = ms(r.Latency.Mean())
	r.P50Ms = ms(r.Latency.Quantile(0.50))
	r.P90Ms = ms(r.Latency.Quantile(0.90))
	r.P99Ms = ms(r.Latency.Quantile(0.99))
	r.MaxMs = ms(r.Latency.Max())
	return r, ctx.Err()
}

// Do sends one request for model as Run would (cfg.Client, or
// http.DefaultClient when nil; cfg.Body, Output, Token and Timeout) and returns
// an error unless it was answered correctly.
func Do(ctx context.Context, cfg Config, model string) error {
	if cfg.Body == nil {
		return fmt.Errorf("load: no Body")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Minute
	}
	client := cfg.Client
	if client == nil {
		client = http.DefaultClient
	}
	kind, msg := do(ctx, client, &cfg, strings.TrimSuffix(cfg.URL, "/")+"/v2/models/"+model+"/infer", model)
	if kind != "" {
		return fmt.Errorf("%s: %s", kind, msg)
	}
	return nil
}

// inferAnswer is the part of an answer that is checked.
type inferAnswer struct {
	ModelName string `json:"model_name"`
	Outputs   []struct {
		Name  string          `json:"name"`
		Shape []int64         `json:"shape"`
		Data  json.RawMessage `json:"data"`
	} `json:"outputs"`
}

// do sends one request and returns the kind of error and its message, or ""
// for a correct answer.
func do(ctx context.Context, client *http.Client, cfg *Config, u, model string) (kind, msg string) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(cfg.Body(model)))
	if err != nil {
		return "transport", err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	if cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+cfg.Token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return errKind(err), err.Error()
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return errKind(err), err.Error()
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("http %d", resp.StatusCode), fmt.Sprintf("%s: %s", resp.Status, clip(body))
	}
	if err := checkAnswer(body, model, cfg.Output); err != nil {
		return "bad response", err.Error()
	}
	return "", ""
}

func errKind(err error) string {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return "timeout"
	}
	return "transport"
}

// checkAnswer checks that body is an inference answer for model (the name
// without a version) with an output named output (any output when "") that
// holds data.
func checkAnswer(body []byte, model, output string) error {
	var a inferAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return fmt.Errorf("answer is not JSON: %v: %s", err, clip(body))
	}
	name, _, _ := strings.Cut(model, "/")
	if a.ModelName != "" && a.ModelName != name {
		return fmt.Errorf("answer is of model %q, not %q", a.ModelName, name)
	}
	if len(a.Outputs) == 0 {
		return fmt.Errorf("answer has no outputs: %s", clip(body))
	}
	for _, o := range a.Outputs {
		if output != "" && o.Name != output {
			continue
		}
		if d := bytes.TrimSpace(o.Data); len(d) < 2 || d[0] != '[' {
			return fmt.Errorf("output %q has no data array", o.Name)
		}
		return nil
	}
	var names []string
	for _, o := range a.Outputs {
		names = append(names, o.Name)
	}
	return fmt.Errorf("answer has no output %q (has %s)", output, strings.Join(names, ", "))
}

// clip shortens a body for an error message.
func clip(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// Kinds lists r's error kinds, most frequent first.
func (r *Result) Kinds() []string {
	var ks []string
	for k := range r.ErrorsBy {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool {
		if r.ErrorsBy[ks[i]] != r.ErrorsBy[ks[j]] {
			return r.ErrorsBy[ks[i]] > r.ErrorsBy[ks[j]]
		}
		return ks[i] < ks[j]
	})
	return ks
}
