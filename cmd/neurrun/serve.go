package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"time"

	"github.com/neurstore/neurstore/runtime/serve"
	"github.com/spf13/cobra"
)

// envToken is the environment variable holding the bearer token of "neurrun
// serve" (read here because only serve uses it).
const envToken = "NEURSTORE_TOKEN"

func serveCmd() *cobra.Command {
	var (
		lf           loadFlags
		addr         string
		token        string
		memoryBytes  int64
		maxBatch     int
		maxDelay     time.Duration
		workers      int
		queue        int
		timeout      time.Duration
		drainTimeout time.Duration
		maxBody      int64
		preload      []string
	)
	cmd := &cobra.Command{
		Use:   "serve [--addr 127.0.0.1:8080] [--preload NAME...]",
		Short: "Serve the store's models over HTTP (KServe v2 / Open Inference Protocol)",
		Long: `Serve answers inference requests for the store's models over the KServe v2 /
Open Inference Protocol REST API, the one Triton, KServe and MLServer speak:

  GET  /v2                                    server metadata
  GET  /v2/health/live, /v2/health/ready      probes (no token needed)
  GET  /v2/models/NAME[/versions/TAG]         inputs and outputs (-1: any size)
  GET  /v2/models/NAME[/versions/TAG]/ready   whether the model is loaded
  POST /v2/models/NAME[/versions/TAG]/infer   run it: {"inputs": [{"name", "shape",
                                              "datatype", "data"}], ...}

A model's version is its tag (default "latest"). Models are managed under /api/:

  GET    /api/models            list the models
  GET    /api/models/NAME       show one
  POST   /api/models            import: JSON {"path": "/abs/file.onnx", "name", "tau",
                                "base", "force"}, or upload the file as
                                application/octet-stream or multipart/form-data
                                with ?name=NAME&tau=&base=&format=onnx|safetensors
  DELETE /api/models/NAME       unload and delete

and Prometheus metrics are at /metrics.

Models load on first use (or at start with --preload) and stay loaded while
their weights fit --memory-bytes; the least recently used idle model is unloaded
to make room. Requests for one model arriving within --max-delay are run
together, joined along the first (batch) dimension up to --max-batch rows, by
--workers sessions per model. Fine-tunes of one base loaded in compressed mode
share one queue and workers: a run holding requests for several of them is one
cross-model run, the base product computed once for all rows and each model's
delta product added to its own. Each model queues at most --queue requests (more
answer 429); a request that takes longer than --timeout answers 504 and its run
is cancelled.

The server listens on 127.0.0.1 unless --addr says otherwise (--addr
127.0.0.1:0 picks a free port; the address is printed on stderr). With --token
(or $NEURSTORE_TOKEN, which keeps it out of the process list) every endpoint
but the health probes needs "Authorization: Bearer TOKEN". On SIGTERM or
SIGINT it stops accepting, finishes the requests in flight and queued (up to
--drain-timeout) and exits.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if token == "" {
				token = os.Getenv(envToken)
			}
			if maxDelay < 0 {
				return fmt.Errorf("--max-delay must be >= 0")
			}
			for _, c := range []struct {
				name string
				ok   bool
			}{
				{"--memory-bytes", memoryBytes > 0}, {"--max-batch", maxBatch > 0},
				{"--workers", workers > 0}, {"--queue", queue > 0}, {"--timeout", timeout > 0},
				{"--drain-timeout", drainTimeout > 0}, {"--max-body", maxBody > 0},
			} {
				if !c.ok {
					return fmt.Errorf("%s must be > 0", c.name)
				}
			}
			opts, err := lf.options()
			if err != nil {
				return err
			}
			defer opts.Cache.Close()
			s, err := openStore()
			if err != nil {
				return err
			}
			defer s.Close()
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			srv, err := serve.New(serve.Config{
				Store: s, Load: opts, MemoryBytes: memoryBytes,
				MaxBatch: maxBatch, MaxDelay: maxDelay, Workers: workers, Queue: queue,
				Timeout: timeout, DrainTimeout: drainTimeout, MaxBody: maxBody,
				Token: token, Preload: preload, Version: serverVersion(), Logger: log,
			})
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			if ap, ok := ln.Addr().(*net.TCPAddr); ok && !ap.IP.IsLoopback() && token == "" {
				log.Warn("listening beyond loopback without a token: anyone who can reach this address can run, import and delete models", "addr", ln.Addr().String())
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "listening on http://%s\n", ln.Addr())
			return srv.Run(cmd.Context(), ln)
		},
	}
	lf.add(cmd)
	f := cmd.Flags()
	f.StringVar(&addr, "addr", "127.0.0.1:8080", "address to listen on (host:port; port 0 picks a free one)")
	f.StringVar(&token, "token", "", "bearer token required on every endpoint but /v2/health/* (env "+envToken+")")
	f.Int64Var(&memoryBytes, "memory-bytes", serve.DefaultMemoryBytes, "budget of the loaded models' weights, in bytes; idle models are unloaded beyond it")
	f.IntVar(&maxBatch, "max-batch", serve.DefaultMaxBatch, "most rows one run joins")
	f.DurationVar(&maxDelay, "max-delay", serve.DefaultMaxDelay, "how long a request waits for others to join its run (0: no wait)")
	f.IntVar(&workers, "workers", serve.DefaultWorkers(), "concurrent runs per loaded model")
	f.IntVar(&queue, "queue", serve.DefaultQueue, "most requests waiting per model; more answer 429")
	f.DurationVar(&timeout, "timeout", serve.DefaultTimeout, "deadline of each inference request (504 beyond it)")
	f.DurationVar(&drainTimeout, "drain-timeout", serve.DefaultDrainTimeout, "how long shutdown waits for the requests in flight")
	f.Int64Var(&maxBody, "max-body", serve.DefaultMaxBody, "largest request body in bytes, uploads included (413 beyond it)")
	f.StringSliceVar(&preload, "preload", nil, "models NAME[:TAG] to load at start (repeat or comma-separate); ready once loaded")
	return cmd
}

// serverVersion is the module version of the binary ("dev" for a source build).
func serverVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
