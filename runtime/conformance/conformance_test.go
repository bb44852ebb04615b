package conformance

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

const suite = "../../testdata/onnx-node"

// knownFailures are cases whose expected data we disagree with, on purpose.
var knownFailures = map[string]string{
	// onnx 1.12 expects float -> bfloat16 by truncation; we round to nearest even,
	// as torch does and as later onnx versions specify.
	"test_cast_FLOAT_to_BFLOAT16": "rounding",
}

// The committed node test cases of the ops we implement: at least 95% pass, and
// nothing fails but the known cases.
func TestSuite(t *testing.T) {
	var passed, total int
	sum, err := Run(context.Background(), suite, func(r Result) {
		total++
		switch r.Status {
		case Pass:
			passed++
		case Fail:
			if _, ok := knownFailures[r.Name]; !ok {
				t.Errorf("%s: %s", r.Name, r.Reason)
			}
		case Skip:
			t.Logf("skip %s: %s", r.Name, r.Reason)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d passed, %d failed, %d skipped", sum.Passed, sum.Failed, sum.Skipped)
	if total < 500 || float64(passed) < 0.95*float64(total) {
		t.Errorf("%d of %d cases pass, want >= 95%%", passed, total)
	}
}

// copyCase copies a case folder so a test can alter it.
func copyCase(t *testing.T, name string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), name)
	err := filepath.WalkDir(filepath.Join(suite, name), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(filepath.Join(suite, name), p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// A wrong expected output fails with the error; an unknown op is skipped with
// its name; a folder without cases is an error.
func TestOutcomes(t *testing.T) {
	dir := copyCase(t, "test_add")
	sub, err := os.ReadFile(filepath.Join(suite, "test_sub", "test_data_set_0", "output_0.pb"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "test_data_set_0", "output_0.pb"), sub, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := RunCase(context.Background(), dir); r.Status != Fail || r.MaxErr == 0 {
		t.Errorf("wrong output: %+v", r)
	}

	dir = copyCase(t, "test_add_bcast")
	model := filepath.Join(dir, "model.onnx")
	b, _ := os.ReadFile(model)
	// op_type is NodeProto field 4: tag 0x22, length 3
	b2 := bytes.Replace(b, []byte("\x22\x03Add"), []byte("\x22\x03Qdd"), 1)
	if bytes.Equal(b, b2) {
		t.Fatal("op_type not found in test_add_bcast")
	}
	os.WriteFile(model, b2, 0o644)
	if r := RunCase(context.Background(), dir); r.Status != Skip || !bytes.Contains([]byte(r.Reason), []byte("Qdd")) {
		t.Errorf("unknown op: %+v", r)
	}

	if _, err := Run(context.Background(), t.TempDir(), func(Result) {}); err == nil {
		t.Error("an empty folder ran")
	}
}
