package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/sys/unix"
)

// pebbleBackend is the embedded default Backend.
type pebbleBackend struct {
	db   *pebble.DB
	opts *pebble.Options
	dir  string
	// loads is the folder where Loaders build their tables before ingestion.
	loads string
	seq   atomic.Uint64 // names loader files
}

// loadsDir is the folder, inside the store, that holds tables being built.
const loadsDir = "loading"

// quietLogger drops Pebble's informational messages and keeps its errors.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any) {}
func (quietLogger) Errorf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "pebble: "+format+"\n", args...)
}
func (quietLogger) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "pebble: fatal: "+format+"\n", args...)
	os.Exit(1)
}

// OpenPebble opens (creating if needed) a Pebble backend in dir. It returns ErrLocked
// when another process has the store open.
func OpenPebble(dir string) (Backend, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	opts := &pebble.Options{
		FS:                 vfs.Default,
		Logger:             quietLogger{},
		FormatMajorVersion: pebble.FormatNewest,
	}
	opts.EnsureDefaults()
	// Tables of a load that a crash interrupted were never ingested: drop them.
	loads := filepath.Join(dir, loadsDir)
	if err := os.RemoveAll(loads); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		if strings.Contains(err.Error(), "lock") {
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	if err := os.MkdirAll(loads, 0o755); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %w", err)
	}
	return &pebbleBackend{db: db, opts: opts, dir: dir, loads: loads}, nil
}

func (p *pebbleBackend) Get(key []byte) ([]byte, error) {
	return pebbleGet(p.db.Get, key)
}

func pebbleGet(get func([]byte) ([]byte, io.Closer, error), key []byte) ([]byte, error) {
	v, closer, err := get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: get: %w", err)
	}
	out := append([]byte(nil), v...)
	closer.Close()
	return out, nil
}

func (p *pebbleBackend) Scan(lower, upper []byte, fn func(k, v []byte) error) error {
	return pebbleScan(p.db.NewIter, lower, upper, fn)
}

func pebbleScan(newIter func(*pebble.IterOptions) (*pebble.Iterator, error), lower, upper []byte, fn func(k, v []byte) error) error {
	it, err := newIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("store: scan: %w", err)
	}
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return fmt.Errorf("store: scan: %w", err)
		}
		if err := fn(it.Key(), v); err != nil {
			it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("store: scan: %w", err)
	}
	return nil
}

type pebbleSnapshot struct{ s *pebble.Snapshot }

func (p *pebbleBackend) Snapshot() (Snapshot, error) { return pebbleSnapshot{p.db.NewSnapshot()}, nil }

func (s pebbleSnapshot) Get(key []byte) ([]byte, error) {
	return pebbleGet(s.s.Get, key)
}

func (s pebbleSnapshot) Scan(lower, upper []byte, fn func(k, v []byte) error) error {
	return pebbleScan(s.s.NewIter, lower, upper, fn)
}

func (s pebbleSnapshot) Close() error { return s.s.Close() }

func (p *pebbleBackend) Apply(b *Batch, sync bool) error {
	pb := p.db.NewBatch()
	defer pb.Close()
	for _, op := range b.ops {
		var err error
		switch op.kind {
		case opSet:
			err = pb.Set(op.key, op.value, nil)
		case opDelete:
			err = pb.Delete(op.key, nil)
		case opDeleteRange:
			err = pb.DeleteRange(op.key, op.value, nil)
		}
		if err != nil {
			return fmt.Errorf("store: batch: %w", err)
		}
	}
	wo := pebble.NoSync
	if sync {
		wo = pebble.Sync
	}
	if err := pb.Commit(wo); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// pebbleLoader builds an sstable and ingests it into the LSM: the pages of an import
// are written once, with no write-ahead log copy and no memtable flush.
type pebbleLoader struct {
	p     *pebbleBackend
	path  string
	w     *sstable.Writer
	bytes int64
}

func (p *pebbleBackend) NewLoader() (Loader, error) {
	path := filepath.Join(p.loads, fmt.Sprintf("load-%d-%d.sst", os.Getpid(), p.seq.Add(1)))
	f, err := vfs.Default.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	wo := p.opts.MakeWriterOptions(0, p.db.TableFormat())
	// Tensor payloads are written as they are: their codecs (if any) live above.
	wo.Compression = sstable.NoCompression
	return &pebbleLoader{p: p, path: path, w: sstable.NewWriter(objstorageprovider.NewFileWritable(f), wo)}, nil
}

func (l *pebbleLoader) Set(key, value []byte) error {
	if err := l.w.Set(key, value); err != nil {
		return fmt.Errorf("store: load: %w", err)
	}
	l.bytes += int64(len(key) + len(value))
	return nil
}

func (l *pebbleLoader) Bytes() int64 { return l.bytes }

func (l *pebbleLoader) Finish() error {
	err := l.w.Close() // syncs the file
	l.w = nil
	if err == nil && l.bytes > 0 {
		err = l.p.db.Ingest(context.Background(), []string{l.path})
	}
	os.Remove(l.path) // Ingest removes it on success
	if err != nil {
		return fmt.Errorf("store: ingest: %w", err)
	}
	return nil
}

func (l *pebbleLoader) Abort() {
	if l.w != nil {
		l.w.Close()
		l.w = nil
	}
	os.Remove(l.path)
}

func (p *pebbleBackend) DiskBytes() (int64, error) {
	return dirBytes(p.dir)
}

// dirBytes returns the size of every regular file under dir.
func dirBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // a file Pebble deleted while we walked
			}
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			n += allocatedBytes(fi)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: disk usage of %s: %w", dir, err)
	}
	return n, nil
}

func (p *pebbleBackend) FreeBytes() (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(p.dir, &st); err != nil {
		return 0, fmt.Errorf("store: statfs %s: %w", p.dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

func (p *pebbleBackend) Compact() error {
	if err := p.db.Flush(); err != nil {
		return fmt.Errorf("store: flush: %w", err)
	}
	if err := p.db.Compact(context.Background(), []byte{0}, []byte{0xff, 0xff}, true); err != nil {
		return fmt.Errorf("store: compact: %w", err)
	}
	return nil
}

func (p *pebbleBackend) Close() error {
	if err := p.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// allocatedBytes returns the disk space a file takes (as du counts it), which can
// exceed its size: Pebble preallocates its write-ahead log.
func allocatedBytes(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return max(int64(st.Blocks)*512, 0)
	}
	return fi.Size()
}
