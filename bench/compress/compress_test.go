package compress

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestMain lets the test binary stand in for the evaluation command: run with
// NEURSTORE_FAKE_EVAL=1 it prints, for each ROLE=PATH argument, the file's size as
// the metric (a lossy export is the same size, so every drift is 0).
func TestMain(m *testing.M) {
	if os.Getenv("NEURSTORE_FAKE_EVAL") == "1" {
		args := os.Args[1:]
		for len(args) > 0 && strings.HasPrefix(args[0], "-test.") {
			args = args[1:]
		}
		family := args[0]
		for _, a := range args[1:] {
			role, path, _ := strings.Cut(a, "=")
			fi, err := os.Stat(path)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			b, _ := json.Marshal(map[string]any{"family": family, "role": role, "metric": "size", "value": fi.Size(), "higher_is_better": false})
			fmt.Println(string(b))
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestRunOnFamily(t *testing.T) {
	if testing.Short() {
		t.Skip("imports a family several times")
	}
	t.Setenv("NEURSTORE_FAKE_EVAL", "1")
	fams, err := Run(context.Background(), Options{
		Dir: "../../testdata/family", Families: []string{"digits-cnn"},
		Taus: []float64{1e-3}, Eval: []string{os.Args[0], "-test.run=^$"},
	})
	t.Setenv("NEURSTORE_FAKE_EVAL", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(fams) != 1 || len(fams[0].Models) < 8 || fams[0].Models[0] != "base" {
		t.Fatalf("families %+v", fams)
	}
	f := fams[0]
	rows := map[string]Row{}
	for _, r := range f.Rows {
		rows[r.Method] = r
	}
	for _, m := range []string{"zstd -19 per file", "byte planes, entropy coded", "NeurStore lossless", "NeurStore tau 0.001", "paper's rule, tau 0.001"} {
		r, ok := rows[m]
		if !ok || r.Bytes <= 0 || r.Ratio <= 0 {
			t.Fatalf("row %q: %+v", m, r)
		}
	}
	if l, z := rows["NeurStore lossless"], rows["zstd -19 per file"]; l.Bytes >= z.Bytes {
		t.Errorf("lossless store %d bytes, zstd %d", l.Bytes, z.Bytes)
	}
	if r := rows["NeurStore tau 0.001"]; r.Drift == nil || *r.Drift != 0 || r.Deltas == 0 || r.Bytes >= rows["NeurStore lossless"].Bytes {
		t.Errorf("lossy row %+v", r)
	}
	// where a NeurStore row's bytes go: grid deltas for the fine-tunes, named in
	// the note with their bits per element
	if r := rows["NeurStore tau 0.001"]; r.Breakdown == nil || r.Breakdown.Encodings["grid-delta"].Tensors == 0 || !strings.Contains(r.Note, "grid-delta ") || !strings.Contains(r.Note, "bits/el") {
		t.Errorf("lossy row's breakdown %+v, note %q", r.Breakdown, r.Note)
	}
	var out bytes.Buffer
	Markdown(&out, fams)
	if !strings.Contains(out.String(), "| NeurStore tau 0.001 |") || !strings.Contains(out.String(), "Before (original files): base") {
		t.Errorf("markdown:\n%s", out.String())
	}
}

func TestSweepStopsAtFirstDriftPastLimit(t *testing.T) {
	drifts := []float64{0.1, -0.2, 0.4, MaxDrift + 0.1, 0.3, 0.2}
	taus := []float64{1, 2, 3, 4, 5, 6}
	var ran []float64
	run := func(tau float64) (Row, error) {
		ran = append(ran, tau)
		d := drifts[int(tau)-1]
		return Row{Method: fmt.Sprint(tau), Drift: &d}, nil
	}
	best, err := sweep(taus, run)
	if err != nil || best == nil || best.Method != "3" {
		t.Fatalf("best %+v, err %v; want the row of tau 3", best, err)
	}
	if len(ran) != 4 {
		t.Errorf("ran taus %v, want to stop at the first past the limit (4)", ran)
	}
	drifts[0] = MaxDrift * 2
	if best, _ := sweep(taus, run); best != nil {
		t.Errorf("first tau past the limit: best %+v, want none", best)
	}
	if _, err := sweep(taus, func(float64) (Row, error) { return Row{}, fmt.Errorf("boom") }); err == nil {
		t.Error("an error of run was dropped")
	}
}

func TestLoadFamiliesErrors(t *testing.T) {
	if _, _, err := loadFamilies("../../testdata/family", []string{"no-such-family"}); err == nil {
		t.Error("an unknown family was accepted")
	}
	if _, _, err := loadFamilies(t.TempDir(), nil); err == nil {
		t.Error("a folder without family.json was accepted")
	}
}
