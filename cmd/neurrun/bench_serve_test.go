package main

import (
	"strconv"
	"strings"
	"testing"
)

// TestBenchServe runs bench serve end to end at a tiny scale on the committed
// digits-mlp family (no python): a real serve child, both scenarios, the table.
func TestBenchServe(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two servers")
	}
	r := neurrun(t, t.TempDir(), "bench", "serve", "--family", "digits-mlp", "--families", "../../testdata/family",
		"--duration", "1s", "--clients", "4", "--warmup", "0", "--max-delay", "1ms")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "| scenario | models | clients | seconds | requests | errors | req/s | p50 ms | p99 ms | mean batch rows | RSS start MB | RSS end MB |") ||
		!strings.Contains(r.stdout, "serve --max-delay=1ms") || !strings.Contains(r.stdout, "B / A requests/s: ") {
		t.Fatalf("no table:\n%s", r.stdout)
	}
	rows := 0
	for _, line := range strings.Split(r.stdout, "\n") {
		if !strings.HasPrefix(line, "| A: ") && !strings.HasPrefix(line, "| B: ") {
			continue
		}
		rows++
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		if len(cells) != 12 {
			t.Fatalf("row %q has %d cells", line, len(cells))
		}
		num := func(i int) float64 {
			v, err := strconv.ParseFloat(cells[i], 64)
			if err != nil {
				t.Fatalf("row %q cell %d: %v", line, i, err)
			}
			return v
		}
		if cells[1] != "digits-mlp-ft1" && cells[1] != "digits-mlp-ft1..ft5" {
			t.Errorf("models %q", cells[1])
		}
		if num(2) != 4 || num(3) < 1 || num(4) < 10 || num(5) != 0 || num(6) <= 0 || num(7) <= 0 || num(8) < num(7) || num(9) < 1 || num(10) <= 0 || num(11) <= 0 {
			t.Errorf("bad row %q", line)
		}
	}
	if rows != 2 {
		t.Errorf("%d scenario rows:\n%s", rows, r.stdout)
	}
	if strings.Count(r.stdout, "exit status 0 after SIGTERM") != 2 {
		t.Errorf("the servers did not exit 0:\n%s", r.stdout)
	}

	// a family that is not there fails before starting anything
	r = neurrun(t, t.TempDir(), "bench", "serve", "--family", "nope", "--families", "../../testdata/family", "--duration", "1s")
	if r.code == 0 || !strings.Contains(r.stderr, "nope-base.onnx") {
		t.Errorf("missing family: exit %d\n%s", r.code, r.stderr)
	}
}

func TestModelsCell(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string
	}{
		{[]string{"big-mlp-ft1"}, "big-mlp-ft1"},
		{[]string{"big-mlp-ft1", "big-mlp-ft2", "big-mlp-ft6"}, "big-mlp-ft1..ft6"},
		{[]string{"a", "b"}, "a..b"},
	} {
		if got := modelsCell(c.in); got != c.want {
			t.Errorf("%v: %q, want %q", c.in, got, c.want)
		}
	}
}

func TestLineLogFindsAddress(t *testing.T) {
	addr := make(chan string, 1)
	l := &lineLog{addr: addr}
	for _, p := range []string{"time=1 level=INFO msg=x\nlisten", "ing on http://127.0.0.1:4", "321\nmore\n", "listening on http://other:1\n"} {
		l.Write([]byte(p))
	}
	if got := <-addr; got != "127.0.0.1:4321" {
		t.Errorf("address %q", got)
	}
	for i := range 100 {
		l.Write([]byte("line " + strconv.Itoa(i) + "\n"))
	}
	if tail := l.tail(); strings.Contains(tail, "line 59\n") || !strings.Contains(tail, "line 99") {
		t.Errorf("tail %q", tail)
	}
}
