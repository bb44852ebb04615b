package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/runtime/npy"
	"google.golang.org/protobuf/encoding/protowire"
)

// scoreStore returns a new store holding the digits MLP (input [batch, 64]
// float32, output logits [batch, 10]) as "mlp".
func scoreStore(t *testing.T) string {
	t.Helper()
	store := t.TempDir()
	mustRun(t, store, "import", "--name", "mlp", filepath.Join("..", "..", "testdata", "family", "digits-mlp-base.onnx"))
	return store
}

// f32Array returns an array of float32 values of the given shape.
func f32Array(shape []int, vals []float32) *npy.Array {
	a := &npy.Array{DType: graph.F32, Shape: shape}
	for _, v := range vals {
		a.Data = binary.LittleEndian.AppendUint32(a.Data, math.Float32bits(v))
	}
	return a
}

// digitRows returns n random rows of 64 values in [0, 1), as the digits are.
func digitRows(n int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	vals := make([]float32, n*64)
	for i := range vals {
		vals[i] = r.Float32()
	}
	return vals
}

func writeNpy(t *testing.T, path string, a *npy.Array) string {
	t.Helper()
	if err := npy.WriteFile(path, a); err != nil {
		t.Fatal(err)
	}
	return path
}

// readF32 reads a float32 .npy file.
func readF32(t *testing.T, path string) ([]int, []float32) {
	t.Helper()
	a, err := npy.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if a.DType != graph.F32 {
		t.Fatalf("%s holds %s, want F32", path, a.DType)
	}
	vals := make([]float32, a.Len())
	for i := range vals {
		vals[i] = math.Float32frombits(binary.LittleEndian.Uint32(a.Data[4*i:]))
	}
	return a.Shape, vals
}

// dirNames lists the names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// mustFail runs neurrun, which must fail with a one-line error containing want.
func mustFail(t *testing.T, store, want string, args ...string) string {
	t.Helper()
	r := neurrun(t, store, args...)
	msg := strings.TrimSpace(r.stderr)
	if r.code == 0 || !strings.Contains(msg, want) || strings.Contains(msg, "\n") {
		t.Fatalf("neurrun %s: exit %d, want a one-line error containing %q; stderr:\n%s", strings.Join(args, " "), r.code, want, msg)
	}
	return msg
}

// TestScoreMatchesRun scores 150 rows in batches of 64 (the last one short):
// every output row is what run computes for the same row, in the same order.
func TestScoreMatchesRun(t *testing.T) {
	store, dir := scoreStore(t), t.TempDir()
	const n = 150
	in := writeNpy(t, filepath.Join(dir, "in.npy"), f32Array([]int{n, 64}, digitRows(n, 1)))
	out := filepath.Join(dir, "out.npy")
	r := neurrun(t, store, "score", "mlp", "--input", in, "--output", out, "--batch", "64")
	if r.code != 0 {
		t.Fatalf("score: exit %d\n%s", r.code, r.stderr)
	}
	summary := strings.TrimSpace(r.stderr)
	for _, want := range []string{"scored 150 rows in 3 batches of up to 64", "rows/s", "logits F32 [150 10]"} {
		if !strings.Contains(summary, want) || strings.Contains(summary, "\n") {
			t.Errorf("summary %q: want one line containing %q", summary, want)
		}
	}
	shape, got := readF32(t, out)
	if !slices.Equal(shape, []int{n, 10}) {
		t.Fatalf("output shape %v, want [%d 10]", shape, n)
	}

	// run on all rows at once, and on single rows taken from each batch.
	ref := filepath.Join(dir, "ref.npy")
	mustRun(t, store, "run", "mlp", "--input", in, "--output", ref)
	_, want := readF32(t, ref)
	closeTo(t, got, want, "score vs run")
	rows := digitRows(n, 1)
	for _, i := range []int{0, 63, 64, 127, 128, 149} {
		one := writeNpy(t, filepath.Join(dir, "one.npy"), f32Array([]int{1, 64}, rows[64*i:64*(i+1)]))
		oneOut := filepath.Join(dir, "one-out.npy")
		mustRun(t, store, "run", "mlp", "--input", one, "--output", oneOut)
		_, w := readF32(t, oneOut)
		closeTo(t, got[10*i:10*(i+1)], w, fmt.Sprintf("row %d", i))
		os.Remove(oneOut)
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"in.npy", "one.npy", "out.npy", "ref.npy"}) {
		t.Errorf("folder holds %v", names)
	}
}

// closeTo fails unless got and want agree within float32 round-off.
func closeTo(t *testing.T, got, want []float32, what string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(float64(got[i] - want[i])); d > 1e-4+1e-4*math.Abs(float64(want[i])) {
			t.Fatalf("%s: value %d (row %d) is %g, want %g", what, i, i/10, got[i], want[i])
		}
	}
}

// TestScoreFolder scores a folder of three shards in lexical order (hidden
// files and other files skipped): the same output as one file of all rows.
func TestScoreFolder(t *testing.T) {
	store, dir := scoreStore(t), t.TempDir()
	rows := digitRows(150, 2)
	whole := writeNpy(t, filepath.Join(dir, "whole.npy"), f32Array([]int{150, 64}, rows))
	shards := filepath.Join(dir, "shards")
	os.Mkdir(shards, 0o755)
	// Written out of order; read as a, b, c. A shard boundary falls inside
	// every batch of 64.
	writeNpy(t, filepath.Join(shards, "c.npy"), f32Array([]int{63, 64}, rows[87*64:]))
	writeNpy(t, filepath.Join(shards, "a.npy"), f32Array([]int{50, 64}, rows[:50*64]))
	writeNpy(t, filepath.Join(shards, "b.npy"), f32Array([]int{37, 64}, rows[50*64:87*64]))
	writeNpy(t, filepath.Join(shards, ".hidden.npy"), f32Array([]int{1, 3}, []float32{1, 2, 3}))
	os.WriteFile(filepath.Join(shards, "notes.txt"), []byte("not an array"), 0o644)

	one, many := filepath.Join(dir, "one.npy"), filepath.Join(dir, "many.npy")
	mustRun(t, store, "score", "mlp", "--input", whole, "--output", one)
	mustRun(t, store, "score", "mlp", "--input", shards, "--output", many)
	b1, _ := os.ReadFile(one)
	b2, _ := os.ReadFile(many)
	if len(b1) == 0 || !bytes.Equal(b1, b2) {
		t.Fatal("scoring the shards differs from scoring the whole file")
	}
	// Uneven batches across shards agree with run too.
	mustRun(t, store, "score", "mlp", "--input", shards, "--output", many, "--batch", "7", "--force")
	ref := filepath.Join(dir, "ref.npy")
	mustRun(t, store, "run", "mlp", "--input", whole, "--output", ref)
	_, got := readF32(t, many)
	_, want := readF32(t, ref)
	closeTo(t, got, want, "shards in batches of 7 vs run")
}

// TestScoreBadInputs: inputs that do not fit the model are refused before
// anything is written, with an error saying why.
func TestScoreBadInputs(t *testing.T) {
	store, dir := scoreStore(t), t.TempDir()
	out := filepath.Join(dir, "out", "scores.npy")
	os.Mkdir(filepath.Dir(out), 0o755)
	good := writeNpy(t, filepath.Join(dir, "good.npy"), f32Array([]int{10, 64}, digitRows(10, 3)))
	images := writeNpy(t, filepath.Join(dir, "images.npy"), f32Array([]int{10, 8, 8}, digitRows(10, 3)))
	narrow := writeNpy(t, filepath.Join(dir, "narrow.npy"), f32Array([]int{10, 63}, digitRows(10, 3)[:630]))
	empty := writeNpy(t, filepath.Join(dir, "empty.npy"), f32Array([]int{0, 64}, nil))

	mixed := filepath.Join(dir, "mixed")
	os.Mkdir(mixed, 0o755)
	writeNpy(t, filepath.Join(mixed, "1.npy"), f32Array([]int{10, 64}, digitRows(10, 4)))
	f64 := &npy.Array{DType: graph.F64, Shape: []int{2, 64}, Data: make([]byte, 2*64*8)}
	writeNpy(t, filepath.Join(mixed, "2.npy"), f64)

	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--input", images}, `input "input": rows have shape [8 8], model wants [64]`},
		{[]string{"--input", narrow}, `rows have shape [63], model wants [64]`},
		{[]string{"--input", filepath.Join(mixed)}, "2.npy holds F64 rows of shape [64], but " + filepath.Join(mixed, "1.npy") + " holds F32 rows"},
		{[]string{"--input", t.TempDir()}, "no .npy files"},
		{[]string{"--input", empty}, "no rows"},
		{[]string{"--input", good, "--input", good}, "2 --input given for 1 graph inputs"},
		{[]string{"--input", "nosuch=" + good}, `the model has no input "nosuch"`},
		{[]string{"--input", filepath.Join(dir, "missing.npy")}, "no such file"},
		{[]string{"--input", good, "--output-name", "probs"}, `no output "probs" (outputs: logits)`},
		{[]string{"--input", good, "--batch", "0"}, "--batch must be at least 1"},
	}
	for _, c := range cases {
		mustFail(t, store, c.want, append([]string{"score", "mlp", "--output", out}, c.args...)...)
		if names := dirNames(t, filepath.Dir(out)); len(names) != 0 {
			t.Fatalf("%v: the output folder holds %v", c.args, names)
		}
	}
	mustFail(t, store, "no --output", "score", "mlp", "--input", good)
	mustFail(t, store, "is a folder", "score", "mlp", "--input", good, "--output", filepath.Dir(out), "--force")
}

// TestScoreExistingOutput: an existing output file is replaced only with --force.
func TestScoreExistingOutput(t *testing.T) {
	store, dir := scoreStore(t), t.TempDir()
	in := writeNpy(t, filepath.Join(dir, "in.npy"), f32Array([]int{5, 64}, digitRows(5, 5)))
	out := filepath.Join(dir, "out.npy")
	os.WriteFile(out, []byte("keep me"), 0o644)
	mustFail(t, store, "already exists: use --force", "score", "mlp", "--input", in, "--output", out)
	if b, _ := os.ReadFile(out); string(b) != "keep me" {
		t.Fatalf("refused score changed the file: %q", b)
	}
	mustRun(t, store, "score", "mlp", "--input", in, "--output", out, "--force")
	if shape, _ := readF32(t, out); !slices.Equal(shape, []int{5, 10}) {
		t.Fatalf("output shape %v", shape)
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"in.npy", "out.npy"}) {
		t.Errorf("folder holds %v", names)
	}
}

// TestScoreFailureLeavesNothing: a last shard whose data ends early fails the
// score after the first batches were written: no output file, no temporary
// file, and an existing output (with --force) stays as it was.
func TestScoreFailureLeavesNothing(t *testing.T) {
	store, dir := scoreStore(t), t.TempDir()
	shards := filepath.Join(dir, "shards")
	os.Mkdir(shards, 0o755)
	writeNpy(t, filepath.Join(shards, "a.npy"), f32Array([]int{100, 64}, digitRows(100, 6)))
	b := writeNpy(t, filepath.Join(shards, "b.npy"), f32Array([]int{100, 64}, digitRows(100, 7)))
	raw, _ := os.ReadFile(b)
	os.WriteFile(b, raw[:len(raw)-50*64*4-10], 0o644) // 49.9 rows of 100

	outDir := filepath.Join(dir, "out")
	os.Mkdir(outDir, 0o755)
	out := filepath.Join(outDir, "scores.npy")
	msg := mustFail(t, store, "unexpected EOF", "score", "mlp", "--input", shards, "--output", out, "--batch", "16")
	for _, want := range []string{b, "scores.npy not written"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	if names := dirNames(t, outDir); len(names) != 0 {
		t.Fatalf("a failed score left %v", names)
	}

	os.WriteFile(out, []byte("old scores"), 0o644)
	mustFail(t, store, "unexpected EOF", "score", "mlp", "--input", shards, "--output", out, "--force")
	if got, _ := os.ReadFile(out); string(got) != "old scores" {
		t.Fatalf("a failed score changed the existing output: %q", got)
	}
	if names := dirNames(t, outDir); !slices.Equal(names, []string{"scores.npy"}) {
		t.Fatalf("a failed score left %v", names)
	}
}

// TestScoreInterrupt sends SIGINT (Ctrl-C) while a score runs: it stops with
// an error and leaves no output and no temporary file.
func TestScoreInterrupt(t *testing.T) {
	store, dir := t.TempDir(), t.TempDir()
	family := filepath.Join("..", "..", "testdata", "family")
	mustRun(t, store, "import", "--name", "text", filepath.Join(family, "text-tiny-base.onnx"))
	// The reference tokens, repeated: a few thousand rows of [32] int64, one
	// per batch, take seconds.
	ref, err := npy.ReadFile(filepath.Join(family, "ref", "text-tiny-base.input.npy"))
	if err != nil {
		t.Fatal(err)
	}
	tokens := &npy.Array{DType: ref.DType, Shape: slices.Clone(ref.Shape)}
	tokens.Shape[0] = 0
	for tokens.Shape[0] < 4000 {
		tokens.Data = append(tokens.Data, ref.Data...)
		tokens.Shape[0] += ref.Shape[0]
	}
	in := writeNpy(t, filepath.Join(dir, "tokens.npy"), tokens)
	outDir := filepath.Join(dir, "out")
	os.Mkdir(outDir, 0o755)

	// Floats for integer tokens are refused before anything runs.
	floats := writeNpy(t, filepath.Join(dir, "floats.npy"), f32Array([]int{2, 32}, make([]float32, 64)))
	mustFail(t, store, "got F32 values, the model takes I64", "score", "text", "--input", floats, "--output", filepath.Join(outDir, "x.npy"))

	cmd := exec.Command(neurrunBin, "--store", store, "score", "text", "--input", in,
		"--output", filepath.Join(outDir, "logits.npy"), "--batch", "1", "--threads", "1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait for the temporary output file: scoring has started.
	deadline := time.Now().Add(time.Minute)
	for len(dirNames(t, outDir)) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // a few batches
	cmd.Process.Signal(syscall.SIGINT)
	err = cmd.Wait()
	msg := strings.TrimSpace(stderr.String())
	if err == nil {
		t.Fatalf("the score finished before the interrupt (make it longer):\n%s", msg)
	}
	if !strings.Contains(msg, "interrupted after") || !strings.Contains(msg, "logits.npy not written") {
		t.Errorf("stderr after SIGINT:\n%s", msg)
	}
	if names := dirNames(t, outDir); len(names) != 0 {
		t.Fatalf("an interrupted score left %v", names)
	}
}

// Builders of a small ONNX model, by hand (no generated ONNX code).

func pbBytes(num protowire.Number, parts ...[]byte) []byte {
	b := protowire.AppendTag(nil, num, protowire.BytesType)
	return protowire.AppendBytes(b, bytes.Join(parts, nil))
}

func pbString(num protowire.Number, s string) []byte { return pbBytes(num, []byte(s)) }

func pbVarint(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}

// pbValueInfo is a float32 ValueInfoProto; a dimension < 0 is symbolic.
func pbValueInfo(field protowire.Number, name string, dims ...int64) []byte {
	var shape []byte
	for _, d := range dims {
		if d < 0 {
			shape = append(shape, pbBytes(1, pbString(2, "batch"))...) // dim { dim_param }
		} else {
			shape = append(shape, pbBytes(1, pbVarint(1, uint64(d)))...) // dim { dim_value }
		}
	}
	tensorType := pbBytes(1, pbVarint(1, 1), pbBytes(2, shape)) // tensor_type { elem_type FLOAT, shape }
	return pbBytes(field, pbString(1, name), pbBytes(2, tensorType))
}

func pbNode(op string, out string, ins ...string) []byte {
	var b []byte
	for _, in := range ins {
		b = append(b, pbString(1, in)...)
	}
	return pbBytes(1, b, pbString(2, out), pbString(3, op+"_"+out), pbString(4, op))
}

// twoInputModel writes an ONNX model with inputs a and b of shape [first, 3]
// (first < 0: a symbolic batch dimension) and outputs sum = a + b and
// prod = a * b, and returns its path.
func twoInputModel(t *testing.T, dir string, first int64) string {
	t.Helper()
	g := bytes.Join([][]byte{
		pbNode("Add", "sum", "a", "b"),
		pbNode("Mul", "prod", "a", "b"),
		pbString(2, "two"),
		pbValueInfo(11, "a", first, 3),
		pbValueInfo(11, "b", first, 3),
		pbValueInfo(12, "sum", first, 3),
		pbValueInfo(12, "prod", first, 3),
	}, nil)
	model := bytes.Join([][]byte{
		pbVarint(1, 8),              // ir_version
		pbBytes(8, pbVarint(2, 13)), // opset_import { version: 13 }
		pbString(2, "neurrun-test"), // producer_name
		pbBytes(7, g),               // graph
	}, nil)
	path := filepath.Join(dir, "two.onnx")
	if err := os.WriteFile(path, model, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestScoreSeveralInputs scores a model of two inputs, bound in order or by
// name, and picks an output with --output-name.
func TestScoreSeveralInputs(t *testing.T) {
	store, dir := t.TempDir(), t.TempDir()
	mustRun(t, store, "import", "--name", "two", twoInputModel(t, dir, -1))
	const n = 20
	av, bv := make([]float32, n*3), make([]float32, n*3)
	for i := range av {
		av[i], bv[i] = float32(i), float32(100+2*i)
	}
	a := writeNpy(t, filepath.Join(dir, "a.npy"), f32Array([]int{n, 3}, av))
	b := writeNpy(t, filepath.Join(dir, "b.npy"), f32Array([]int{n, 3}, bv))
	check := func(path string, op func(x, y float32) float32) {
		t.Helper()
		shape, got := readF32(t, path)
		if !slices.Equal(shape, []int{n, 3}) {
			t.Fatalf("%s: shape %v", path, shape)
		}
		for i := range got {
			if want := op(av[i], bv[i]); got[i] != want {
				t.Fatalf("%s: value %d is %g, want %g", path, i, got[i], want)
			}
		}
	}
	add := func(x, y float32) float32 { return x + y }
	mul := func(x, y float32) float32 { return x * y }

	sum := filepath.Join(dir, "sum.npy")
	mustRun(t, store, "score", "two", "--input", a, "--input", b, "--output", sum, "--batch", "8")
	check(sum, add)
	prod := filepath.Join(dir, "prod.npy")
	mustRun(t, store, "score", "two", "--input", "b="+b, "--input", "a="+a, "--output", prod, "--output-name", "prod", "--batch", "6")
	check(prod, mul)

	short := writeNpy(t, filepath.Join(dir, "short.npy"), f32Array([]int{n - 1, 3}, bv[:(n-1)*3]))
	out := filepath.Join(dir, "out.npy")
	mustFail(t, store, `input "a" has 20 rows`, "score", "two", "--input", a, "--input", short, "--output", out)
	mustFail(t, store, "no --input for b", "score", "two", "--input", "a="+a, "--output", out)
	mustFail(t, store, `input "a" given twice`, "score", "two", "--input", a, "--input", "a="+a, "--output", out)

	// A model whose first dimension is fixed cannot take batches.
	mustRun(t, store, "import", "--name", "fixed", twoInputModel(t, t.TempDir(), n))
	mustFail(t, store, "first dimension is fixed at 20", "score", "fixed", "--input", a, "--input", b, "--output", out)
	if _, err := os.Stat(out); err == nil {
		t.Fatal("a refused score wrote its output")
	}
}

func TestScoreHelp(t *testing.T) {
	out := mustRun(t, "", "score", "--help")
	for _, want := range []string{"--input", "--output-name", "--batch", "--force", "the first one", "lexical order", "Examples:", "neurrun score "} {
		if !strings.Contains(out, want) {
			t.Errorf("score --help does not mention %q", want)
		}
	}
	if !strings.Contains(mustRun(t, "", "--help"), "score") {
		t.Error("neurrun --help does not list score")
	}
}

// TestScoreProgressLine: the progress line of a count of rows shows rows, rows/s
// and time left; that of bytes (import, export) is as it was.
func TestScoreProgressLine(t *testing.T) {
	start := time.Now().Add(-10 * time.Second)
	byteBar := &progress{label: "import m", start: start, done: 5 << 20, total: 10 << 20}
	if got := byteBar.String(); !strings.Contains(got, " 50% 5.0 MiB/10.0 MiB ") || !strings.Contains(got, "KiB/s eta ") {
		t.Errorf("bytes progress %q", got)
	}
	rowBar := &progress{label: "score m", unit: "rows", start: start, done: 300, total: 1000}
	got := rowBar.String()
	for _, want := range []string{"score m [", " 30% 300/1000 rows, 30 rows/s eta 23s"} {
		if !strings.Contains(got, want) {
			t.Errorf("rows progress %q does not contain %q", got, want)
		}
	}
}
