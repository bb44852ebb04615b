package runtime

import (
	"fmt"
	"sync"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/neurstore/neurstore/quant"
)

// BaseCache holds base tensors in the form the kernels compute on, keyed by base id
// and grid, costed in bytes. Every model whose deltas point at a base shares the one
// cached copy; a model fetches its bases from the cache on each run, so the byte
// budget is what base tensors really hold while no run is using them.
type BaseCache struct {
	c *ristretto.Cache[string, *baseEntry]

	mu      sync.Mutex
	loading map[string]*baseLoad // in-flight loads, so concurrent misses load once
}

// baseEntry is one cached base: grid codes as int16 when they fit, else float32
// values (codes times the grid step); in int8 mode int8 codes of the base alone.
type baseEntry struct {
	i16   []int16
	f32   []float32
	i8    []int8             // int8 mode: codes with one per-tensor scale
	scale float64            // of i8
	zero  *quant.GroupPacked // int8 mode: the all-zero delta that carries scale to the kernels
	// exceptions is how many elements the codes do not hold (NaN, Inf, ...: their
	// code is 0); a delta overrides them, a base used alone must not have any.
	exceptions int

	zeroOnce sync.Once // i16: zero made on first use (cross-model runs' base products)
}

// zeroFor returns an all-zero delta of n elements carrying scale, with which the
// kernels compute the integer base alone (made once per entry; N/8 bytes).
func (e *baseEntry) zeroFor(n int, scale float32) *quant.GroupPacked {
	e.zeroOnce.Do(func() {
		if e.zero == nil {
			e.zero = zeroDelta(n, float64(scale))
		}
	})
	return e.zero
}

func (e *baseEntry) bytes() int64 {
	return int64(len(e.i16))*2 + int64(len(e.f32))*4 + int64(len(e.i8))*9/8
}

type baseLoad struct {
	done chan struct{}
	e    *baseEntry
	err  error
}

// DefaultCacheBytes is the base cache budget when none is given.
const DefaultCacheBytes = 1 << 30

// NewBaseCache returns a cache that holds up to maxBytes of base tensors.
func NewBaseCache(maxBytes int64) (*BaseCache, error) {
	if maxBytes <= 0 {
		return nil, fmt.Errorf("runtime: cache budget must be > 0 bytes, got %d", maxBytes)
	}
	c, err := ristretto.NewCache(&ristretto.Config[string, *baseEntry]{
		// ten counters per item expected; bases are rarely smaller than 4 KiB
		NumCounters: max(1000, 10*maxBytes/(4<<10)),
		MaxCost:     maxBytes,
		BufferItems: 64,
		Metrics:     true,
		// costs are the bases' bytes; the cache's own bookkeeping is not counted
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("runtime: base cache: %w", err)
	}
	return &BaseCache{c: c, loading: map[string]*baseLoad{}}, nil
}

// get returns the base under key, calling load on a miss (once, however many
// callers miss together).
func (bc *BaseCache) get(key string, load func() (*baseEntry, error)) (*baseEntry, error) {
	if e, ok := bc.c.Get(key); ok {
		return e, nil
	}
	bc.mu.Lock()
	if l, ok := bc.loading[key]; ok {
		bc.mu.Unlock()
		<-l.done
		return l.e, l.err
	}
	l := &baseLoad{done: make(chan struct{})}
	bc.loading[key] = l
	bc.mu.Unlock()

	l.e, l.err = load()
	if l.err == nil {
		bc.c.Set(key, l.e, l.e.bytes())
		bc.c.Wait()
	}
	bc.mu.Lock()
	delete(bc.loading, key)
	bc.mu.Unlock()
	close(l.done)
	return l.e, l.err
}

// CacheStats are the base cache's counters.
type CacheStats struct {
	Hits, Misses uint64
	Bytes        int64 // cost of the bases held now
	MaxBytes     int64
}

// Stats returns the cache's counters.
func (bc *BaseCache) Stats() CacheStats {
	m := bc.c.Metrics
	return CacheStats{
		Hits:     m.Hits(),
		Misses:   m.Misses(),
		Bytes:    int64(m.CostAdded() - m.CostEvicted()),
		MaxBytes: bc.c.MaxCost(),
	}
}

// Close releases the cache.
func (bc *BaseCache) Close() { bc.c.Close() }

// zeroDelta is an all-zero 1-bit delta of n elements in one group: with an int8
// base it makes the kernels compute base code * scale.
func zeroDelta(n int, scale float64) *quant.GroupPacked {
	return &quant.GroupPacked{Bits: 1, Group: max(n, 1), N: n, Data: make([]byte, quant.PackedLen(n, 1)),
		Zero: make([]int32, min(n, 1)), Scale: float32(scale), Scale64: scale}
}
