package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/neurstore/neurstore/graph"
)

// neurrunBin is the neurrun binary the tests run as a subprocess.
var neurrunBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "neurrun-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	neurrunBin = filepath.Join(dir, "neurrun")
	build := exec.Command("go", "build", "-o", neurrunBin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building neurrun:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what one neurrun run printed and returned.
type result struct {
	stdout, stderr string
	code           int
}

// neurrun runs the binary on the store in dir.
func neurrun(t *testing.T, store string, args ...string) result {
	t.Helper()
	cmd := exec.Command(neurrunBin, append([]string{"--store", store}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

func mustRun(t *testing.T, store string, args ...string) string {
	t.Helper()
	r := neurrun(t, store, args...)
	if r.code != 0 {
		t.Fatalf("neurrun %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

type statsJSON struct {
	Models        int   `json:"models"`
	Tensors       int   `json:"tensors"`
	LogicalBytes  int64 `json:"logical_bytes"`
	StoredBytes   int64 `json:"stored_bytes"`
	PhysicalBytes int64 `json:"physical_bytes"`
}

func stats(t *testing.T, store string) statsJSON {
	t.Helper()
	var st statsJSON
	if err := json.Unmarshal([]byte(mustRun(t, store, "stats", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// writeModel writes a random safetensors model of about size bytes in tensors of at
// most 4 MiB, and returns its path.
func writeModel(t *testing.T, dir, name string, size int64, seed uint64) string {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	var tensors []graph.TensorInfo
	for i := 0; size > 0; i++ {
		n := min(size, int64(1+r.IntN(4<<20)))
		n -= n % 4
		if n == 0 {
			break
		}
		tensors = append(tensors, graph.TensorInfo{Name: fmt.Sprintf("layer.%d.weight", i), DType: graph.F32, Shape: []int64{n / 4}, Size: n})
		size -= n
	}
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = graph.WriteSafetensors(f, map[string]string{"format": "pt"}, tensors, func(i int, w io.Writer) error {
		buf := make([]byte, tensors[i].Size)
		for j := 0; j+8 <= len(buf); j += 8 {
			binary.LittleEndian.PutUint64(buf[j:], r.Uint64())
		}
		_, err := w.Write(buf)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// sameTensors fails the test unless the model files a and b hold the same tensors.
func sameTensors(t *testing.T, a, b string) {
	t.Helper()
	r := neurrun(t, "", "compare", a, b)
	if r.code != 0 {
		t.Fatalf("%s and %s differ:\n%s%s", a, b, r.stdout, r.stderr)
	}
}

// familyFiles returns the committed real model family (testdata/family).
func familyFiles(t *testing.T) []string {
	t.Helper()
	dir := filepath.Join("..", "..", "testdata", "family")
	var files []string
	for _, pat := range []string{"*.safetensors", "*.onnx", "*-sharded"} {
		m, _ := filepath.Glob(filepath.Join(dir, pat))
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Fatal("no model family under testdata/family")
	}
	return files
}

func TestRoundTripFamily(t *testing.T) {
	store, out := t.TempDir(), t.TempDir()
	for _, f := range familyFiles(t) {
		// The .onnx and .safetensors of one model would share a default name.
		mustRun(t, store, "import", "--name", filepath.Base(f), f)
	}
	ls := mustRun(t, store, "ls")
	for _, f := range familyFiles(t) {
		name := filepath.Base(f)
		if !strings.Contains(ls, name+":latest") {
			t.Fatalf("ls does not list %s:\n%s", name, ls)
		}
		dst := filepath.Join(out, filepath.Base(f))
		mustRun(t, store, "export", name, dst)
		sameTensors(t, f, dst)
		if strings.HasSuffix(f, ".onnx") {
			// The architecture survives too: exporting the re-imported export gives
			// the same bytes again.
			mustRun(t, store, "import", "--name", name+":again", dst)
			dst2 := filepath.Join(out, "again-"+filepath.Base(f))
			mustRun(t, store, "export", name+":again", dst2)
			b1, _ := os.ReadFile(dst)
			b2, _ := os.ReadFile(dst2)
			if !bytes.Equal(b1, b2) {
				t.Fatalf("%s: export, import, export changed the file", f)
			}
		}
	}
	mustRun(t, store, "verify")
}

func TestDuplicateImportAddsOnlyManifest(t *testing.T) {
	store, dir := t.TempDir(), t.TempDir()
	model := writeModel(t, dir, "m.safetensors", 24<<20, 1)
	mustRun(t, store, "import", "--name", "a", model)
	before := stats(t, store)
	mustRun(t, store, "import", "--name", "b", model)
	after := stats(t, store)
	if after.StoredBytes != before.StoredBytes || after.Tensors != before.Tensors {
		t.Fatalf("second import stored data: before %+v, after %+v", before, after)
	}
	if after.LogicalBytes != 2*before.LogicalBytes {
		t.Fatalf("logical bytes %d, want %d", after.LogicalBytes, 2*before.LogicalBytes)
	}
	show := mustRun(t, store, "show", "--json", "b")
	grew := after.PhysicalBytes - before.PhysicalBytes
	t.Logf("a %d-byte model imported again grew the store by %d bytes (manifest %d bytes)", before.LogicalBytes, grew, len(show))
	if grew > 64<<10 {
		t.Fatalf("second import grew the store by %d bytes; its manifest is %d bytes", grew, len(show))
	}
}

func TestBadInputLeavesStoreAlone(t *testing.T) {
	store, dir := t.TempDir(), t.TempDir()
	good := writeModel(t, dir, "good.safetensors", 3<<20, 2)
	mustRun(t, store, "import", "--name", "keep", good)

	st := func(header string, data []byte) []byte {
		var b bytes.Buffer
		binary.Write(&b, binary.LittleEndian, uint64(len(header)))
		b.WriteString(header)
		b.Write(data)
		return b.Bytes()
	}
	full := st(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, make([]byte, 16))
	cases := map[string]struct {
		file []byte
		want string
	}{
		"truncated.safetensors":  {full[:len(full)-3], ""},
		"headerpast.safetensors": {binary.LittleEndian.AppendUint64(nil, 1<<20), "past the end"},
		"hugeheader.safetensors": {binary.LittleEndian.AppendUint64(nil, 200<<20), "limit"},
		"overlap.safetensors":    {st(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}`, make([]byte, 16)), "overlap"},
		"outofrange.safetensors": {st(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, make([]byte, 8)), ""},
		"dtype.safetensors":      {st(`{"a":{"dtype":"F33","shape":[4],"data_offsets":[0,16]}}`, make([]byte, 16)), "F33"},
		"shape.safetensors":      {st(`{"a":{"dtype":"F32","shape":[5],"data_offsets":[0,16]}}`, make([]byte, 16)), ""},
		"duplicate.safetensors":  {st(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"a":{"dtype":"F32","shape":[4],"data_offsets":[16,32]}}`, make([]byte, 32)), "duplicate"},
		"notjson.safetensors":    {st(`{"a":`, nil), ""},
		"short.safetensors":      {[]byte{1, 2, 3}, ""},
		"garbage.onnx":           {[]byte("this is not a protobuf at all"), ""},
		"truncated-model.onnx":   {[]byte{0x3a, 0x80, 0x01, 0x0a}, ""},
	}
	before := mustRun(t, store, "show", "--json", "keep")
	beforeStats := stats(t, store)
	for name, tc := range cases {
		path := filepath.Join(dir, name)
		os.WriteFile(path, tc.file, 0o644)
		r := neurrun(t, store, "import", path)
		if r.code == 0 {
			t.Errorf("%s: import succeeded", name)
			continue
		}
		msg := strings.TrimSpace(r.stderr)
		if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, name) || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: want one line naming the file and %q, got:\n%s", name, tc.want, msg)
		}
	}
	// A name that exists is refused without --force.
	r := neurrun(t, store, "import", "--name", "keep", writeModel(t, dir, "other.safetensors", 1<<20, 3))
	if r.code == 0 || !strings.Contains(r.stderr, "already exists") {
		t.Errorf("import over an existing model: exit %d, %s", r.code, r.stderr)
	}
	if after := mustRun(t, store, "show", "--json", "keep"); after != before {
		t.Fatal("the existing model changed")
	}
	if after := stats(t, store); after.Models != 1 || after.StoredBytes != beforeStats.StoredBytes || after.Tensors != beforeStats.Tensors {
		t.Fatalf("store changed: before %+v, after %+v", beforeStats, after)
	}
	mustRun(t, store, "verify")
	out := filepath.Join(dir, "keep.safetensors")
	mustRun(t, store, "export", "keep", out)
	sameTensors(t, good, out)
}

// TestKillDuringImport SIGKILLs a real import at random moments: the store must
// verify afterwards, every model imported before must export bit for bit, and the
// killed model must be either absent or complete.
func TestKillDuringImport(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: runs 24 imports")
	}
	store, dir := t.TempDir(), t.TempDir()
	earlier := []string{
		writeModel(t, dir, "earlier1.safetensors", 6<<20, 10),
		writeModel(t, dir, "earlier2.safetensors", 3<<20, 11),
	}
	for i, f := range earlier {
		mustRun(t, store, "import", "--name", fmt.Sprintf("earlier%d", i+1), f)
	}
	victim := writeModel(t, dir, "victim.safetensors", 48<<20, 12)

	// Time a warm import to spread the kills over it (the fastest of three: on a
	// busy machine one slow run would put most kills after the end).
	full := time.Duration(1 << 62)
	for i := 0; i < 3; i++ {
		start := time.Now()
		mustRun(t, store, "import", "--name", "timing", victim)
		full = min(full, time.Since(start))
		mustRun(t, store, "rm", "timing")
	}

	r := rand.New(rand.NewPCG(42, 42))
	const trials = 24
	completed := 0
	for trial := 0; trial < trials; trial++ {
		name := fmt.Sprintf("victim%d", trial)
		cmd := exec.Command(neurrunBin, "--store", store, "import", "--name", name, victim)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		delay := time.Duration(r.Float64() * float64(full))
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGKILL)
		if cmd.Wait() == nil {
			completed++
		}

		v := neurrun(t, store, "verify")
		if v.code != 0 {
			t.Fatalf("trial %d (kill after %v): verify failed:\n%s%s", trial, delay, v.stdout, v.stderr)
		}
		for i, f := range earlier {
			out := filepath.Join(dir, fmt.Sprintf("out-%d.safetensors", i))
			mustRun(t, store, "export", "--force", fmt.Sprintf("earlier%d", i+1), out)
			sameTensors(t, f, out)
		}
		// The killed model is either absent or whole. If whole, remove it so the
		// next trial stores its tensors again instead of finding them stored.
		if neurrun(t, store, "show", name).code == 0 {
			out := filepath.Join(dir, "victim-out.safetensors")
			mustRun(t, store, "export", "--force", name, out)
			sameTensors(t, victim, out)
			mustRun(t, store, "rm", name)
		}
	}
	t.Logf("%d trials, %d imports finished before the kill; one import takes %v", trials, completed, full)
	if completed > trials/2 {
		t.Fatalf("%d of %d imports finished before their kill: the test killed too few", completed, trials)
	}
	mustRun(t, store, "gc")
	v := mustRun(t, store, "verify")
	if strings.Contains(v, "orphan") {
		t.Fatalf("orphans left after gc:\n%s", v)
	}
}

func TestHelp(t *testing.T) {
	out := mustRun(t, "", "--help")
	for _, cmd := range []string{"import", "export", "ls", "show", "rm", "stats", "verify", "gc", "compact"} {
		if !strings.Contains(out, cmd) {
			t.Errorf("--help does not mention %s", cmd)
		}
	}
	dir := t.TempDir()
	t.Chdir(dir) // restored when the test ends
	r := neurrun(t, "postgres://u:secret@localhost/db", "ls")
	if r.code == 0 || !strings.Contains(r.stderr, "PostgreSQL") || strings.Contains(r.stderr, "secret") {
		t.Errorf("postgres store: exit %d, %s", r.code, r.stderr)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a postgres URL created files: %v", entries)
	}
	if r := neurrun(t, t.TempDir(), "frobnicate"); r.code == 0 {
		t.Error("an unknown command succeeded")
	}
}

// TestFullDisk imports a model larger than a small real file system (a tmpfs, so
// it needs root; skipped otherwise): the import must fail with a clear error and
// leave the store as it was.
func TestFullDisk(t *testing.T) {
	mnt := t.TempDir()
	if err := exec.Command("mount", "-t", "tmpfs", "-o", "size=160m", "tmpfs", mnt).Run(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	store, dir := filepath.Join(mnt, "store"), t.TempDir()
	small := writeModel(t, dir, "small.safetensors", 4<<20, 20)
	mustRun(t, store, "import", "--name", "keep", small)
	before := stats(t, store)

	big := writeModel(t, dir, "big.safetensors", 200<<20, 21)
	r := neurrun(t, store, "import", "--name", "big", big)
	msg := strings.TrimSpace(r.stderr)
	if r.code == 0 || !strings.Contains(msg, "disk space") || strings.Contains(msg, "\n") {
		t.Fatalf("import onto a full disk: exit %d, stderr:\n%s", r.code, msg)
	}
	t.Log(msg)
	after := stats(t, store)
	if after.Models != before.Models || after.StoredBytes != before.StoredBytes || after.Tensors != before.Tensors {
		t.Fatalf("store changed: before %+v, after %+v", before, after)
	}
	mustRun(t, store, "verify")
	out := filepath.Join(dir, "keep.safetensors")
	mustRun(t, store, "export", "keep", out)
	sameTensors(t, small, out)
	// The space is usable again: a model that fits imports.
	mustRun(t, store, "import", "--name", "fits", writeModel(t, dir, "fits.safetensors", 24<<20, 22))
}

// export --dtype writes the float tensors in the asked type; a bad type is a
// clear error that writes nothing.
func TestExportDTypeFlag(t *testing.T) {
	store, dir := t.TempDir(), t.TempDir()
	mustRun(t, store, "import", "--name", "mlp", filepath.Join("..", "..", "testdata", "family", "digits-mlp-base.safetensors"))
	out := filepath.Join(dir, "mlp-bf16.safetensors")
	mustRun(t, store, "export", "--dtype", "bf16", "mlp", out)
	src, err := graph.OpenFile(out)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for _, ti := range src.Tensors {
		if ti.DType != graph.BF16 {
			t.Errorf("%s is %s, want BF16", ti.Name, ti.DType)
		}
	}
	bad := filepath.Join(dir, "mlp-x.safetensors")
	r := neurrun(t, store, "export", "--dtype", "f8", "mlp", bad)
	if r.code == 0 || !strings.Contains(r.stderr, "--dtype") {
		t.Errorf("--dtype f8: exit %d, %q", r.code, r.stderr)
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Errorf("a refused export left %s", bad)
	}
}
