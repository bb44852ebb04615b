package load

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Requests to the server other than the load itself: readiness, model
// metadata, metrics.

// get fetches base+path and returns the body of a 200 answer.
func get(ctx context.Context, client *http.Client, base, path, token string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+path, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, clip(body))
	}
	return body, nil
}

// WaitReady polls GET /v2/health/ready every 50 ms until it answers 200, ctx
// ends, or alive (when not nil) reports an error (the server process exited).
func WaitReady(ctx context.Context, client *http.Client, base string, alive func() error) error {
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := get(rctx, client, base, "/v2/health/ready", "")
		cancel()
		if err == nil {
			return nil
		}
		if alive != nil {
			if aerr := alive(); aerr != nil {
				return aerr
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("server at %s not ready: %w (last: %v)", base, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Tensor is an input or output of a model's metadata.
type Tensor struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"` // -1: any size
}

// Model is a model's metadata (GET /v2/models/NAME).
type Model struct {
	Name    string   `json:"name"`
	Inputs  []Tensor `json:"inputs"`
	Outputs []Tensor `json:"outputs"`
}

// Metadata fetches model's metadata.
func Metadata(ctx context.Context, client *http.Client, base, model, token string) (*Model, error) {
	body, err := get(ctx, client, base, "/v2/models/"+model, token)
	if err != nil {
		return nil, err
	}
	var m Model
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("metadata of %s: %v", model, err)
	}
	return &m, nil
}

// Body is the JSON body of an inference request with random inputs for m:
// the first variable dimension of each input is rows, other variable ones 1;
// floats are uniform in [0, 1), integers in [0, 256), booleans random.
func (m *Model) Body(rows int, rng *rand.Rand) ([]byte, error) {
	type input struct {
		Name     string  `json:"name"`
		Shape    []int64 `json:"shape"`
		Datatype string  `json:"datatype"`
		Data     any     `json:"data"`
	}
	var ins []input
	for _, t := range m.Inputs {
		shape := make([]int64, len(t.Shape))
		n := int64(1)
		first := true
		for i, d := range t.Shape {
			switch {
			case d >= 0:
				shape[i] = d
			case first:
				shape[i], first = int64(rows), false
			default:
				shape[i] = 1
			}
			n *= shape[i]
		}
		var data any
		switch t.Datatype {
		case "FP32", "FP16", "BF16", "FP64":
			v := make([]float32, n)
			for i := range v {
				v[i] = rng.Float32()
			}
			data = v
		case "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64":
			v := make([]int64, n)
			for i := range v {
				v[i] = rng.Int64N(128)
			}
			data = v
		case "BOOL":
			v := make([]bool, n)
			for i := range v {
				v[i] = rng.IntN(2) == 1
			}
			data = v
		default:
			return nil, fmt.Errorf("model %s input %s: datatype %s not supported by the load generator", m.Name, t.Name, t.Datatype)
		}
		ins = append(ins, input{t.Name, shape, t.Datatype, data})
	}
	return json.Marshal(map[string]any{"inputs": ins})
}

// Samples are the samples of a Prometheus text exposition by series, the metric
// name with its labels as written (`neurstore_batch_size_sum{model="a"}`).
type Samples map[string]float64

// Scrape fetches base/metrics.
func Scrape(ctx context.Context, client *http.Client, base, token string) (Samples, error) {
	body, err := get(ctx, client, base, "/metrics", token)
	if err != nil {
		return nil, err
	}
	return ParseSamples(body)
}

// ParseSamples parses the Prometheus text format (comments skipped).
func ParseSamples(text []byte) (Samples, error) {
	s := Samples{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		var series, rest string
		if i := strings.IndexByte(line, '{'); i >= 0 && i < strings.IndexAny(line+" ", " \t") {
			j := strings.LastIndexByte(line, '}')
			if j < i {
				return nil, fmt.Errorf("metrics: bad line %q", line)
			}
			series, rest = line[:j+1], line[j+1:]
		} else {
			var ok bool
			series, rest, ok = strings.Cut(line, " ")
			if !ok {
				return nil, fmt.Errorf("metrics: bad line %q", line)
			}
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return nil, fmt.Errorf("metrics: no value in %q", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics: bad value in %q", line)
		}
		s[series] = v
	}
	return s, sc.Err()
}

// Sum adds the samples of metric name over all its label sets.
func (s Samples) Sum(name string) float64 {
	var t float64
	for k, v := range s {
		if k == name || strings.HasPrefix(k, name+"{") {
			t += v
		}
	}
	return t
}

// HistogramMean is the mean of the values histogram name observed between the
// scrapes before and after (sum over count of the differences, all label sets
// together), and how many there were; 0, 0 when none.
func HistogramMean(before, after Samples, name string) (mean, count float64) {
	count = after.Sum(name+"_count") - before.Sum(name+"_count")
	if count <= 0 {
		return 0, 0
	}
	return (after.Sum(name+"_sum") - before.Sum(name+"_sum")) / count, count
}
