package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/neurstore/neurstore/bench/infer"
	"github.com/neurstore/neurstore/bench/load"
	"github.com/neurstore/neurstore/runtime"
	"github.com/neurstore/neurstore/runtime/serve"
	"github.com/neurstore/neurstore/store"
	"github.com/spf13/cobra"
)

// serveTarget is the stated goal: the fine-tunes together reach this share of
// one model's requests/s.
const serveTarget = 0.7

// servePassFlags are the flags of bench serve handed to the serve child when
// given (otherwise serve's own defaults apply).
var servePassFlags = []string{"mode", "threads", "cache-bytes", "max-batch", "max-delay", "workers", "queue", "timeout", "memory-bytes"}

func benchServeCmd() *cobra.Command {
	var (
		family   string
		families string
		python   string
		tau      float64
		clients  int
		dur      time.Duration
		warmup   time.Duration
		extra    []string
		asJSON   bool
		out      string
	)
	cmd := &cobra.Command{
		Use:   "serve [--family big-mlp] [--clients 64] [--duration 60s]",
		Short: "Load-test neurrun serve: one model against several fine-tunes of one base",
		Long: `Serve builds a scratch store holding a model family (--tau, default 1e-4),
starts "neurrun serve" on it as a child process (this binary, on 127.0.0.1 and a
free port) and sends it inference requests from --clients concurrent clients for
--duration, each one request at a time over keep-alive connections, one row of
random floats per request (fixed seed), like online traffic. Two scenarios, each
against a fresh server:

  A  every request to FAMILY-ft1
  B  requests spread evenly over the family's fine-tunes (ft1..ft6 of big-mlp)

Each scenario is warmed up first (one request per model, then --warmup of full
load, not counted). It reports requests/s (correct answers), p50/p90/p99/max
latency, errors by kind (any answer but a 200 carrying the model's output), the
rows and requests per model run from the server's /metrics, the server's
resident memory (VmRSS) before and after the load, and B's requests/s over A's
against the target of ` + fmt.Sprint(serveTarget) + `. The server is stopped with SIGTERM and must exit 0.

--family big-mlp (the default) generates big-mlp, the synthetic 42 MB MLP of
bench infer, with --python (which needs torch; run from the repository root);
any other family is read from --families (FAMILY-base.onnx, FAMILY-ft1.onnx ...),
e.g. --family digits-mlp for a quick run without python.

--mode, --threads, --cache-bytes, --max-batch, --max-delay, --workers, --queue,
--timeout and --memory-bytes go to the server when given; --serve-flag passes any
other flag of "neurrun serve" (e.g. --serve-flag=--max-delay=5ms).

The load generator runs on the same machine as the server and takes CPU from
it. The user's store is not touched.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if clients < 1 {
				return fmt.Errorf("--clients must be >= 1")
			}
			if dur <= 0 {
				return fmt.Errorf("--duration must be > 0")
			}
			if warmup < 0 {
				return fmt.Errorf("--warmup must be >= 0")
			}
			if !(tau >= 0) {
				return fmt.Errorf("--tau must be >= 0")
			}
			bin, err := os.Executable()
			if err != nil {
				return fmt.Errorf("finding this binary to start the server: %w", err)
			}
			var serveArgs []string
			for _, name := range servePassFlags {
				if f := cmd.Flags().Lookup(name); f.Changed {
					serveArgs = append(serveArgs, "--"+name+"="+f.Value.String())
				}
			}
			serveArgs = append(serveArgs, extra...)
			logw := cmd.ErrOrStderr()

			scratch, err := os.MkdirTemp("", "neurrun-bench-serve-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(scratch)
			fts, err := buildServeStore(cmd.Context(), logw, scratch, family, families, python, tau)
			if err != nil {
				return err
			}

			rep := &serveReport{Family: family, Tau: tau, Clients: clients, DurationS: dur.Seconds(), ServeArgs: serveArgs, Target: serveTarget}
			specs := []struct {
				name   string
				models []string
			}{
				{"A: one model", fts[:1]},
				{fmt.Sprintf("B: %d fine-tunes", len(fts)), fts},
			}
			var exitErr error
			for _, sp := range specs {
				fmt.Fprintf(logw, "scenario %s: %d clients for %v against %s\n", sp.name, clients, dur, strings.Join(sp.models, ", "))
				sc, err := runServeScenario(cmd.Context(), logw, serveRun{
					bin: bin, store: filepath.Join(scratch, "store"), args: serveArgs,
					models: sp.models, clients: clients, dur: dur, warmup: warmup,
				})
				if err != nil {
					return fmt.Errorf("scenario %s: %w", sp.name, err)
				}
				sc.Name = sp.name
				r := sc.Load
				fmt.Fprintf(logw, "  %d requests, %d errors, %.1f req/s, p50 %.2f ms, p99 %.2f ms, %.1f rows per run, RSS %.0f -> %.0f MB, exit %d\n",
					r.Requests, r.Errors, r.RequestsPerS, r.P50Ms, r.P99Ms, sc.MeanBatchRows, mb(sc.RSSStartBytes), mb(sc.RSSEndBytes), sc.ExitCode)
				if sc.ExitCode != 0 && exitErr == nil {
					exitErr = fmt.Errorf("scenario %s: the server exited with status %d after SIGTERM", sp.name, sc.ExitCode)
				}
				rep.Scenarios = append(rep.Scenarios, sc)
			}
			if a := rep.Scenarios[0].Load.RequestsPerS; a > 0 {
				rep.Ratio = rep.Scenarios[1].Load.RequestsPerS / a
			}
			rep.Met = rep.Ratio >= serveTarget
			if err := writeReport(cmd.OutOrStdout(), out, asJSON, rep, func(w io.Writer) { serveMarkdown(w, rep) }); err != nil {
				return err
			}
			return exitErr
		},
	}
	f := cmd.Flags()
	f.StringVar(&family, "family", "big-mlp", "model family: big-mlp (generated) or one in --families with FAMILY-base.onnx and FAMILY-ftN.onnx")
	f.StringVar(&families, "families", "testdata/family", "folder of the committed families (for --family other than big-mlp)")
	f.StringVar(&python, "python", "/usr/bin/python3", "python with torch, to generate big-mlp")
	f.Float64Var(&tau, "tau", 1e-4, "error bound the models are imported with")
	f.IntVar(&clients, "clients", 64, "concurrent clients")
	f.DurationVar(&dur, "duration", 60*time.Second, "load time per scenario")
	f.DurationVar(&warmup, "warmup", 2*time.Second, "full load before each scenario, not counted (0: one request per model only)")
	f.StringArrayVar(&extra, "serve-flag", nil, `a flag for "neurrun serve", as --serve-flag=--NAME=VALUE (repeat)`)
	f.BoolVar(&asJSON, "json", false, "print JSON instead of a Markdown table")
	f.StringVar(&out, "out", "", "write the report to this file instead of standard output")
	// flags passed to the server when given; defaults shown are serve's
	f.String("mode", "", "server load mode (default: compressed for --tau > 0, else f32)")
	f.Int("threads", 0, "server kernel threads (0: all cores)")
	f.Int64("cache-bytes", runtime.DefaultCacheBytes, "server base-tensor cache budget in bytes")
	f.Int("max-batch", serve.DefaultMaxBatch, "server: most rows one run joins")
	f.Duration("max-delay", serve.DefaultMaxDelay, "server: how long a request waits for others to join its run")
	f.Int("workers", serve.DefaultWorkers(), "server: concurrent runs per loaded model")
	f.Int("queue", serve.DefaultQueue, "server: most requests waiting per model")
	f.Duration("timeout", serve.DefaultTimeout, "server: deadline of each request")
	f.Int64("memory-bytes", serve.DefaultMemoryBytes, "server: budget of the loaded models' weights in bytes")
	return cmd
}

// buildServeStore imports family's base and fine-tunes into scratch/store and
// returns the fine-tunes' names in order (FAMILY-ft1 first).
func buildServeStore(ctx context.Context, logw io.Writer, scratch, family, families, python string, tau float64) ([]string, error) {
	dir := families
	if family == "big-mlp" {
		dir = filepath.Join(scratch, "big")
		fmt.Fprintf(logw, "generating big-mlp (base + 6 fine-tunes) with %s\n", python)
		if err := infer.MakeBig(ctx, python, dir, 6); err != nil {
			return nil, fmt.Errorf("%w(big-mlp needs %s with torch, run from the repository root; --family digits-mlp needs neither)", err, python)
		}
	}
	base := family + "-base"
	if _, err := os.Stat(filepath.Join(dir, base+".onnx")); err != nil {
		return nil, fmt.Errorf("family %s: %w", family, err)
	}
	var fts []string
	for i := 1; i <= 6; i++ {
		name := fmt.Sprintf("%s-ft%d", family, i)
		if _, err := os.Stat(filepath.Join(dir, name+".onnx")); err != nil {
			break
		}
		fts = append(fts, name)
	}
	if len(fts) < 2 {
		return nil, fmt.Errorf("family %s: %s holds %d fine-tunes (%s-ft1.onnx ...), need at least 2", family, dir, len(fts), family)
	}
	st, err := store.Open(filepath.Join(scratch, "store"))
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logw, "importing %s and %d fine-tunes at tau %g\n", base, len(fts), tau)
	for _, name := range append([]string{base}, fts...) {
		if err := infer.ImportONNX(ctx, st, filepath.Join(dir, name+".onnx"), name, tau, base); err != nil {
			st.Close()
			return nil, fmt.Errorf("importing %s: %w", name, err)
		}
	}
	// closed before the server opens it: one process at a time
	return fts, st.Close()
}

// serveReport is bench serve's result.
type serveReport struct {
	Family    string          `json:"family"`
	Tau       float64         `json:"tau"`
	Clients   int             `json:"clients"`
	DurationS float64         `json:"duration_s"`
	ServeArgs []string        `json:"serve_args"`
	Scenarios []serveScenario `json:"scenarios"`
	Ratio     float64         `json:"ratio_b_over_a"` // requests/s of B over A
	Target    float64         `json:"target"`
	Met       bool            `json:"met"`
}

// serveScenario is one scenario's measurement.
type serveScenario struct {
	Name   string       `json:"name"`
	Models []string     `json:"models"`
	Load   *load.Result `json:"load"`
	// from the server's /metrics, over the measured load only
	Runs              float64 `json:"runs"`
	MeanBatchRows     float64 `json:"mean_batch_rows"`
	MeanBatchRequests float64 `json:"mean_batch_requests"`
	ServerErrors      float64 `json:"server_errors"`
	// the server's VmRSS: ready with no model loaded, after the warm-up, after the load
	RSSIdleBytes  int64 `json:"rss_idle_bytes"`
	RSSStartBytes int64 `json:"rss_start_bytes"`
	RSSEndBytes   int64 `json:"rss_end_bytes"`
	ExitCode      int   `json:"exit_code"` // of the server after SIGTERM
}

// serveRun says how to run one scenario.
type serveRun struct {
	bin, store  string
	args        []string
	models      []string
	clients     int
	dur, warmup time.Duration
}

// runServeScenario starts a server, warms it up, measures the load and stops it.
func runServeScenario(ctx context.Context, logw io.Writer, r serveRun) (sc serveScenario, err error) {
	sc.Models = r.models
	token, err := randomToken()
	if err != nil {
		return sc, err
	}
	child, err := startServeChild(ctx, r.bin, r.store, r.args, token)
	if err != nil {
		return sc, err
	}
	defer func() {
		if err != nil {
			child.kill()
			err = fmt.Errorf("%w\nserver log (last lines):\n%s", err, child.tail())
		}
	}()
	client := load.NewClient(r.clients)
	defer client.CloseIdleConnections()
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err = load.WaitReady(rctx, client, child.url, child.exited)
	cancel()
	if err != nil {
		return sc, err
	}
	if sc.RSSIdleBytes, err = infer.ProcessRSS(child.pid()); err != nil {
		return sc, err
	}

	// one request body per model: one row, fixed seed
	bodies := map[string][]byte{}
	output := ""
	for i, m := range r.models {
		md, err := load.Metadata(ctx, client, child.url, m, token)
		if err != nil {
			return sc, err
		}
		if len(md.Outputs) == 0 {
			return sc, fmt.Errorf("model %s has no outputs", m)
		}
		if i == 0 {
			output = md.Outputs[0].Name
		}
		if bodies[m], err = md.Body(1, mrand.New(mrand.NewPCG(1, uint64(i)))); err != nil {
			return sc, err
		}
	}
	cfg := load.Config{
		URL: child.url, Models: r.models, Clients: r.clients, Duration: r.warmup,
		Body: func(m string) []byte { return bodies[m] }, Output: output, Token: token, Client: client,
	}
	for _, m := range r.models {
		if err := load.Do(ctx, cfg, m); err != nil {
			return sc, fmt.Errorf("first request to %s: %w", m, err)
		}
	}
	if r.warmup > 0 {
		w, err := load.Run(ctx, cfg)
		if err != nil {
			return sc, err
		}
		fmt.Fprintf(logw, "  warm-up: %d requests, %d errors\n", w.Requests, w.Errors)
	}

	before, err := load.Scrape(ctx, client, child.url, token)
	if err != nil {
		return sc, err
	}
	if sc.RSSStartBytes, err = infer.ProcessRSS(child.pid()); err != nil {
		return sc, err
	}
	cfg.Duration = r.dur
	if sc.Load, err = load.Run(ctx, cfg); err != nil {
		return sc, err
	}
	if sc.RSSEndBytes, err = infer.ProcessRSS(child.pid()); err != nil {
		return sc, err
	}
	after, err := load.Scrape(ctx, client, child.url, token)
	if err != nil {
		return sc, err
	}
	sc.MeanBatchRows, sc.Runs = load.HistogramMean(before, after, "neurstore_batch_size")
	sc.MeanBatchRequests, _ = load.HistogramMean(before, after, "neurstore_batch_requests")
	sc.ServerErrors = after.Sum("neurstore_inference_errors_total") - before.Sum("neurstore_inference_errors_total")

	client.CloseIdleConnections()
	if sc.ExitCode, err = child.stop(serve.DefaultDrainTimeout + 30*time.Second); err != nil {
		return sc, err
	}
	if sc.ExitCode != 0 {
		fmt.Fprintf(logw, "  the server exited with status %d; its log (last lines):\n%s\n", sc.ExitCode, child.tail())
	}
	return sc, nil
}

func randomToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// serveChild is a "neurrun serve" child process.
type serveChild struct {
	cmd  *exec.Cmd
	url  string
	log  *lineLog
	done chan struct{} // closed once the process has exited and been waited for
	err  error         // Wait's error, set before done is closed
}

// startServeChild starts bin serve on store, on 127.0.0.1 and a free port, with
// token in its environment, and waits for the address it prints.
func startServeChild(ctx context.Context, bin, storeDir string, args []string, token string) (*serveChild, error) {
	argv := append([]string{"--store", storeDir, "serve", "--addr", "127.0.0.1:0"}, args...)
	cmd := exec.Command(bin, argv...)
	env := []string{envToken + "=" + token}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envToken+"=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	addr := make(chan string, 1)
	c := &serveChild{cmd: cmd, log: &lineLog{addr: addr}, done: make(chan struct{})}
	cmd.Stderr = c.log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	timer := time.NewTimer(2 * time.Minute)
	defer timer.Stop()
	select {
	case a := <-addr:
		c.url = "http://" + a
		return c, nil
	case <-c.done:
		return nil, fmt.Errorf("%s %s exited before listening: %v\n%s", bin, strings.Join(argv, " "), c.err, c.tail())
	case <-ctx.Done():
		c.kill()
		return nil, ctx.Err()
	case <-timer.C:
		c.kill()
		return nil, fmt.Errorf("%s serve printed no address within 2 minutes\n%s", bin, c.tail())
	}
}

func (c *serveChild) pid() int { return c.cmd.Process.Pid }

// exited is nil while the process runs.
func (c *serveChild) exited() error {
	select {
	case <-c.done:
		return fmt.Errorf("the server exited: %v", c.err)
	default:
		return nil
	}
}

// stop sends SIGTERM and waits up to timeout for the exit (then kills it).
func (c *serveChild) stop(timeout time.Duration) (int, error) {
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return -1, err
	}
	select {
	case <-c.done:
		return c.cmd.ProcessState.ExitCode(), nil
	case <-time.After(timeout):
		c.kill()
		return -1, fmt.Errorf("the server did not exit within %v of SIGTERM", timeout)
	}
}

// kill stops the process if it still runs: SIGTERM, then SIGKILL after 5 s.
func (c *serveChild) kill() {
	select {
	case <-c.done:
		return
	default:
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
	}
}

func (c *serveChild) tail() string { return c.log.tail() }

// lineLog takes the server's stderr: it sends the address of the first
// "listening on http://ADDR" line on addr and keeps the last lines.
type lineLog struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
	addr    chan string
	found   bool
}

const lineLogKeep = 40

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		line := string(l.partial[:i])
		l.partial = l.partial[i+1:]
		if a, ok := strings.CutPrefix(line, "listening on http://"); ok && !l.found {
			l.found = true
			l.addr <- strings.TrimSpace(a)
		}
		l.lines = append(l.lines, line)
		if len(l.lines) > lineLogKeep {
			l.lines = l.lines[len(l.lines)-lineLogKeep:]
		}
	}
	if len(l.partial) > 64<<10 {
		l.partial = l.partial[len(l.partial)-64<<10:]
	}
	return len(p), nil
}

func (l *lineLog) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(append(l.lines, string(l.partial)), "\n")
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

// modelsCell names a scenario's models compactly: "m-ft1" or "m-ft1..ft6".
func modelsCell(ms []string) string {
	if len(ms) == 1 {
		return ms[0]
	}
	last := ms[len(ms)-1]
	if i := strings.LastIndexByte(last, '-'); i >= 0 && strings.HasPrefix(ms[0], last[:i+1]) {
		last = last[i+1:]
	}
	return ms[0] + ".." + last
}

// serveMarkdown writes the report as a table.
func serveMarkdown(w io.Writer, r *serveReport) {
	args := "serve defaults"
	if len(r.ServeArgs) > 0 {
		args = "serve " + strings.Join(r.ServeArgs, " ")
	}
	fmt.Fprintf(w, "Serve load test: %s imported at tau %g, %d clients, one row per request, %s; a fresh server per scenario.\n\n", r.Family, r.Tau, r.Clients, args)
	fmt.Fprintln(w, "| scenario | models | clients | seconds | requests | errors | req/s | p50 ms | p99 ms | mean batch rows | RSS start MB | RSS end MB |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, s := range r.Scenarios {
		l := s.Load
		fmt.Fprintf(w, "| %s | %s | %d | %.1f | %d | %d | %.1f | %.2f | %.2f | %.1f | %.0f | %.0f |\n",
			s.Name, modelsCell(s.Models), l.Clients, l.Seconds, l.Requests, l.Errors, l.RequestsPerS, l.P50Ms, l.P99Ms,
			s.MeanBatchRows, mb(s.RSSStartBytes), mb(s.RSSEndBytes))
	}
	verdict := "met"
	if !r.Met {
		verdict = "NOT met"
	}
	fmt.Fprintf(w, "\nB / A requests/s: %.2f (target >= %.2f: %s).\n", r.Ratio, r.Target, verdict)
	for _, s := range r.Scenarios {
		l := s.Load
		fmt.Fprintf(w, "\n%s: p90 %.2f ms, max %.2f ms; %.0f runs, %.1f requests per run; server RSS idle %.0f MB; exit status %d after SIGTERM.",
			s.Name, l.P90Ms, l.MaxMs, s.Runs, s.MeanBatchRequests, mb(s.RSSIdleBytes), s.ExitCode)
		for _, k := range l.Kinds() {
			fmt.Fprintf(w, " Errors %s: %d (first: %s).", k, l.ErrorsBy[k], l.ErrorSample[k])
		}
		fmt.Fprintln(w)
	}
}
