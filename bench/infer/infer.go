// Package infer is the inference throughput benchmark behind `neurrun bench infer`:
// it imports the bench models into a scratch store with tau > 0, times our runtime
// in f32 and compressed mode at several batch sizes, times torch on the same
// weights and threads in the same run, measures the fused base + delta GEMV against
// plain memory bandwidth, and the resident memory of one f32 model against six
// compressed fine-tunes of one base.
//
// It must never touch the user's store: everything goes into a scratch folder.
package infer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/kernels"
	"github.com/neurstore/neurstore/runtime"
	"github.com/neurstore/neurstore/store"
)

// Config says what to measure.
type Config struct {
	Families string        // folder of the committed bench families (testdata/family)
	Tau      float64       // import error bound of the fine-tunes
	Batches  []int         // batch sizes
	Duration time.Duration // timed run per (model, mode, batch)
	Threads  int           // kernel threads (and torch's); 0: all cores
	Python   string        // interpreter with torch for the baseline and big-mlp; "" skips both
	Big      bool          // also generate and time big-mlp (needs Python)
	Bin      string        // the neurrun binary, for the resident-memory children; "" skips RSS
	Scratch  string        // scratch folder (created, then removed by the caller)
	Log      io.Writer
}

// Row is one timing.
type Row struct {
	Model       string  `json:"model"`
	Engine      string  `json:"engine"` // "neurstore f32", "neurstore compressed", "torch"
	Batch       int     `json:"batch"`
	SamplesPerS float64 `json:"samples_per_s"`
	P50Ms       float64 `json:"p50_ms"`
}

// GEMV is the fused kernel against memory bandwidth, measured in one run.
type GEMV struct {
	Rows, Cols     int
	BytesPerWeight float64 `json:"bytes_per_weight"`
	FusedGBs       float64 `json:"fused_gb_s"` // weight bytes read per second
	DenseGBs       float64 `json:"dense_f32_gb_s"`
	MemGBs         float64 `json:"memory_gb_s"` // parallel copy of 256 MiB, bytes read + written
}

// RSS is resident memory after loading models in a fresh process.
type RSS struct {
	OneF32Bytes        int64   `json:"one_f32_bytes"`
	SixCompressedBytes int64   `json:"six_compressed_bytes"`
	Ratio              float64 `json:"ratio"`
	Model              string  `json:"model"`
}

// Report is the benchmark's result.
type Report struct {
	Tau     float64  `json:"tau"`
	Threads int      `json:"threads"`
	Rows    []Row    `json:"rows"`
	GEMV    GEMV     `json:"gemv"`
	RSS     *RSS     `json:"rss,omitempty"`
	Notes   []string `json:"notes,omitempty"`
}

func (c *Config) logf(format string, args ...any) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, format+"\n", args...)
	}
}

// benchModels are the families timed: each imports base and ft1 as ONNX.
var benchModels = []string{"digits-mlp", "digits-cnn", "text-tiny"}

// Run runs the benchmark.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Threads <= 0 {
		cfg.Threads = kernels.Threads()
	}
	kernels.SetThreads(cfg.Threads)
	rep := &Report{Tau: cfg.Tau, Threads: cfg.Threads}
	st, err := store.Open(filepath.Join(cfg.Scratch, "store"))
	if err != nil {
		return nil, err
	}
	closed := false
	defer func() {
		if !closed {
			st.Close()
		}
	}()
	type model struct{ family, dir string }
	models := []model{}
	for _, f := range benchModels {
		models = append(models, model{f, cfg.Families})
	}
	if cfg.Big && cfg.Python != "" {
		dir := filepath.Join(cfg.Scratch, "big")
		cfg.logf("generating big-mlp (base + 6 fine-tunes) with %s", cfg.Python)
		if err := MakeBig(ctx, cfg.Python, dir, 6); err != nil {
			return nil, err
		}
		models = append(models, model{"big-mlp", dir})
	}
	for _, m := range models {
		roles := []string{"base", "ft1"}
		if m.family == "big-mlp" {
			roles = []string{"base", "ft1", "ft2", "ft3", "ft4", "ft5", "ft6"}
		}
		for _, role := range roles {
			name := m.family + "-" + role
			if err := importONNX(ctx, st, filepath.Join(m.dir, name+".onnx"), name, cfg.Tau, m.family+"-base"); err != nil {
				return nil, err
			}
		}
	}
	cache, err := runtime.NewBaseCache(runtime.DefaultCacheBytes)
	if err != nil {
		return nil, err
	}
	defer cache.Close()
	for _, m := range models {
		ref := m.family + "-ft1"
		for _, mode := range []runtime.Mode{runtime.ModeF32, runtime.ModeCompressed} {
			md, err := runtime.Load(st, ref, runtime.Options{Mode: mode, Cache: cache})
			if err != nil {
				return nil, err
			}
			for _, b := range cfg.Batches {
				row, err := timeModel(ctx, md, b, cfg.Duration)
				if err != nil {
					return nil, err
				}
				row.Model, row.Engine = ref, "neurstore "+string(mode)
				cfg.logf("%-16s %-22s batch %3d  %10.1f samples/s  p50 %8.3f ms", row.Model, row.Engine, b, row.SamplesPerS, row.P50Ms)
				rep.Rows = append(rep.Rows, row)
			}
		}
		if cfg.Python != "" {
			rows, err := torchRows(ctx, cfg, m.family, filepath.Join(m.dir, ref+".safetensors"))
			if err != nil {
				return nil, err
			}
			for i := range rows {
				r := &rows[i]
				r.Model = ref
				cfg.logf("%-16s %-22s batch %3d  %10.1f samples/s  p50 %8.3f ms", r.Model, r.Engine, r.Batch, r.SamplesPerS, r.P50Ms)
			}
			rep.Rows = append(rep.Rows, rows...)
		}
	}
	if cfg.Python == "" {
		rep.Notes = append(rep.Notes, "torch not timed (no python with torch)")
	}
	rep.GEMV = measureGEMV(cfg.Threads)
	cfg.logf("GEMV 4096x4096 fused %.1f GB/s (%.2f bytes/weight), dense f32 %.1f GB/s, memory %.1f GB/s",
		rep.GEMV.FusedGBs, rep.GEMV.BytesPerWeight, rep.GEMV.DenseGBs, rep.GEMV.MemGBs)
	if cfg.Bin != "" && cfg.Big && cfg.Python != "" {
		st.Close() // the children open the store
		closed = true
		r, err := measureRSS(ctx, cfg)
		if err != nil {
			return nil, err
		}
		rep.RSS = r
		cfg.logf("RSS: one f32 model %d MiB, six compressed fine-tunes %d MiB (%.2fx)", r.OneF32Bytes>>20, r.SixCompressedBytes>>20, r.Ratio)
	}
	return rep, nil
}

// MakeBig writes big-mlp (base and fine-tunes ft1..ftN as ONNX and safetensors,
// named big-mlp-ROLE) into dir with python (which needs torch), running
// bench/infer/make_big.py from the repository root (the working directory).
func MakeBig(ctx context.Context, python, dir string, finetunes int) error {
	out, err := exec.CommandContext(ctx, python, "bench/infer/make_big.py", dir, "--finetunes", fmt.Sprint(finetunes)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("make_big.py: %v\n%s", err, out)
	}
	return nil
}

// ImportONNX imports the ONNX model at path into st as ref with error bound
// tau, against base's tensors unless ref is base (replacing an existing ref).
func ImportONNX(ctx context.Context, st *store.Store, path, ref string, tau float64, base string) error {
	return importONNX(ctx, st, path, ref, tau, base)
}

func importONNX(ctx context.Context, st *store.Store, path, ref string, tau float64, base string) error {
	src, err := graph.OpenFile(path)
	if err != nil {
		return err
	}
	defer src.Close()
	opts := store.ImportOptions{Ref: ref, Tau: tau, Force: true}
	if ref != base {
		opts.Base = base
	}
	_, err = st.Import(ctx, src, opts)
	return err
}

// Input makes a batch of random inputs for md's graph inputs: floats in [0, 1),
// integers in [0, 256); the first symbolic dimension takes the batch size, other
// symbolic dimensions 1.
func Input(md *runtime.Model, batch int, rng *rand.Rand) (map[string]*runtime.Tensor, error) {
	feeds := map[string]*runtime.Tensor{}
	for _, in := range md.Inputs() {
		var shape []int
		first := true
		for _, d := range in.Shape {
			switch {
			case d.Value >= 0:
				shape = append(shape, int(d.Value))
			case first:
				shape, first = append(shape, batch), false
			default:
				shape = append(shape, 1)
			}
		}
		n := 1
		for _, d := range shape {
			n *= d
		}
		t := &runtime.Tensor{DType: in.DType, Shape: shape}
		switch in.DType {
		case graph.F32:
			t.F32 = make([]float32, n)
			for i := range t.F32 {
				t.F32[i] = rng.Float32()
			}
		case graph.I64, graph.I32:
			t.I64 = make([]int64, n)
			for i := range t.I64 {
				t.I64[i] = rng.Int64N(256)
			}
		default:
			return nil, fmt.Errorf("input %s of type %s: the benchmark makes only f32 and integer inputs", in.Name, in.DType)
		}
		feeds[in.Name] = t
	}
	return feeds, nil
}

// timeModel runs md at batch b for about d after a warm-up.
func timeModel(ctx context.Context, md *runtime.Model, b int, d time.Duration) (Row, error) {
	feeds, err := Input(md, b, rand.New(rand.NewPCG(1, uint64(b))))
	if err != nil {
		return Row{}, err
	}
	s := md.NewSession()
	for range 3 {
		if _, err := s.Run(ctx, feeds); err != nil {
			return Row{}, err
		}
	}
	var lat []time.Duration
	var total time.Duration
	for total < d || len(lat) < 5 {
		t0 := time.Now()
		if _, err := s.Run(ctx, feeds); err != nil {
			return Row{}, err
		}
		e := time.Since(t0)
		lat = append(lat, e)
		total += e
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return Row{
		Batch:       b,
		SamplesPerS: float64(b*len(lat)) / total.Seconds(),
		P50Ms:       float64(lat[len(lat)/2]) / 1e6,
	}, nil
}

func torchRows(ctx context.Context, cfg Config, family, weights string) ([]Row, error) {
	var bs []string
	for _, b := range cfg.Batches {
		bs = append(bs, fmt.Sprint(b))
	}
	cmd := exec.CommandContext(ctx, cfg.Python, "bench/infer/torch_infer.py", family, weights,
		"--batches", strings.Join(bs, ","), "--threads", fmt.Sprint(cfg.Threads),
		"--seconds", fmt.Sprint(cfg.Duration.Seconds()))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("torch_infer.py %s: %w", family, err)
	}
	var rows []Row
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var r struct {
			Batch       int     `json:"batch"`
			SamplesPerS float64 `json:"samples_per_s"`
			P50Ms       float64 `json:"p50_ms"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, fmt.Errorf("torch_infer.py: bad line %q", line)
		}
		rows = append(rows, Row{Engine: "torch", Batch: r.Batch, SamplesPerS: r.SamplesPerS, P50Ms: r.P50Ms})
	}
	return rows, nil
}
