package store

// Reader reads keys from a backend or a snapshot of it.
type Reader interface {
	// Get returns a copy of the value of key, or ErrNotFound.
	Get(key []byte) ([]byte, error)
	// Scan calls fn for each key in [lower, upper) in order. key and value are valid
	// only during the call. An error from fn stops the scan and is returned.
	Scan(lower, upper []byte, fn func(key, value []byte) error) error
}

// Snapshot is a consistent read-only view of a backend.
type Snapshot interface {
	Reader
	Close() error
}

// Backend is an ordered key-value store. Pebble (embedded) implements it; a
// PostgreSQL backend will too. Every method is safe for concurrent use.
type Backend interface {
	Reader
	// Snapshot returns a consistent view that later writes do not change.
	Snapshot() (Snapshot, error)
	// NewLoader returns a Loader for bulk writes of keys no other write touches.
	NewLoader() (Loader, error)
	// Apply writes b atomically. With sync, the write is durable when Apply returns,
	// and so is every write applied before it.
	Apply(b *Batch, sync bool) error
	// DiskBytes returns the disk space the backend takes (allocated blocks, as du
	// counts them), everything included.
	DiskBytes() (int64, error)
	// FreeBytes returns the free space left on the backend's disk.
	FreeBytes() (int64, error)
	// Compact rewrites the data so that deleted keys stop taking space.
	Compact() error
	Close() error
}

// Loader writes key-value pairs in strictly ascending key order, in bulk, without
// going through the backend's log: the pairs are written once, and become visible,
// durably and all together, when Finish returns. Abort drops them.
type Loader interface {
	Set(key, value []byte) error
	// Bytes returns the size of the keys and values set so far.
	Bytes() int64
	Finish() error
	Abort()
}

type opKind uint8

const (
	opSet opKind = iota
	opDelete
	opDeleteRange
)

type batchOp struct {
	kind  opKind
	key   []byte
	value []byte // opSet: the value; opDeleteRange: the end key
}

// Batch collects writes for Backend.Apply. It keeps references to the slices it is
// given: do not modify them until Apply returns.
type Batch struct {
	ops   []batchOp
	bytes int
}

// Set sets key to value.
func (b *Batch) Set(key, value []byte) {
	b.ops = append(b.ops, batchOp{opSet, key, value})
	b.bytes += len(key) + len(value)
}

// Delete deletes key.
func (b *Batch) Delete(key []byte) {
	b.ops = append(b.ops, batchOp{opDelete, key, nil})
	b.bytes += len(key)
}

// DeleteRange deletes every key in [start, end).
func (b *Batch) DeleteRange(start, end []byte) {
	b.ops = append(b.ops, batchOp{opDeleteRange, start, end})
	b.bytes += len(start) + len(end)
}

// Len returns the number of writes in b.
func (b *Batch) Len() int { return len(b.ops) }

// Bytes returns the size of the keys and values in b.
func (b *Batch) Bytes() int { return b.bytes }

// Reset empties b for reuse.
func (b *Batch) Reset() {
	clear(b.ops)
	b.ops = b.ops[:0]
	b.bytes = 0
}
