package serve

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	goruntime "runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/runtime"
	"github.com/neurstore/neurstore/store"
)

// Config configures a Server. Zero values take the defaults named below.
type Config struct {
	// Store holds the models served.
	Store *store.Store
	// Load is how models load (mode, shared base cache). A nil Cache gets one of
	// runtime.DefaultCacheBytes.
	Load runtime.Options
	// MemoryBytes is the budget of the loaded models' weights (default 4 GiB).
	MemoryBytes int64
	// MaxBatch is the most rows one run joins (default 64).
	MaxBatch int
	// MaxDelay is how long a request waits for others to join its run; 0 does
	// not wait (a run still takes the requests queued while workers are busy).
	MaxDelay time.Duration
	// Workers is the number of runs of one model at a time (default
	// GOMAXPROCS/2, at least 1).
	Workers int
	// Queue is the most requests waiting per model (default 256); more answer 429.
	Queue int
	// Timeout is the deadline of each inference request (default 30s); beyond it
	// the request answers 504 and its run is cancelled.
	Timeout time.Duration
	// DrainTimeout bounds the wait for the requests in flight at shutdown
	// (default 30s).
	DrainTimeout time.Duration
	// MaxBody is the largest request body (default 64 MiB); larger answer 413.
	MaxBody int64
	// Token, when set, is the bearer token every endpoint but /v2/health/* needs.
	Token string
	// Preload names models to load at start; /v2/health/ready is true once they are.
	Preload []string
	// Version is reported by GET /v2.
	Version string
	// Logger receives the server's log (nil: none).
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultMemoryBytes  = 4 << 30
	DefaultMaxBatch     = 64
	DefaultMaxDelay     = 2 * time.Millisecond
	DefaultQueue        = 256
	DefaultTimeout      = 30 * time.Second
	DefaultDrainTimeout = 30 * time.Second
	DefaultMaxBody      = 64 << 20
)

// DefaultWorkers is the default number of workers per model: GOMAXPROCS/2, at
// least 1.
func DefaultWorkers() int { return max(goruntime.GOMAXPROCS(0)/2, 1) }

func (c *Config) setDefaults() {
	if c.MemoryBytes <= 0 {
		c.MemoryBytes = DefaultMemoryBytes
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	c.MaxDelay = max(c.MaxDelay, 0)
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers()
	}
	if c.Queue <= 0 {
		c.Queue = DefaultQueue
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.MaxBody <= 0 {
		c.MaxBody = DefaultMaxBody
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Server is the HTTP inference server.
type Server struct {
	cfg     Config
	be      backend
	mgr     *manager
	metrics *metrics
	log     *slog.Logger
	handler http.Handler
	ready   atomic.Bool // preloads done and not shutting down
}

// New returns a server over cfg.Store.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("serve: no store")
	}
	if cfg.Load.Cache == nil {
		c, err := runtime.NewBaseCache(runtime.DefaultCacheBytes)
		if err != nil {
			return nil, err
		}
		cfg.Load.Cache = c
	}
	for _, ref := range cfg.Preload {
		if _, err := canonical(ref); err != nil {
			return nil, fmt.Errorf("serve: preload: %w", err)
		}
	}
	return newServer(cfg, &storeBackend{st: cfg.Store, opts: cfg.Load}), nil
}

func newServer(cfg Config, be backend) *Server {
	cfg.setDefaults()
	s := &Server{cfg: cfg, be: be, log: cfg.Logger}
	s.metrics = newMetrics(be.CacheStats, func() (int, int64) { return s.mgr.loadedStats() })
	s.mgr = newManager(be, &s.cfg, s.metrics, s.log)
	s.handler = s.routes()
	if len(cfg.Preload) == 0 {
		s.ready.Store(true)
	}
	return s
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Run serves on ln until ctx is done, then shuts down gracefully: it stops
// accepting, lets the requests in flight and in the queues finish (up to
// Config.DrainTimeout), stops the models' workers and returns nil. It loads the
// preloads meanwhile; a preload that fails stops the server with its error.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()

	preloadErr := make(chan error, 1)
	go func() { preloadErr <- s.preload(ctx) }()

	var err error
	select {
	case <-ctx.Done():
	case err = <-served: // the listener failed
	case err = <-preloadErr:
		if err == nil {
			if len(s.cfg.Preload) > 0 {
				s.log.Info("preloads done: ready")
			}
			select {
			case <-ctx.Done():
			case err = <-served:
			}
		}
	}
	return errors.Join(err, s.shutdown(hs))
}

// preload loads the configured models one by one, then marks the server ready.
func (s *Server) preload(ctx context.Context) error {
	for _, name := range s.cfg.Preload {
		ref, err := canonical(name)
		if err != nil {
			return err
		}
		e, err := s.mgr.acquire(ctx, ref)
		if err != nil {
			if ctx.Err() != nil {
				return nil // shutting down anyway
			}
			return fmt.Errorf("preload %s: %w", ref, err)
		}
		s.mgr.release(e)
	}
	if ctx.Err() == nil {
		s.ready.Store(true)
	}
	return nil
}

// shutdown drains hs and the models.
func (s *Server) shutdown(hs *http.Server) error {
	s.ready.Store(false)
	s.log.Info("shutting down: draining requests", "timeout", s.cfg.DrainTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
	defer cancel()
	err := hs.Shutdown(ctx)
	if err != nil {
		hs.Close()
		err = fmt.Errorf("serve: requests still running after the drain timeout of %s: %w", s.cfg.DrainTimeout, err)
	}
	if cerr := s.mgr.close(ctx); cerr != nil && err == nil {
		err = fmt.Errorf("serve: model runs still going after the drain timeout of %s: %w", s.cfg.DrainTimeout, cerr)
	}
	if err == nil {
		s.log.Info("shut down cleanly")
	}
	return err
}

// routes builds the handler: auth, body limit and JSON errors around the mux.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	// Open Inference Protocol
	mux.HandleFunc("GET /v2", s.serverMetadata)
	mux.HandleFunc("GET /v2/{$}", s.serverMetadata)
	mux.HandleFunc("GET /v2/health/live", s.live)
	mux.HandleFunc("GET /v2/health/ready", s.readyz)
	for _, p := range []string{"/v2/models/{name}", "/v2/models/{name}/versions/{version}"} {
		mux.HandleFunc("GET "+p, s.modelMetadata)
		mux.HandleFunc("GET "+p+"/ready", s.modelReady)
		mux.HandleFunc("POST "+p+"/infer", s.infer)
	}
	// management
	mux.HandleFunc("GET /api/models", s.listModels)
	mux.HandleFunc("GET /api/models/{name}", s.showModel)
	mux.HandleFunc("POST /api/models", s.importModel)
	mux.HandleFunc("DELETE /api/models/{name}", s.deleteModel)
	mux.Handle("GET /metrics", s.metrics.handler())

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="neurstore"`)
			writeError(w, errorf(http.StatusUnauthorized, "missing or bad bearer token"))
			return
		}
		if r.ContentLength > s.cfg.MaxBody {
			writeError(w, errorf(http.StatusRequestEntityTooLarge, "request body of %d bytes is over the limit of %d bytes", r.ContentLength, s.cfg.MaxBody))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBody)
		mux.ServeHTTP(&jsonErrors{ResponseWriter: w}, r)
	})
}

// authorized checks the bearer token (not needed for the health probes).
func (s *Server) authorized(r *http.Request) bool {
	if s.cfg.Token == "" || strings.HasPrefix(r.URL.Path, "/v2/health/") {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.Token)) == 1
}

// jsonErrors turns the mux's own plain-text errors (404 no such path, 405 wrong
// method) into JSON ones. Handlers write their errors with writeError, which
// marks them done.
type jsonErrors struct {
	http.ResponseWriter
	swallow bool // the mux's text body is replaced
	written bool
}

func (j *jsonErrors) WriteHeader(code int) {
	if !j.written && code >= 400 && j.Header().Get("Content-Type") != "application/json" {
		j.written, j.swallow = true, true
		writeError(j.ResponseWriter, errorf(code, "%s", strings.ToLower(http.StatusText(code))))
		return
	}
	j.written = true
	j.ResponseWriter.WriteHeader(code)
}

func (j *jsonErrors) Write(b []byte) (int, error) {
	if j.swallow {
		return len(b), nil
	}
	j.written = true
	return j.ResponseWriter.Write(b)
}

func (j *jsonErrors) Unwrap() http.ResponseWriter { return j.ResponseWriter }

// writeJSON answers v as JSON with status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"cannot encode the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// writeError answers {"error": "..."} with err's status.
func writeError(w http.ResponseWriter, err error) int {
	code := statusOf(err)
	msg := err.Error()
	if code == http.StatusGatewayTimeout && errors.Is(err, context.DeadlineExceeded) {
		msg = "the request timed out"
	}
	writeJSON(w, code, map[string]string{"error": msg})
	return code
}

// readBody reads a request body within the size limit.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, errorf(http.StatusRequestEntityTooLarge, "request body is over the limit of %d bytes", tooBig.Limit)
	case err != nil:
		return nil, errorf(http.StatusBadRequest, "reading the request body: %v", err)
	}
	return b, nil
}

// decodeJSON reads the body into v.
func decodeJSON(r *http.Request, v any, strict bool) error {
	b, err := readBody(r)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, "bad JSON: %v", err)
	}
	if dec.More() {
		return errorf(http.StatusBadRequest, "bad JSON: data after the object")
	}
	return nil
}

// refOf returns the model ref a /v2/models path names: the name, and the tag from
// /versions/{version} ("latest" without it).
func refOf(r *http.Request) (ref, name, tag string, err error) {
	ref = r.PathValue("name")
	if v := r.PathValue("version"); v != "" {
		if strings.Contains(ref, ":") {
			return "", "", "", errorf(http.StatusBadRequest, "model name %q has a tag and the path a version", ref)
		}
		ref += ":" + v
	}
	name, tag, err = store.ParseRef(ref)
	if err != nil {
		return "", "", "", &statusError{code: http.StatusBadRequest, err: err}
	}
	return name + ":" + tag, name, tag, nil
}

// --- health and metadata

func (s *Server) serverMetadata(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, serverMetadata{Name: "neurstore", Version: s.cfg.Version, Extensions: []string{}})
}

func (s *Server) live(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]bool{"live": true})
}

// readyz is true once the preloads are done, false again while shutting down.
// The protocol answers false with a 4xx status.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		writeJSON(w, http.StatusBadRequest, map[string]bool{"ready": false})
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ready": true})
}

func (s *Server) modelMetadata(w http.ResponseWriter, r *http.Request) {
	ref, name, _, err := refOf(r)
	if err != nil {
		writeError(w, err)
		return
	}
	m, err := s.mgr.manifest(ref)
	if err != nil {
		writeError(w, err)
		return
	}
	var ins, outs []graph.ValueInfo
	if md := s.mgr.loadedModel(ref); md != nil {
		ins, outs = md.Inputs(), md.Outputs()
	} else if ins, outs, err = s.be.Signature(ref); err != nil {
		writeError(w, err)
		return
	}
	all, err := s.be.Models()
	if err != nil {
		writeError(w, err)
		return
	}
	var versions []string
	for _, o := range all {
		if o.Name == name {
			versions = append(versions, o.Tag)
		}
	}
	writeJSON(w, http.StatusOK, modelMetadata{
		Name: name, Versions: versions, Platform: "neurstore_" + m.Format,
		Inputs: tensorsMetadata(ins), Outputs: tensorsMetadata(outs),
	})
}

// modelReady is true while the model is loaded; a stored model not loaded (it
// loads on its first request) answers false with 400, an unknown one 404.
func (s *Server) modelReady(w http.ResponseWriter, r *http.Request) {
	ref, name, _, err := refOf(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if _, err := s.mgr.manifest(ref); err != nil {
		writeError(w, err)
		return
	}
	if !s.mgr.isLoaded(ref) {
		writeJSON(w, http.StatusBadRequest, modelReady{Name: name, Ready: false})
		return
	}
	writeJSON(w, http.StatusOK, modelReady{Name: name, Ready: true})
}

// --- inference

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *Server) infer(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	label := unknownModel
	defer func() {
		code := fmt.Sprint(rec.code)
		s.metrics.requests.WithLabelValues(label, code).Inc()
		if rec.code >= 400 {
			s.metrics.errors.WithLabelValues(label, code).Inc()
		}
		s.metrics.latency.WithLabelValues(label).Observe(time.Since(start).Seconds())
	}()
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	// the body must arrive within the timeout too (the deadline is lifted once it
	// is read, so that it cannot cut the connection under the answer)
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(start.Add(s.cfg.Timeout))

	ref, name, tag, err := refOf(r)
	if err != nil {
		writeError(rec, err)
		return
	}
	if _, err := s.mgr.manifest(ref); err != nil {
		writeError(rec, err)
		return
	}
	label = ref
	if r.Header.Get("Inference-Header-Content-Length") != "" {
		writeError(rec, errorf(http.StatusBadRequest, "the binary tensor data extension is not supported: send JSON"))
		return
	}
	var req inferRequest
	err = decodeJSON(r, &req, false)
	rc.SetReadDeadline(time.Time{})
	if err != nil {
		writeError(rec, err)
		return
	}
	e, err := s.mgr.acquire(ctx, ref)
	if err != nil {
		writeError(rec, err)
		return
	}
	defer s.mgr.release(e)
	inputs, err := checkInputs(e.m, req.Inputs)
	if err != nil {
		writeError(rec, err)
		return
	}
	outNames, err := checkOutputs(e.m, req.Outputs)
	if err != nil {
		writeError(rec, err)
		return
	}
	j := &job{ctx: ctx, inputs: inputs, m: e.mem, done: make(chan result, 1)}
	j.rows, j.key = e.b.batchKey(inputs)
	if err := e.b.submit(j); err != nil {
		writeError(rec, err)
		return
	}
	var res result
	select {
	case res = <-j.done:
	case <-ctx.Done():
		res.err = ctx.Err()
	}
	if res.err != nil {
		if ctx.Err() != nil {
			res.err = ctx.Err() // 504 rather than the run's "context canceled"
		} else if statusOf(res.err) == http.StatusInternalServerError {
			res.err = fmt.Errorf("model %s: %w", ref, res.err)
		}
		writeError(rec, res.err)
		return
	}
	resp := inferResponse{ModelName: name, ModelVersion: tag, ID: req.ID, Outputs: []responseOutput{}}
	for _, o := range outNames {
		t := res.outputs[o]
		if t == nil {
			writeError(rec, fmt.Errorf("model %s computed no output %q", ref, o))
			return
		}
		resp.Outputs = append(resp.Outputs, responseOutput{Name: o, Shape: t.Shape, Datatype: datatypeName(t.DType), Data: encodeData(t)})
	}
	writeJSON(rec, http.StatusOK, resp)
}

// checkInputs checks a request's inputs against the model's and decodes them.
func checkInputs(md model, ins []requestInput) (map[string]*runtime.Tensor, error) {
	want := md.Inputs()
	if len(ins) == 0 {
		return nil, errorf(http.StatusBadRequest, "the request has no inputs (the model takes %s)", inputNames(want))
	}
	out := make(map[string]*runtime.Tensor, len(ins))
	for i := range ins {
		in := &ins[i]
		k := -1
		for j := range want {
			if want[j].Name == in.Name {
				k = j
			}
		}
		if k < 0 {
			return nil, errorf(http.StatusBadRequest, "the model has no input %q (inputs: %s)", in.Name, inputNames(want))
		}
		if _, dup := out[in.Name]; dup {
			return nil, errorf(http.StatusBadRequest, "input %q given twice", in.Name)
		}
		w := want[k]
		dt, err := parseDatatype(in.Datatype)
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "input %q: %v", in.Name, err)
		}
		if w.DType.Valid() && dt != w.DType {
			return nil, errorf(http.StatusBadRequest, "input %q: datatype %s, the model takes %s", in.Name, in.Datatype, datatypeName(w.DType))
		}
		if w.Shape != nil {
			ok := len(in.Shape) == len(w.Shape)
			for d := 0; ok && d < len(w.Shape); d++ {
				ok = w.Shape[d].Value < 0 || w.Shape[d].Value == in.Shape[d]
			}
			if !ok {
				return nil, errorf(http.StatusBadRequest, "input %q: shape %v, the model takes %v (-1: any size)", in.Name, in.Shape, metadataShape(w.Shape))
			}
		}
		t, err := decodeTensor(in, dt)
		if err != nil {
			return nil, err
		}
		out[in.Name] = t
	}
	if len(out) != len(want) {
		var missing []string
		for _, w := range want {
			if out[w.Name] == nil {
				missing = append(missing, w.Name)
			}
		}
		return nil, errorf(http.StatusBadRequest, "missing inputs: %s", strings.Join(missing, ", "))
	}
	return out, nil
}

// checkOutputs returns the names of the outputs to answer: those requested, in
// their order, else all the model's.
func checkOutputs(md model, req []requestOutput) ([]string, error) {
	have := md.Outputs()
	if len(req) == 0 {
		names := make([]string, len(have))
		for i, o := range have {
			names[i] = o.Name
		}
		return names, nil
	}
	var names []string
	seen := map[string]bool{}
	for _, o := range req {
		found := false
		for _, h := range have {
			found = found || h.Name == o.Name
		}
		if !found {
			return nil, errorf(http.StatusBadRequest, "the model has no output %q (outputs: %s)", o.Name, inputNames(have))
		}
		if !seen[o.Name] {
			seen[o.Name] = true
			names = append(names, o.Name)
		}
	}
	return names, nil
}

func inputNames(vs []graph.ValueInfo) string {
	names := make([]string, len(vs))
	for i, v := range vs {
		names[i] = v.Name
	}
	return strings.Join(names, ", ")
}
