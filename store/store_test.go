package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/quant"
)

// memModel is an in-memory model for tests.
type memModel struct {
	tensors []graph.TensorInfo
	data    [][]byte
}

func (m *memModel) add(name string, dt graph.DType, shape []int64, data []byte) {
	m.tensors = append(m.tensors, graph.TensorInfo{Name: name, DType: dt, Shape: shape, Size: int64(len(data))})
	m.data = append(m.data, data)
}

func (m *memModel) source() *graph.Source {
	return graph.NewSource(graph.FormatSafetensors, m.tensors, nil, func(i int) (io.Reader, error) {
		return bytes.NewReader(m.data[i]), nil
	})
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b[:n]
}

// testSmallTensor replaces defaultSmallTensor in tests, so that the two-pass path
// runs on small data.
const testSmallTensor = 1 << 20

func openDir(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.smallTensor = testSmallTensor
	return s
}

// testModel returns a model with a large tensor (several pages, the two-pass path),
// a duplicate inside the model, a zero-size tensor and a scalar.
func testModel(seed uint64) *memModel {
	r := rand.New(rand.NewPCG(seed, 1))
	m := &memModel{}
	big := randBytes(r, testSmallTensor+DefaultPageSize/2+3)
	m.add("big", graph.U8, []int64{int64(len(big))}, big)
	w := randBytes(r, 4*64*3)
	m.add("w", graph.F32, []int64{64, 3}, w)
	m.add("w.copy", graph.F32, []int64{64, 3}, w)
	m.add("empty", graph.F32, []int64{0, 5}, nil)
	m.add("scalar", graph.I64, []int64{}, randBytes(r, 8))
	return m
}

func openTest(t *testing.T) *Store {
	t.Helper()
	s := openDir(t, t.TempDir())
	t.Cleanup(func() { s.Close() })
	return s
}

func mustImport(t *testing.T, s *Store, m *memModel, ref string) *ImportResult {
	t.Helper()
	res, err := s.Import(context.Background(), m.source(), ImportOptions{Ref: ref})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// checkModel checks that ref reads back exactly as m.
func checkModel(t *testing.T, s *Store, ref string, m *memModel) {
	t.Helper()
	man, err := s.Model(ref)
	if err != nil {
		t.Fatal(err)
	}
	if len(man.Tensors) != len(m.tensors) {
		t.Fatalf("%s: %d tensors, want %d", ref, len(man.Tensors), len(m.tensors))
	}
	for i, mt := range man.Tensors {
		want := m.tensors[i]
		if mt.Name != want.Name || mt.DType != want.DType || fmt.Sprint(mt.Shape) != fmt.Sprint(want.Shape) {
			t.Fatalf("%s: tensor %d is %s %s%v, want %s %s%v", ref, i, mt.Name, mt.DType, mt.Shape, want.Name, want.DType, want.Shape)
		}
		var buf bytes.Buffer
		if err := s.ReadModelTensor(man, i, &buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), m.data[i]) {
			t.Fatalf("%s: tensor %s: bytes differ", ref, mt.Name)
		}
	}
}

func mustVerify(t *testing.T, s *Store) *VerifyReport {
	t.Helper()
	rep, err := s.Verify(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("verify: %q", rep.Faults)
	}
	return rep
}

func TestImportRoundTripAndDedup(t *testing.T) {
	s := openTest(t)
	m := testModel(1)
	res := mustImport(t, s, m, "a")
	if res.NewTensors != 2 || res.DedupTensors != 1 || res.InlineTensors != 2 {
		t.Fatalf("first import: %d new, %d dedup, %d inline; want 2 new, 1 dedup (w.copy), 2 inline (empty, scalar)", res.NewTensors, res.DedupTensors, res.InlineTensors)
	}
	checkModel(t, s, "a:latest", m)
	st1, _ := s.Stats()

	res = mustImport(t, s, m, "b:v2")
	if res.NewTensors != 0 || res.NewBytes != 0 {
		t.Fatalf("second import stored %d tensors (%d bytes), want none", res.NewTensors, res.NewBytes)
	}
	checkModel(t, s, "b:v2", m)
	st2, _ := s.Stats()
	if st2.StoredBytes != st1.StoredBytes || st2.LogicalBytes != 2*st1.LogicalBytes {
		t.Fatalf("stats after a duplicate import: %+v, before %+v", st2, st1)
	}
	rec, err := s.Record(mustModel(t, s, "a").Tensors[1].ID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Refs != 4 {
		t.Fatalf("w is referenced %d times, want 4 (two per model)", rec.Refs)
	}
	mustVerify(t, s)

	if err := s.Remove("a"); err != nil {
		t.Fatal(err)
	}
	checkModel(t, s, "b:v2", m)
	mustVerify(t, s)
	if err := s.Remove("b:v2"); err != nil {
		t.Fatal(err)
	}
	st, _ := s.Stats()
	if st.Models != 0 || st.Tensors != 0 || st.StoredBytes != 0 {
		t.Fatalf("empty store has %+v", st)
	}
	rep := mustVerify(t, s)
	if rep.Pages != 0 {
		t.Fatalf("%d pages left after removing every model", rep.Pages)
	}
	if err := s.Remove("b:v2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removing a missing model: %v, want ErrNotFound", err)
	}
}

func mustModel(t *testing.T, s *Store, ref string) *Manifest {
	t.Helper()
	m, err := s.Model(ref)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestImportExistsAndForce(t *testing.T) {
	s := openTest(t)
	a, b := testModel(1), testModel(2)
	mustImport(t, s, a, "m")
	_, err := s.Import(context.Background(), b.source(), ImportOptions{Ref: "m"})
	if !errors.Is(err, ErrExists) {
		t.Fatalf("import over an existing name: %v, want ErrExists", err)
	}
	checkModel(t, s, "m", a)
	if _, err := s.Import(context.Background(), b.source(), ImportOptions{Ref: "m", Force: true}); err != nil {
		t.Fatal(err)
	}
	checkModel(t, s, "m", b)
	// a's tensors are gone: nothing else used them.
	st, _ := s.Stats()
	if want := int64(len(b.data[0]) + len(b.data[1])); st.StoredBytes != want { // the scalar is inline
		t.Fatalf("stored %d bytes after replacing, want %d", st.StoredBytes, want)
	}
	mustVerify(t, s)
}

func TestImportBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    *memModel
		ref  string
	}{
		{"bad name", testModel(1), "../etc/passwd"},
		{"bad tag", testModel(1), "a:b:c"},
		{"duplicate tensor", func() *memModel {
			m := &memModel{}
			m.add("x", graph.U8, []int64{1}, []byte{1})
			m.add("x", graph.U8, []int64{1}, []byte{2})
			return m
		}(), "m"},
		{"size mismatch", func() *memModel {
			m := &memModel{}
			m.add("x", graph.F32, []int64{3}, []byte{1, 2, 3, 4})
			return m
		}(), "m"},
		{"truncated data", func() *memModel {
			m := testModel(3)
			m.data[1] = m.data[1][:10]
			return m
		}(), "m"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t)
			mustImport(t, s, testModel(9), "keep")
			before := snapshotKeys(t, s)
			if _, err := s.Import(context.Background(), tc.m.source(), ImportOptions{Ref: tc.ref}); err == nil {
				t.Fatal("import succeeded")
			} else {
				t.Log(err)
			}
			if after := snapshotKeys(t, s); after != before {
				t.Fatalf("store changed:\nbefore %s\nafter  %s", before, after)
			}
			checkModel(t, s, "keep", testModel(9))
		})
	}
}

// snapshotKeys summarises every key and value of the store except the blob counter.
func snapshotKeys(t *testing.T, s *Store) string {
	t.Helper()
	var out bytes.Buffer
	err := s.be.Scan([]byte{0}, []byte{0xff}, func(k, v []byte) error {
		if k[0] != prefixNextBlob {
			fmt.Fprintf(&out, "%x=%d;", k, len(v))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestImportDiskFull(t *testing.T) {
	s := openTest(t)
	mustImport(t, s, testModel(9), "keep")
	before := snapshotKeys(t, s)
	calls := 0
	s.freeBytes = func() (int64, error) {
		calls++
		if calls > 1 {
			return s.reserveBytes + 100, nil // the disk fills after the first tensor
		}
		return 1 << 40, nil
	}
	_, err := s.Import(context.Background(), testModel(2).source(), ImportOptions{Ref: "m"})
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("import on a full disk: %v, want ErrDiskFull", err)
	}
	t.Log(err)
	if after := snapshotKeys(t, s); after != before {
		t.Fatalf("store changed:\nbefore %s\nafter  %s", before, after)
	}
	mustVerify(t, s)
}

func TestImportCancelled(t *testing.T) {
	s := openTest(t)
	before := snapshotKeys(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	_, err := s.Import(ctx, testModel(2).source(), ImportOptions{Ref: "m", Progress: func(done, total int64) {
		if done > DefaultPageSize {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled import: %v", err)
	}
	if after := snapshotKeys(t, s); after != before {
		t.Fatalf("store changed:\nbefore %s\nafter  %s", before, after)
	}
}

func TestImportFileChanged(t *testing.T) {
	s := openTest(t)
	m := testModel(1)
	opens := 0
	src := graph.NewSource(graph.FormatSafetensors, m.tensors, nil, func(i int) (io.Reader, error) {
		data := m.data[i]
		if i == 0 {
			if opens++; opens > 1 { // the second pass sees other bytes
				data = bytes.Clone(data)
				data[len(data)-1]++
			}
		}
		return bytes.NewReader(data), nil
	})
	if _, err := s.Import(context.Background(), src, ImportOptions{Ref: "m"}); err == nil {
		t.Fatal("import of a file that changed under it succeeded")
	}
	mustVerify(t, s)
}

// crashBackend fails every Apply after the first failAfter ones, like a process that
// dies: nothing is cleaned up.
type crashBackend struct {
	Backend
	mu        sync.Mutex
	failAfter int
}

var errCrash = errors.New("crash")

func (c *crashBackend) Apply(b *Batch, sync bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failAfter <= 0 {
		return errCrash
	}
	c.failAfter--
	return c.Backend.Apply(b, sync)
}

// NewLoader returns loaders whose Finish counts as a write that can crash.
func (c *crashBackend) NewLoader() (Loader, error) {
	l, err := c.Backend.NewLoader()
	return crashLoader{l, c}, err
}

type crashLoader struct {
	Loader
	c *crashBackend
}

func (l crashLoader) Finish() error {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	if l.c.failAfter <= 0 {
		l.Loader.Abort()
		return errCrash
	}
	l.c.failAfter--
	return l.Loader.Finish()
}

func TestCrashLeavesOnlyOrphans(t *testing.T) {
	sawOrphans, sawComplete := false, false
	defer func() {
		if !sawOrphans || !sawComplete {
			t.Errorf("crash points missed a case: orphans seen %v, complete import seen %v", sawOrphans, sawComplete)
		}
	}()
	for failAfter := 0; failAfter < 5; failAfter++ {
		t.Run(fmt.Sprint(failAfter), func(t *testing.T) {
			dir := t.TempDir()
			s := openDir(t, dir)
			mustImport(t, s, testModel(9), "keep")
			cb := &crashBackend{Backend: s.be, failAfter: failAfter}
			s.be = cb
			_, err := s.Import(context.Background(), testModel(2).source(), ImportOptions{Ref: "m"})
			if err == nil {
				// The import fit in failAfter writes: it must be complete.
				checkModel(t, s, "m", testModel(2))
				sawComplete = true
			}
			s.be = cb.Backend
			s.Close()

			s = openDir(t, dir)
			defer s.Close()
			rep := mustVerify(t, s)
			sawOrphans = sawOrphans || rep.OrphanPages > 0
			checkModel(t, s, "keep", testModel(9))
			if _, err := s.Model("m"); err == nil {
				checkModel(t, s, "m", testModel(2))
			}
			n, err := s.GC()
			if err != nil {
				t.Fatal(err)
			}
			if n != rep.OrphanPages {
				t.Fatalf("gc deleted %d pages, verify saw %d orphans", n, rep.OrphanPages)
			}
			if rep := mustVerify(t, s); rep.OrphanPages != 0 {
				t.Fatalf("%d orphans after gc", rep.OrphanPages)
			}
			// A later import reuses nothing it should not.
			mustImport(t, s, testModel(2), "m2")
			checkModel(t, s, "m2", testModel(2))
			mustVerify(t, s)
		})
	}
}

func TestVerifyFindsCorruption(t *testing.T) {
	s := openTest(t)
	m := testModel(1)
	mustImport(t, s, m, "a")
	man := mustModel(t, s, "a")
	rec, err := s.Record(man.Tensors[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	key := pageKey(rec.Blob, 1)
	page, err := s.be.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	page[100] ^= 1
	var b Batch
	b.Set(key, page)
	if err := s.be.Apply(&b, true); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Verify(nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() {
		t.Fatal("verify missed a flipped bit")
	}
	t.Log(rep.Faults)
	if err := s.ReadTensor(man.Tensors[0].ID, io.Discard); !IsCorruption(err) {
		t.Fatalf("reading a corrupt page: %v, want ErrCorruption", err)
	}

	// A wrong refcount is a fault too.
	rec, _ = s.Record(man.Tensors[1].ID)
	rec.Refs++
	b.Reset()
	b.Set(recordKey(man.Tensors[1].ID), rec.encode())
	s.be.Apply(&b, true)
	rep, _ = s.Verify(nil)
	if len(rep.Faults) != 2 {
		t.Fatalf("faults: %q, want the checksum and the refcount", rep.Faults)
	}
}

func TestConcurrentReadersAndWriters(t *testing.T) {
	s := openTest(t)
	models := []*memModel{testModel(1), testModel(2), testModel(3)}
	mustImport(t, s, models[0], "m0")
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				man, err := s.Model("m0")
				if err != nil {
					errs <- err
					return
				}
				var buf bytes.Buffer
				if err := s.ReadTensor(man.Tensors[1].ID, &buf); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for w := 1; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ref := fmt.Sprintf("m%d", w)
			if _, err := s.Import(context.Background(), models[w].source(), ImportOptions{Ref: ref}); err != nil {
				errs <- err
				return
			}
			if err := s.Remove(ref); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkModel(t, s, "m0", models[0])
	mustVerify(t, s)
}

func TestRecordEncoding(t *testing.T) {
	base := make([]byte, 32)
	base[0], base[31] = 1, 2
	r := &Record{Encoding: EncXOR, DType: graph.BF16, Shape: []int64{3, 0, 7}, Size: 0, Stored: 5,
		Blob: 1 << 40, PageSize: 4, Pages: 2, Refs: 3, Base: base, Params: []byte("p")}
	for _, bad := range []*Record{
		{Encoding: EncRaw, DType: graph.F32, PageSize: 1, Base: base},         // raw with a base
		{Encoding: EncGridDelta, DType: graph.F32, PageSize: 1},               // delta without one
		{Encoding: EncXOR, DType: graph.F32, PageSize: 1, Base: []byte{1, 2}}, // short base id
		{Encoding: EncGridDelta + 1, DType: graph.F32, PageSize: 1},           // unknown encoding
	} {
		if _, err := decodeRecord(bad.encode()); !IsCorruption(err) {
			t.Errorf("record %+v decoded (err %v)", bad, err)
		}
	}
	got, err := decodeRecord(r.encode())
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(r) {
		t.Fatalf("decoded %+v, want %+v", got, r)
	}
	enc := r.encode()
	for i := range enc {
		if _, err := decodeRecord(enc[:i]); err == nil {
			t.Fatalf("a record cut to %d bytes decoded", i)
		}
	}
}

func TestParseRef(t *testing.T) {
	long := strings.Repeat("n", 128)
	longTag := strings.Repeat("t", 64)
	for ref, want := range map[string]string{
		"a": "a:latest", "llama-7b.v2:ft_1": "llama-7b.v2:ft_1", "a-:b.": "a-:b.",
		long + ":" + longTag: long + ":" + longTag, long + "n": "", "a:" + longTag + "t": "",
		"": "", "a/b": "", "..": "", ".hidden": "", "-a": "", "a:_b": "", "a:": "", "a:b:c": "",
		"a b": "", "caf\u00e9": "", "a\n": "",
	} {
		n, tag, err := ParseRef(ref)
		if got := n + ":" + tag; err == nil && got != want || err != nil && want != "" {
			t.Errorf("ParseRef(%q) = %q, %v; want %q", ref, got, err, want)
		}
	}
}

// syncSpy records whether each write of the blob counter was synced.
type syncSpy struct {
	Backend
	counterWrites, unsynced int
}

func (s *syncSpy) Apply(b *Batch, sync bool) error {
	for _, op := range b.ops {
		if op.kind == opSet && len(op.key) == 1 && op.key[0] == prefixNextBlob {
			s.counterWrites++
			if !sync {
				s.unsynced++
			}
		}
	}
	return s.Backend.Apply(b, sync)
}

// The blob counter reaches the disk before any page under a number it reserves: the
// pages of an import are bulk-loaded tables, durable without the log, so after a
// crash a counter left only in the log could hand their numbers out again.
func TestBlobReservationIsSynced(t *testing.T) {
	be, err := OpenPebble(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	spy := &syncSpy{Backend: be}
	s, err := New(spy)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustImport(t, s, testModel(1), "m")
	if spy.counterWrites == 0 || spy.unsynced != 0 {
		t.Fatalf("%d blob counter writes, %d of them not synced", spy.counterWrites, spy.unsynced)
	}
}

// TestFormatVersion: a new store is marked with the current version, a version 1
// store opens and is marked current, and versions this binary cannot read are
// refused with an error that says which.
func TestFormatVersion(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	mustImport(t, s, testModel(1), "a")
	s.Close()
	setVersion := func(v []byte) {
		t.Helper()
		be, err := OpenPebble(dir)
		if err != nil {
			t.Fatal(err)
		}
		var b Batch
		b.Set([]byte{prefixFormat}, v)
		if err := be.Apply(&b, true); err != nil {
			t.Fatal(err)
		}
		be.Close()
	}
	version := func() byte {
		t.Helper()
		be, err := OpenPebble(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer be.Close()
		v, err := be.Get([]byte{prefixFormat})
		if err != nil || len(v) != 1 {
			t.Fatalf("version %x, %v", v, err)
		}
		return v[0]
	}
	if v := version(); v != formatVersion {
		t.Fatalf("new store has version %d, want %d", v, formatVersion)
	}

	setVersion([]byte{1})
	s = openDir(t, dir)
	checkModel(t, s, "a", testModel(1))
	s.Close()
	if v := version(); v != formatVersion {
		t.Fatalf("version 1 store is %d after open, want %d", v, formatVersion)
	}

	for _, c := range []struct {
		v    []byte
		want string
	}{
		{[]byte{formatVersion + 1}, "newer than this binary"},
		{[]byte{0}, "older than this binary reads"},
		{[]byte{1, 0}, "corrupt"},
	} {
		setVersion(c.v)
		_, err := Open(dir)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("version %x: error %v, want %q", c.v, err, c.want)
		}
	}
}

// inlineManifest returns a manifest with inline tensors of every element size, an
// empty one and a stored one between them, their bytes like a model's (F32 near 1,
// small integers).
func inlineManifest() *Manifest {
	m := &Manifest{Name: "m", Tag: "latest", Format: graph.FormatSafetensors, Created: time.Unix(1700000000, 0).UTC()}
	r := rand.New(rand.NewPCG(7, 7))
	add := func(name string, dt graph.DType, n int64) {
		data := make([]byte, n*int64(dt.Size()))
		for i := range n {
			switch dt {
			case graph.F32: // a norm's weights: near 1
				binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(float32(1+0.01*r.NormFloat64())))
			default:
				data[i*int64(dt.Size())] = byte(r.IntN(4))
			}
		}
		if n == 0 {
			data = nil
		}
		m.Tensors = append(m.Tensors, ManifestTensor{Name: name, DType: dt, Shape: []int64{n}, Data: data})
	}
	add("norm.weight", graph.F32, 64)
	add("counter", graph.I64, 1)
	add("half", graph.F16, 3)
	m.Tensors = append(m.Tensors, ManifestTensor{Name: "w", DType: graph.F32, Shape: []int64{256, 256}, ID: TensorID{1, 2, 3}})
	add("mask", graph.Bool, 5)
	add("empty", graph.F32, 0)
	add("norm.bias", graph.F32, 128)
	return m
}

// encodeManifestAs encodes m in manifest format version v (1 and 2 are what
// earlier builds wrote: the whole manifest, inline bytes included, as JSON).
func encodeManifestAs(m *Manifest, v byte) ([]byte, error) {
	if v == manifestPlanes {
		return m.encode()
	}
	j, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if v == manifestPlain {
		return append([]byte{v}, j...), nil
	}
	enc, _, err := manifestZ()
	if err != nil {
		return nil, err
	}
	return enc.EncodeAll(j, []byte{v}), nil
}

// TestManifestVersions: manifests of every format version decode to the same
// model, version 3 keeps inline bytes as planes, and a version 3 manifest whose
// planes do not match its inline tensors is corrupt.
func TestManifestVersions(t *testing.T) {
	m := inlineManifest()
	sizes := map[byte]int{}
	for _, v := range []byte{manifestPlain, manifestZstd, manifestPlanes} {
		b, err := encodeManifestAs(m, v)
		if err != nil {
			t.Fatal(err)
		}
		sizes[v] = len(b)
		got, err := decodeManifest(b)
		if err != nil {
			t.Fatalf("version %d: %v", v, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("version %d decodes as\n%+v\nwant\n%+v", v, got, m)
		}
	}
	if sizes[manifestPlanes] >= sizes[manifestZstd] {
		t.Errorf("version 3 takes %d bytes, version 2 %d", sizes[manifestPlanes], sizes[manifestZstd])
	}

	// body builds a version 3 manifest of JSON js with f32 as the bytes of its
	// 4-byte inline tensors, then tail.
	body := func(js string, f32 []byte, tail ...byte) []byte {
		enc, _, _ := manifestZ()
		z := enc.EncodeAll([]byte(js), nil)
		out := binary.AppendUvarint([]byte{manifestPlanes}, uint64(len(z)))
		out = append(out, z...)
		for _, size := range inlineSizes {
			var blob []byte
			if size == 4 && f32 != nil {
				var err error
				if blob, err = quant.LosslessEncode(f32, nil, 4); err != nil {
					t.Fatal(err)
				}
			}
			out = binary.AppendUvarint(out, uint64(len(blob)))
			out = append(out, blob...)
		}
		return append(out, tail...)
	}
	const one = `{"name":"m","tag":"t","tensors":[{"name":"a","dtype":"F32","shape":[2],"id":"0000000000000000000000000000000000000000000000000000000000000000"}]}`
	if got, err := decodeManifest(body(one, make([]byte, 8))); err != nil || len(got.Tensors[0].Data) != 8 {
		t.Fatalf("a well-formed version 3 manifest: %+v, %v", got, err)
	}
	for name, b := range map[string][]byte{
		"inline bytes short": body(one, make([]byte, 7)),
		"inline bytes long":  body(one, make([]byte, 9)),
		"inline bytes none":  body(one, nil),
		"trailing bytes":     body(one, make([]byte, 8), 0),
		"length past end":    binary.AppendUvarint([]byte{manifestPlanes}, 1000),
		"data inside json":   body(`{"name":"m","tag":"t","tensors":[{"name":"a","dtype":"F32","shape":[2],"id":"0000000000000000000000000000000000000000000000000000000000000000","data":"AAAAAAAAAAA="}]}`, make([]byte, 8)),
		"inline too big":     body(`{"name":"m","tag":"t","tensors":[{"name":"a","dtype":"F32","shape":[200],"id":"0000000000000000000000000000000000000000000000000000000000000000"}]}`, make([]byte, 800)),
		"version 4":          {4, 0},
	} {
		if _, err := decodeManifest(b); !IsCorruption(err) {
			t.Errorf("%s: error %v, want corruption", name, err)
		}
	}
}

// A model's graph is stored compressed and read back as it was; a graph stored
// by an earlier build (uncompressed, no graph_zstd in the manifest) still reads;
// a damaged one is a verify fault and an export error.
func TestGraphStoredCompressed(t *testing.T) {
	s := openTest(t)
	m := testModel(3)
	g := bytes.Repeat([]byte("node { op_type: \"MatMul\" input: \"x\" input: \"w\" } "), 200)
	src := graph.NewSource(graph.FormatSafetensors, m.tensors, g, func(i int) (io.Reader, error) { return bytes.NewReader(m.data[i]), nil })
	if _, err := s.Import(context.Background(), src, ImportOptions{Ref: "g"}); err != nil {
		t.Fatal(err)
	}
	stored, err := s.be.Get(graphKey("g", "latest"))
	if err != nil {
		t.Fatal(err)
	}
	if man := mustModel(t, s, "g"); !man.GraphZstd || man.GraphBytes != int64(len(g)) || len(stored)*4 > len(g) {
		t.Fatalf("graph of %d bytes stored in %d (zstd %v)", len(g), len(stored), man.GraphZstd)
	}
	if got, err := s.Graph("g"); err != nil || !bytes.Equal(got, g) {
		t.Fatalf("Graph: %d bytes, %v", len(got), err)
	}
	mustVerify(t, s)

	// as an earlier build stored it
	man := mustModel(t, s, "g")
	man.GraphZstd = false
	enc, err := man.encode()
	if err != nil {
		t.Fatal(err)
	}
	var b Batch
	b.Set(manifestKey("g", "latest"), enc)
	b.Set(graphKey("g", "latest"), g)
	if err := s.be.Apply(&b, true); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Graph("g"); err != nil || !bytes.Equal(got, g) {
		t.Fatalf("uncompressed graph: %d bytes, %v", len(got), err)
	}
	mustVerify(t, s)

	// damaged: still marked compressed, bytes that are not a zstd frame
	man.GraphZstd = true
	if enc, err = man.encode(); err != nil {
		t.Fatal(err)
	}
	b = Batch{}
	b.Set(manifestKey("g", "latest"), enc)
	if err := s.be.Apply(&b, true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Graph("g"); !IsCorruption(err) {
		t.Fatalf("damaged graph: %v, want corruption", err)
	}
	if rep, err := s.Verify(nil); err != nil || rep.OK() {
		t.Fatalf("verify of a damaged graph: %+v, %v", rep, err)
	}
}

// Progress counts the source's bytes whatever a tensor becomes (raw pages, an
// encoded base or delta, a manifest inline tensor, a duplicate) and ends at the
// total.
func TestImportProgressReachesTotal(t *testing.T) {
	s := openTest(t)
	for _, c := range []struct {
		ref string
		m   *memModel
		tau float64
	}{
		{"raw", testModel(2), 0},
		{"base", familyModel(t, "digits-mlp-base.safetensors"), 0},
		{"ft", familyModel(t, "digits-mlp-ft1.safetensors"), 1e-3},
		{"again", familyModel(t, "digits-mlp-ft1.safetensors"), 1e-3},
	} {
		var last, total int64
		_, err := s.Import(context.Background(), c.m.source(), ImportOptions{Ref: c.ref, Tau: c.tau, Progress: func(done, tot int64) {
			if done < last {
				t.Errorf("%s: progress went back from %d to %d", c.ref, last, done)
			}
			last, total = done, tot
		}})
		if err != nil {
			t.Fatal(err)
		}
		if last != total || total == 0 {
			t.Errorf("%s: progress ended at %d of %d", c.ref, last, total)
		}
	}
}
