package serve

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/runtime"
)

// job is one inference request waiting for a run.
type job struct {
	ctx    context.Context
	inputs map[string]*runtime.Tensor
	// rows is the request's batch size (the inputs' first dimension) when it may
	// share a run with others of the same key, 0 when it runs alone.
	rows int
	key  string
	// m is the loaded model the request is for
	m    *member
	done chan result // buffered: the worker never blocks on it
}

type result struct {
	outputs map[string]*runtime.Tensor
	err     error
}

// batcher queues one loaded model's requests, groups them into runs and hands
// the runs to a fixed pool of workers, each with its own runner (session).
type batcher struct {
	ref       string
	model     model
	batchable bool // every input has a symbolic first dimension
	maxBatch  int
	maxDelay  time.Duration
	metrics   *metrics

	queue chan *job   // bounded: submit fails when it is full
	work  chan []*job // dispatcher -> workers
	done  chan struct{}
	once  sync.Once

	// family is the JoinKey of the models the batcher serves (see member), ""
	// for a batcher of one model; users counts the loaded members (guarded by
	// the manager's lock)
	family string
	users  int
}

// member is one loaded model served by a batcher. A batcher serves one model,
// or every loaded fine-tune of one base (models with one runtime JoinKey), whose
// requests it joins into cross-model runs.
type member struct {
	ref     string
	model   model
	retired atomic.Bool // unloaded: workers drop its runner
}

// newBatcher starts a batcher for model md (and, when family is a JoinKey, the
// other models of that family: they have its inputs).
func newBatcher(ref string, md model, cfg *Config, m *metrics, family string) *batcher {
	b := &batcher{
		ref: ref, model: md, batchable: batchable(md.Inputs()),
		maxBatch: cfg.MaxBatch, maxDelay: cfg.MaxDelay, metrics: m,
		queue:  make(chan *job, cfg.Queue),
		work:   make(chan []*job),
		done:   make(chan struct{}),
		family: family,
	}
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &worker{runners: map[*member]runner{}}
			for batch := range b.work {
				b.run(w, batch)
				w.prune()
			}
		}()
	}
	go b.dispatch()
	go func() {
		wg.Wait()
		close(b.done)
	}()
	return b
}

// batchable reports whether requests may be concatenated along the first
// dimension: every input's first dimension is symbolic.
func batchable(inputs []graph.ValueInfo) bool {
	if len(inputs) == 0 {
		return false
	}
	for _, in := range inputs {
		if len(in.Shape) == 0 || in.Shape[0].Value >= 0 {
			return false
		}
	}
	return true
}

// batchKey returns the rows and key of a request (see job): requests share a run
// when their keys match, that is when every input has the same type and the
// same dimensions after the first.
func (b *batcher) batchKey(inputs map[string]*runtime.Tensor) (rows int, key string) {
	if !b.batchable {
		return 0, ""
	}
	var k strings.Builder
	for i, in := range b.model.Inputs() {
		t := inputs[in.Name]
		if len(t.Shape) == 0 || t.Shape[0] < 1 || i > 0 && t.Shape[0] != rows {
			return 0, ""
		}
		rows = t.Shape[0]
		k.WriteString(in.Name)
		k.WriteByte(' ')
		k.WriteString(t.DType.String())
		for _, d := range t.Shape[1:] {
			k.WriteByte(' ')
			k.WriteString(strconv.Itoa(d))
		}
		k.WriteByte(';')
	}
	return rows, k.String()
}

// submit queues j; it fails with errQueueFull when the queue is full.
func (b *batcher) submit(j *job) error {
	g := b.metrics.queueDepth.WithLabelValues(j.m.ref)
	g.Inc()
	select {
	case b.queue <- j:
		return nil
	default:
		g.Dec()
		return errQueueFull
	}
}

// close stops the batcher once it has run the queued jobs. Nobody may submit
// after close.
func (b *batcher) close() { b.once.Do(func() { close(b.queue) }) }

// take receives the next queued job.
func (b *batcher) take() (*job, bool) {
	j, ok := <-b.queue
	if ok {
		b.metrics.queueDepth.WithLabelValues(j.m.ref).Dec()
	}
	return j, ok
}

// dispatch groups queued jobs into runs. A batchable job waits up to maxDelay for
// others with its key, and keeps gathering while every worker is busy, up to
// maxBatch rows; a job that does not fit starts the next run.
func (b *batcher) dispatch() {
	defer close(b.work)
	var next *job
	for {
		first := next
		next = nil
		if first == nil {
			var ok bool
			if first, ok = b.take(); !ok {
				return
			}
		}
		batch := []*job{first}
		if first.rows == 0 || first.rows >= b.maxBatch {
			b.work <- batch
			continue
		}
		rows := first.rows
		queue := b.queue
		send := b.work // nil while waiting for maxDelay
		var timer *time.Timer
		var expired <-chan time.Time
		if b.maxDelay > 0 {
			timer = time.NewTimer(b.maxDelay)
			send, expired = nil, timer.C
		}
	gather:
		for rows < b.maxBatch && queue != nil && next == nil {
			select {
			case send <- batch:
				batch = nil
				break gather
			case <-expired:
				send, expired = b.work, nil
			case j, ok := <-queue:
				if !ok {
					queue = nil // closed: run what we have
					break
				}
				b.metrics.queueDepth.WithLabelValues(j.m.ref).Dec()
				if j.key == first.key && j.rows > 0 && rows+j.rows <= b.maxBatch {
					batch = append(batch, j)
					rows += j.rows
				} else {
					next = j
				}
			}
		}
		if timer != nil {
			timer.Stop()
		}
		if batch != nil {
			b.work <- batch
		}
	}
}

// worker is one worker goroutine's state: a runner per model it has run.
type worker struct {
	runners map[*member]runner
}

func (w *worker) runner(m *member) runner {
	r := w.runners[m]
	if r == nil {
		r = m.model.NewRunner()
		w.runners[m] = r
	}
	return r
}

// prune drops the runners (and their sessions' memory) of unloaded models.
func (w *worker) prune() {
	for m := range w.runners {
		if m.retired.Load() {
			delete(w.runners, m)
		}
	}
}

// run runs one batch of jobs and answers each: the jobs of one model as one run,
// those of several models of a family as one cross-model run.
func (b *batcher) run(w *worker, batch []*job) {
	first := batch[0].m
	for _, j := range batch[1:] {
		if j.m != first {
			b.runCross(w, batch)
			return
		}
	}
	b.runOwn(w.runner(first), batch)
}

// runCross runs a batch whose jobs are for several models of the batcher's
// family as one cross-model run (runtime.Session.RunParts: the base product once,
// each model's delta on its rows). If the models cannot share it, each model's
// jobs run on their own.
func (b *batcher) runCross(w *worker, batch []*job) {
	// group by model, keeping the order of first arrival
	first := map[*member]int{}
	for i, j := range batch {
		if _, ok := first[j.m]; !ok {
			first[j.m] = i
		}
	}
	slices.SortStableFunc(batch, func(x, y *job) int { return first[x.m] - first[y.m] })
	live := batch[:0:0]
	for _, j := range batch {
		if err := j.ctx.Err(); err != nil {
			j.done <- result{err: err}
			continue
		}
		live = append(live, j)
	}
	if len(live) == 0 {
		return
	}
	pr, ok := w.runner(live[0].m).(partsRunner)
	var parts []runtime.Part
	rows := 0
	for _, j := range live {
		rm, isRuntime := j.m.model.(runtimeModel)
		if ok = ok && isRuntime; !ok {
			break
		}
		if n := len(parts); n > 0 && parts[n-1].Model == rm.Model {
			parts[n-1].Rows += j.rows
		} else {
			parts = append(parts, runtime.Part{Model: rm.Model, Rows: j.rows})
		}
		rows += j.rows
	}
	if ok && len(parts) > 1 {
		ctx, stop := allDone(live)
		out, err := pr.RunParts(ctx, concat(b.model.Inputs(), live, rows), parts)
		stop()
		if err == nil {
			if split, ok := split(out, live, rows); ok {
				b.observe(live[0].m.ref, rows, len(live))
				b.metrics.crossRuns.Inc()
				for i, j := range live {
					j.done <- result{outputs: split[i]}
				}
				return
			}
		}
	}
	for i := 0; i < len(live); {
		k := i + 1
		for k < len(live) && live[k].m == live[i].m {
			k++
		}
		b.runOwn(w.runner(live[i].m), live[i:k])
		i = k
	}
}

// partsRunner is a runner that runs cross-model batches; *runtime.Session is one.
type partsRunner interface {
	RunParts(ctx context.Context, inputs map[string]*runtime.Tensor, parts []runtime.Part) (map[string]*runtime.Tensor, error)
}

// runOwn runs one batch of one model's jobs on r (that model's runner) and
// answers each.
func (b *batcher) runOwn(r runner, batch []*job) {
	live := batch[:0:0]
	for _, j := range batch {
		if err := j.ctx.Err(); err != nil {
			j.done <- result{err: err} // gave up while queued
			continue
		}
		live = append(live, j)
	}
	switch len(live) {
	case 0:
		return
	case 1:
		b.runAlone(r, live[0])
		return
	}
	rows := 0
	for _, j := range live {
		rows += j.rows
	}
	ctx, stop := allDone(live)
	b.observe(live[0].m.ref, rows, len(live))
	out, err := r.Run(ctx, concat(b.model.Inputs(), live, rows))
	stop()
	if err == nil {
		if parts, ok := split(out, live, rows); ok {
			for i, j := range live {
				j.done <- result{outputs: parts[i]}
			}
			return
		}
	}
	// The joint run failed, or its outputs are not per row: run each alone, so
	// that each request gets its own answer (and its own error).
	for _, j := range live {
		b.runAlone(r, j)
	}
}

func (b *batcher) runAlone(r runner, j *job) {
	b.observe(j.m.ref, max(j.rows, 1), 1)
	out, err := r.Run(j.ctx, j.inputs)
	j.done <- result{outputs: out, err: err}
}

func (b *batcher) observe(ref string, rows, requests int) {
	b.metrics.batchRows.WithLabelValues(ref).Observe(float64(rows))
	b.metrics.batchRequests.WithLabelValues(ref).Observe(float64(requests))
}

// allDone returns a context that is cancelled once every job's context is done,
// so that a joint run stops only when nobody waits for it any more.
func allDone(jobs []*job) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var left atomic.Int64
	left.Store(int64(len(jobs)))
	stops := make([]func() bool, len(jobs))
	for i, j := range jobs {
		stops[i] = context.AfterFunc(j.ctx, func() {
			if left.Add(-1) == 0 {
				cancel()
			}
		})
	}
	return ctx, func() {
		for _, s := range stops {
			s()
		}
		cancel()
	}
}

// concat joins the jobs' inputs along the first dimension.
func concat(inputs []graph.ValueInfo, jobs []*job, rows int) map[string]*runtime.Tensor {
	out := make(map[string]*runtime.Tensor, len(inputs))
	for _, in := range inputs {
		t0 := jobs[0].inputs[in.Name]
		t := &runtime.Tensor{DType: t0.DType, Shape: append([]int{rows}, t0.Shape[1:]...)}
		n := t.Len()
		switch storageOf(t.DType) {
		case storeF32:
			t.F32 = make([]float32, 0, n)
			for _, j := range jobs {
				t.F32 = append(t.F32, j.inputs[in.Name].F32...)
			}
		case storeF64:
			t.F64 = make([]float64, 0, n)
			for _, j := range jobs {
				t.F64 = append(t.F64, j.inputs[in.Name].F64...)
			}
		default:
			t.I64 = make([]int64, 0, n)
			for _, j := range jobs {
				t.I64 = append(t.I64, j.inputs[in.Name].I64...)
			}
		}
		out[in.Name] = t
	}
	return out
}

// split cuts a joint run's outputs back into the jobs' rows. It fails when an
// output's first dimension is not the run's rows.
func split(out map[string]*runtime.Tensor, jobs []*job, rows int) ([]map[string]*runtime.Tensor, bool) {
	parts := make([]map[string]*runtime.Tensor, len(jobs))
	for i := range parts {
		parts[i] = make(map[string]*runtime.Tensor, len(out))
	}
	for name, t := range out {
		if len(t.Shape) == 0 || t.Shape[0] != rows {
			return nil, false
		}
		per := t.Len() / max(rows, 1)
		f32 := []float32(nil)
		if storageOf(t.DType) == storeF32 {
			f32 = t.Floats()
		}
		at := 0
		for i, j := range jobs {
			lo, hi := at*per, (at+j.rows)*per
			p := &runtime.Tensor{DType: t.DType, Shape: append([]int{j.rows}, t.Shape[1:]...)}
			switch storageOf(t.DType) {
			case storeF32:
				p.F32 = f32[lo:hi:hi]
			case storeF64:
				p.F64 = t.F64[lo:hi:hi]
			default:
				p.I64 = t.I64[lo:hi:hi]
			}
			parts[i][name] = p
			at += j.rows
		}
	}
	return parts, true
}
