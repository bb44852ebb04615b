package kernels

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// withThreads runs f with SetThreads(n), restoring the setting after.
func withThreads(n int, f func()) {
	saved := int(threads.Load())
	SetThreads(n)
	defer SetThreads(saved)
	f()
}

func TestThreads(t *testing.T) {
	withThreads(3, func() {
		if got := Threads(); got != 3 {
			t.Errorf("Threads() = %d after SetThreads(3)", got)
		}
	})
	for _, n := range []int{0, -2} {
		withThreads(n, func() {
			if got, want := Threads(), runtime.GOMAXPROCS(0); got != want {
				t.Errorf("Threads() = %d after SetThreads(%d), want GOMAXPROCS = %d", got, n, want)
			}
		})
	}
}

func TestParallelForCovers(t *testing.T) {
	for _, th := range []int{1, 2, 3, 8} {
		for _, n := range []int{0, 1, 2, 7, 100, 1001} {
			for _, grain := range []int{0, 1, 3, 64, 1000} {
				withThreads(th, func() {
					hits := make([]atomic.Int32, n)
					var mu sync.Mutex
					var chunks [][2]int
					parallelFor(n, grain, func(lo, hi int) {
						mu.Lock()
						chunks = append(chunks, [2]int{lo, hi})
						mu.Unlock()
						for i := lo; i < hi; i++ {
							hits[i].Add(1)
						}
					})
					for i := range hits {
						if h := hits[i].Load(); h != 1 {
							t.Fatalf("threads %d n %d grain %d: index %d run %d times", th, n, grain, i, h)
						}
					}
					if len(chunks) > th {
						t.Errorf("threads %d n %d grain %d: %d chunks", th, n, grain, len(chunks))
					}
					for _, c := range chunks {
						if c[1]-c[0] < min(grain, n) {
							t.Errorf("threads %d n %d grain %d: chunk %v shorter than the grain", th, n, grain, c)
						}
					}
				})
			}
		}
	}
	if got := helpersBusy.Load(); got != 0 {
		t.Errorf("%d helpers still counted busy", got)
	}
}

// waitGoroutines waits for the goroutine count to come back to at most want.
func waitGoroutines(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > want {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, want at most %d: helpers leaked", runtime.NumGoroutine(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestParallelForPanic(t *testing.T) {
	withThreads(4, func() {
		base := runtime.NumGoroutine()
		for _, bad := range []int{0, 50, 99} { // the caller's chunk and helpers' ones
			func() {
				defer func() {
					p := recover()
					if p != fmt.Sprint("boom ", bad) {
						t.Errorf("recovered %v, want boom %d", p, bad)
					}
				}()
				parallelFor(100, 1, func(lo, hi int) {
					if lo <= bad && bad < hi {
						panic(fmt.Sprint("boom ", bad))
					}
					time.Sleep(time.Millisecond)
				})
				t.Errorf("parallelFor returned after a panic")
			}()
			if got := helpersBusy.Load(); got != 0 {
				t.Errorf("%d helpers still counted busy after a panic", got)
			}
		}
		// Inline too.
		func() {
			defer func() {
				if p := recover(); p != "inline" {
					t.Errorf("recovered %v, want inline", p)
				}
			}()
			parallelFor(1, 1, func(lo, hi int) { panic("inline") })
		}()
		waitGoroutines(t, base)
	})
}

func TestParallelForNested(t *testing.T) {
	withThreads(3, func() {
		base := runtime.NumGoroutine()
		var total atomic.Int64
		var worst atomic.Int64
		parallelFor(30, 1, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				parallelFor(100, 1, func(lo, hi int) {
					if b := helpersBusy.Load(); b > worst.Load() {
						worst.Store(b)
					}
					total.Add(int64(hi - lo))
				})
			}
		})
		if total.Load() != 3000 {
			t.Errorf("nested: %d items run, want 3000", total.Load())
		}
		if worst.Load() > 2 {
			t.Errorf("nested: %d helpers at once, want at most Threads()-1 = 2", worst.Load())
		}
		waitGoroutines(t, base)
	})
}

func TestParallelForConcurrent(t *testing.T) {
	withThreads(4, func() {
		var wg sync.WaitGroup
		var total atomic.Int64
		for range 8 {
			wg.Go(func() {
				for range 50 {
					parallelFor(64, 4, func(lo, hi int) { total.Add(int64(hi - lo)) })
				}
			})
		}
		wg.Wait()
		if total.Load() != 8*50*64 {
			t.Errorf("%d items run, want %d", total.Load(), 8*50*64)
		}
	})
}

func noop(lo, hi int) {}

func TestParallelForAllocs(t *testing.T) {
	withThreads(4, func() {
		if a := testing.AllocsPerRun(50, func() { parallelFor(10, 100, noop) }); a != 0 {
			t.Errorf("inline parallelFor: %v allocations, want 0", a)
		}
		a := testing.AllocsPerRun(50, func() { parallelFor(1000, 1, noop) })
		t.Logf("parallelFor over 4 goroutines: %v allocations per call", a)
	})
}
