package serve

import (
	"context"
	"log/slog"
	"net/http"
	"sync"

	"github.com/neurstore/neurstore/runtime"
	"github.com/neurstore/neurstore/store"
)

// manager keeps the loaded models: it loads a model on first use, warms it up,
// keeps the loaded weights within the memory budget by unloading the least
// recently used idle models, and owns each loaded model's batcher.
type manager struct {
	be      backend
	cfg     *Config
	metrics *metrics
	log     *slog.Logger

	// loading lets one model load at a time, so that a burst of requests for
	// many models does not hold them all in memory at once before the budget
	// is checked
	loading chan struct{}

	mu       sync.Mutex
	models   map[string]*entry   // by "name:tag"
	removing map[string]bool     // refs being deleted: not loadable meanwhile
	families map[string]*batcher // shared batchers by runtime.Model.JoinKey: models that may share runs
	tick     int64               // LRU clock
	closed   bool
}

// entry is one model, loading or loaded.
type entry struct {
	ref    string
	loaded chan struct{} // closed when the load is over: m and b, or err, are set

	m     model
	err   error
	bytes int64
	b     *batcher // the model's, or its family's (shared)
	mem   *member
	idle  chan struct{} // closed once retired and no request holds it
	// stopsBatcher: e was the batcher's last user; b.done closes once it stopped
	stopsBatcher bool

	// guarded by manager.mu
	inflight int   // requests holding the entry
	lastUse  int64 // manager.tick at the last release
	retired  bool  // out of the map; its batcher closes once inflight is 0
}

func newManager(be backend, cfg *Config, m *metrics, log *slog.Logger) *manager {
	return &manager{be: be, cfg: cfg, metrics: m, log: log, loading: make(chan struct{}, 1),
		models: map[string]*entry{}, removing: map[string]bool{}, families: map[string]*batcher{}}
}

// canonical checks ref and returns it as "name:tag".
func canonical(ref string) (string, error) {
	name, tag, err := store.ParseRef(ref)
	if err != nil {
		return "", &statusError{code: http.StatusBadRequest, err: err}
	}
	return name + ":" + tag, nil
}

// manifest returns stored model ref (canonical); a model being deleted is not
// found.
func (mg *manager) manifest(ref string) (*store.Manifest, error) {
	mg.mu.Lock()
	removing := mg.removing[ref]
	mg.mu.Unlock()
	if removing {
		return nil, errorf(http.StatusNotFound, "model %s is being deleted", ref)
	}
	return mg.be.Model(ref)
}

// acquire returns model ref (canonical) loaded, loading it if needed; the caller
// must release it. It waits for a load in progress until ctx is done.
func (mg *manager) acquire(ctx context.Context, ref string) (*entry, error) {
	mg.mu.Lock()
	if mg.closed {
		mg.mu.Unlock()
		return nil, errShuttingDown
	}
	if mg.removing[ref] {
		mg.mu.Unlock()
		return nil, errorf(http.StatusNotFound, "model %s is being deleted", ref)
	}
	e := mg.models[ref]
	if e == nil {
		e = &entry{ref: ref, loaded: make(chan struct{}), idle: make(chan struct{})}
		mg.models[ref] = e
		go mg.load(e)
	}
	e.inflight++
	mg.mu.Unlock()

	select {
	case <-e.loaded:
	case <-ctx.Done():
		mg.release(e)
		return nil, ctx.Err()
	}
	if e.err != nil {
		mg.release(e)
		return nil, e.err
	}
	return e, nil
}

// release gives back an entry acquire returned.
func (mg *manager) release(e *entry) {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	e.inflight--
	mg.tick++
	e.lastUse = mg.tick
	if e.retired && e.inflight == 0 {
		mg.finishLocked(e)
	}
}

// finishLocked ends a retired entry that no request holds: its model leaves its
// batcher, which closes (after running what it holds) when it was the last.
func (mg *manager) finishLocked(e *entry) {
	select {
	case <-e.idle:
		return // done already
	default:
	}
	if e.b != nil {
		e.mem.retired.Store(true)
		mg.metrics.queueDepth.DeleteLabelValues(e.ref)
		e.b.users--
		if e.b.users == 0 {
			if mg.families[e.b.family] == e.b {
				delete(mg.families, e.b.family)
			}
			e.stopsBatcher = true
			e.b.close()
		}
	}
	close(e.idle)
}

// load loads e's model, warms it up and makes room for it in the budget.
func (mg *manager) load(e *entry) {
	mg.loading <- struct{}{}
	mg.log.Info("loading model", "model", e.ref)
	md, err := mg.be.Load(e.ref)
	if err == nil {
		mg.warmUp(e.ref, md)
	}
	<-mg.loading
	mg.mu.Lock()
	defer mg.mu.Unlock()
	if err == nil && mg.closed {
		err = errShuttingDown
	}
	if err == nil && e.retired {
		err = errorf(http.StatusServiceUnavailable, "model %s was deleted or replaced while it loaded; retry", e.ref)
	}
	if err == nil {
		err = mg.makeRoomLocked(e, md.WeightBytes())
	}
	if err != nil {
		mg.log.Warn("cannot load model", "model", e.ref, "err", err)
		e.err = err
		if mg.models[e.ref] == e {
			delete(mg.models, e.ref)
		}
		close(e.loaded)
		return
	}
	e.m, e.bytes = md, md.WeightBytes()
	// fine-tunes of one base share a batcher, which joins their requests
	key := ""
	if jk, ok := md.(interface{ JoinKey() string }); ok {
		key = jk.JoinKey()
	}
	if key != "" {
		e.b = mg.families[key]
	}
	if e.b == nil {
		e.b = newBatcher(e.ref, md, mg.cfg, mg.metrics, key)
		if key != "" {
			mg.families[key] = e.b
		}
	}
	e.b.users++
	e.mem = &member{ref: e.ref, model: md}
	mg.metrics.queueDepth.WithLabelValues(e.ref).Set(0)
	mg.metrics.loads.Inc()
	mg.log.Info("loaded model", "model", e.ref, "weight_bytes", e.bytes, "batching", e.b.batchable)
	close(e.loaded)
}

// warmUp runs md once on zeros, batch 1 (symbolic dims 1), so that the first
// request does not pay for first-run allocations. A failure is only logged: a
// model whose symbolic dims cannot be 1 may still serve real requests.
func (mg *manager) warmUp(ref string, md model) {
	inputs := map[string]*runtime.Tensor{}
	for _, in := range md.Inputs() {
		if in.Shape == nil || !in.DType.Valid() {
			return // rank or type unknown: nothing sensible to feed
		}
		t := &runtime.Tensor{DType: in.DType, Shape: make([]int, len(in.Shape))}
		for i, d := range in.Shape {
			t.Shape[i] = 1
			if d.Value >= 0 {
				t.Shape[i] = int(d.Value)
			}
		}
		switch n := t.Len(); storageOf(in.DType) {
		case storeF32:
			t.F32 = make([]float32, n)
		case storeF64:
			t.F64 = make([]float64, n)
		default:
			t.I64 = make([]int64, n)
		}
		inputs[in.Name] = t
	}
	ctx, cancel := context.WithTimeout(context.Background(), mg.cfg.Timeout)
	defer cancel()
	if _, err := md.NewRunner().Run(ctx, inputs); err != nil {
		mg.log.Warn("warm-up run failed", "model", ref, "err", err)
	}
}

// makeRoomLocked unloads least recently used idle models until need more bytes fit
// the budget next to the other loaded models.
func (mg *manager) makeRoomLocked(e *entry, need int64) error {
	budget := mg.cfg.MemoryBytes
	if need > budget {
		return errorf(http.StatusServiceUnavailable, "model %s holds %d bytes of weights, more than the memory budget of %d bytes (--memory-bytes)", e.ref, need, budget)
	}
	for {
		var used int64
		var victim *entry
		for _, o := range mg.models {
			if o == e || o.m == nil {
				continue
			}
			used += o.bytes
			if o.inflight == 0 && (victim == nil || o.lastUse < victim.lastUse) {
				victim = o
			}
		}
		if used+need <= budget {
			return nil
		}
		if victim == nil {
			return errorf(http.StatusServiceUnavailable, "memory budget full: the loaded models hold %d of %d bytes and all are in use; retry later", used, budget)
		}
		mg.log.Info("unloading least recently used model", "model", victim.ref, "weight_bytes", victim.bytes, "for", e.ref)
		mg.metrics.evictions.Inc()
		mg.retireLocked(victim)
	}
}

// retireLocked takes e out of the map: new requests load the model afresh; e's
// batcher closes (after running what it holds) once no request holds e.
func (mg *manager) retireLocked(e *entry) {
	if mg.models[e.ref] == e {
		delete(mg.models, e.ref)
	}
	e.retired = true
	if e.inflight == 0 {
		mg.finishLocked(e)
	}
}

// unload retires ref's loaded model, if any, and waits until its batcher has
// stopped or ctx is done. It returns whether a model was loaded.
func (mg *manager) unload(ctx context.Context, ref string) bool {
	mg.mu.Lock()
	e := mg.models[ref]
	if e == nil {
		mg.mu.Unlock()
		return false
	}
	mg.retireLocked(e)
	mg.mu.Unlock()
	select {
	case <-e.loaded:
	case <-ctx.Done():
		return true
	}
	select {
	case <-e.idle:
	case <-ctx.Done():
		return true
	}
	if e.stopsBatcher {
		select {
		case <-e.b.done:
		case <-ctx.Done():
		}
	}
	return true
}

// remove unloads ref and deletes it from the store; requests for it meanwhile
// answer 404.
func (mg *manager) remove(ctx context.Context, ref string) error {
	mg.mu.Lock()
	if mg.removing[ref] {
		mg.mu.Unlock()
		return errorf(http.StatusConflict, "model %s is already being deleted", ref)
	}
	mg.removing[ref] = true
	mg.mu.Unlock()
	defer func() {
		mg.mu.Lock()
		delete(mg.removing, ref)
		mg.mu.Unlock()
	}()
	if _, err := mg.be.Model(ref); err != nil {
		return err
	}
	if mg.unload(ctx, ref) {
		mg.log.Info("unloaded model for deletion", "model", ref)
	}
	return mg.be.Remove(ref)
}

// isLoaded reports whether ref is loaded.
func (mg *manager) isLoaded(ref string) bool {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	e := mg.models[ref]
	return e != nil && e.m != nil
}

// loadedModel returns ref's model if it is loaded.
func (mg *manager) loadedModel(ref string) model {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	if e := mg.models[ref]; e != nil {
		return e.m
	}
	return nil
}

// loadedStats counts the loaded models and their weight bytes.
func (mg *manager) loadedStats() (n int, bytes int64) {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	for _, e := range mg.models {
		if e.m != nil {
			n++
			bytes += e.bytes
		}
	}
	return n, bytes
}

// close stops every batcher after it has run what it holds, and waits for them
// until ctx is done. acquire fails from then on.
func (mg *manager) close(ctx context.Context) error {
	mg.mu.Lock()
	mg.closed = true
	var all []*entry
	for _, e := range mg.models {
		all = append(all, e)
		mg.retireLocked(e)
	}
	mg.mu.Unlock()
	for _, e := range all {
		select {
		case <-e.loaded:
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case <-e.idle:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !e.stopsBatcher {
			continue
		}
		select {
		case <-e.b.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
