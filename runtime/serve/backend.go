package serve

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/runtime"
	"github.com/neurstore/neurstore/store"
)

// backend is what the server needs from the store and the runtime. storeBackend
// implements it; the tests use a fake.
type backend interface {
	// Models lists the stored models; Model returns one (an error wrapping
	// store.ErrNotFound when there is none).
	Models() ([]*store.Manifest, error)
	Model(ref string) (*store.Manifest, error)
	// Signature returns the graph inputs and outputs of a stored model without
	// loading its weights (empty for a model stored without architecture).
	Signature(ref string) (inputs, outputs []graph.ValueInfo, err error)
	// Load loads a model for running.
	Load(ref string) (model, error)
	// Import imports the model file or folder at path (already checked).
	Import(ctx context.Context, path string, opts store.ImportOptions) (*store.ImportResult, error)
	// Remove deletes a stored model.
	Remove(ref string) error
	// CacheStats reports the shared base cache.
	CacheStats() runtime.CacheStats
}

// model is a loaded model; it is shared by the goroutines that run it.
type model interface {
	Inputs() []graph.ValueInfo
	Outputs() []graph.ValueInfo
	WeightBytes() int64
	// NewRunner returns a runner for one goroutine.
	NewRunner() runner
}

// runner runs a model; *runtime.Session is one. It is used by one goroutine.
type runner interface {
	Run(ctx context.Context, inputs map[string]*runtime.Tensor) (map[string]*runtime.Tensor, error)
}

// storeBackend is the backend over a store and the runtime.
type storeBackend struct {
	st   *store.Store
	opts runtime.Options // Cache is set: every model shares it
}

func (b *storeBackend) Models() ([]*store.Manifest, error)        { return b.st.Models() }
func (b *storeBackend) Model(ref string) (*store.Manifest, error) { return b.st.Model(ref) }
func (b *storeBackend) Remove(ref string) error                   { return b.st.Remove(ref) }
func (b *storeBackend) CacheStats() runtime.CacheStats            { return b.opts.Cache.Stats() }

func (b *storeBackend) Signature(ref string) ([]graph.ValueInfo, []graph.ValueInfo, error) {
	if _, err := b.st.Model(ref); err != nil {
		return nil, nil, err
	}
	arch, err := b.st.Graph(ref)
	if err != nil || len(arch) == 0 {
		return nil, nil, err
	}
	g, err := graph.ParseModel(arch)
	if err != nil {
		return nil, nil, fmt.Errorf("model %s: %w", ref, err)
	}
	return g.Inputs, g.Outputs, nil
}

func (b *storeBackend) Load(ref string) (model, error) {
	m, err := b.st.Model(ref)
	if err != nil {
		return nil, err
	}
	if m.GraphBytes == 0 {
		return nil, errorf(http.StatusBadRequest, "model %s has no architecture (imported from %s): import an ONNX file of it to serve it", ref, m.Format)
	}
	md, err := runtime.Load(b.st, ref, b.opts)
	if err != nil {
		return nil, err
	}
	return runtimeModel{md}, nil
}

func (b *storeBackend) Import(ctx context.Context, path string, opts store.ImportOptions) (*store.ImportResult, error) {
	src, err := graph.OpenFile(path)
	if err != nil {
		return nil, &statusError{code: http.StatusBadRequest, err: err}
	}
	defer src.Close()
	return b.st.Import(ctx, src, opts)
}

// runtimeModel adapts *runtime.Model to model.
type runtimeModel struct{ *runtime.Model }

func (m runtimeModel) NewRunner() runner { return m.NewSession() }

// statusError is an error with the HTTP status it answers.
type statusError struct {
	code int
	err  error
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

// errorf returns an error that answers with status code.
func errorf(code int, format string, args ...any) error {
	return &statusError{code: code, err: fmt.Errorf(format, args...)}
}

// Errors of the request path.
var (
	errQueueFull    = errorf(http.StatusTooManyRequests, "the model's request queue is full; retry later")
	errShuttingDown = errorf(http.StatusServiceUnavailable, "the server is shutting down")
)

// statusOf is the HTTP status an error answers.
func statusOf(err error) int {
	var se *statusError
	switch {
	case errors.As(err, &se):
		return se.code
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, store.ErrExists):
		return http.StatusConflict
	case errors.Is(err, store.ErrDiskFull):
		return http.StatusInsufficientStorage
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	case errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
