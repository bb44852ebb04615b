package kernels

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// threads is the goroutine count SetThreads asked for; 0 means GOMAXPROCS.
var threads atomic.Int64

// setThreads is SetThreads: n <= 0 means GOMAXPROCS.
func setThreads(n int) { threads.Store(int64(max(n, 0))) }

// Threads is the number of goroutines the kernels split large work over: the count
// given to SetThreads, or GOMAXPROCS when none (or n <= 0) was given.
func Threads() int {
	if n := threads.Load(); n > 0 {
		return int(n)
	}
	return runtime.GOMAXPROCS(0)
}

// helpersBusy counts the helper goroutines that parallelFor calls are running, over
// the whole process. A call only starts helpers while fewer than Threads()-1 run, so
// nested calls (a kernel whose chunks call another parallel kernel) and concurrent
// callers share Threads() goroutines instead of multiplying them: a call that gets
// no helper does its chunks itself.
var helpersBusy atomic.Int64

// parallelFor calls fn on contiguous, disjoint ranges [lo, hi) that together cover
// [0, n), each at least grain long (except when n < grain), over at most Threads()
// goroutines, the caller's included. It returns when every call has returned. When
// one chunk suffices (n < 2*grain, one thread, or every helper busy) it calls
// fn(0, n) on the caller's goroutine. A panic in fn is re-raised in the caller,
// with the same value, after all goroutines have finished; chunks not yet started
// are then skipped.
func parallelFor(n, grain int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	chunks := parallelChunks(n, grain)
	if chunks <= 1 {
		fn(0, n)
		return
	}
	h := reserveHelpers(chunks-1, Threads()-1)
	if h == 0 {
		fn(0, n)
		return
	}
	r := runPool.Get().(*parallelRun)
	r.fn, r.n, r.chunks = fn, n, chunks
	r.wg.Add(h)
	for range h {
		go r.help()
	}
	r.work()
	r.wg.Wait()
	helpersBusy.Add(-int64(h))
	failed, p := r.failed, r.panicValue
	*r = parallelRun{}
	runPool.Put(r)
	if failed {
		panic(p)
	}
}

// parallelChunks is how many chunks parallelFor splits n items into: as many as
// there are threads, but none shorter than grain.
func parallelChunks(n, grain int) int {
	return max(1, min(Threads(), n/max(grain, 1)))
}

// reserveHelpers takes up to want helper slots out of limit for the process and
// returns how many it took (possibly 0).
func reserveHelpers(want, limit int) int {
	for {
		busy := helpersBusy.Load()
		take := min(int64(want), int64(limit)-busy)
		if take <= 0 {
			return 0
		}
		if helpersBusy.CompareAndSwap(busy, busy+take) {
			return int(take)
		}
	}
}

// parallelRun is the state of one parallelFor call shared by its goroutines: they
// claim chunks in order from next until none is left or one has panicked.
type parallelRun struct {
	fn        func(lo, hi int)
	n, chunks int
	next      atomic.Int64
	stop      atomic.Bool
	wg        sync.WaitGroup

	mu         sync.Mutex
	failed     bool
	panicValue any
}

// runPool recycles parallelRun values; one is reused only after every goroutine of
// its call has finished.
var runPool = sync.Pool{New: func() any { return new(parallelRun) }}

// help is a helper goroutine's body.
func (r *parallelRun) help() {
	defer r.wg.Done()
	r.work()
}

// work runs chunks until none is left, recording a panic instead of letting it
// unwind the goroutine.
func (r *parallelRun) work() {
	defer func() {
		if p := recover(); p != nil {
			r.stop.Store(true)
			r.mu.Lock()
			if !r.failed {
				r.failed, r.panicValue = true, p
			}
			r.mu.Unlock()
		}
	}()
	for !r.stop.Load() {
		i := int(r.next.Add(1) - 1)
		if i >= r.chunks {
			return
		}
		r.fn(i*r.n/r.chunks, (i+1)*r.n/r.chunks)
	}
}
