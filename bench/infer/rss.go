package infer

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	rt "runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/neurstore/neurstore/runtime"
	"github.com/neurstore/neurstore/store"
)

// measureRSS runs two fresh child processes over the scratch store: one loads
// big-mlp-ft1 in f32 mode, the other the six big-mlp fine-tunes in compressed mode.
func measureRSS(ctx context.Context, cfg Config) (*RSS, error) {
	dir := filepath.Join(cfg.Scratch, "store")
	one, err := childRSS(ctx, cfg.Bin, dir, runtime.ModeF32, []string{"big-mlp-ft1"})
	if err != nil {
		return nil, err
	}
	six, err := childRSS(ctx, cfg.Bin, dir, runtime.ModeCompressed,
		[]string{"big-mlp-ft1", "big-mlp-ft2", "big-mlp-ft3", "big-mlp-ft4", "big-mlp-ft5", "big-mlp-ft6"})
	if err != nil {
		return nil, err
	}
	return &RSS{OneF32Bytes: one, SixCompressedBytes: six, Ratio: float64(six) / float64(one), Model: "big-mlp"}, nil
}

func childRSS(ctx context.Context, bin, dir string, mode runtime.Mode, refs []string) (int64, error) {
	args := append([]string{"--store", dir, "bench", "rss", "--mode", string(mode)}, refs...)
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, out)
	}
	f := strings.Fields(string(out))
	if len(f) < 2 || f[0] != "rss_bytes" {
		return 0, fmt.Errorf("bench rss printed %q", out)
	}
	return strconv.ParseInt(f[1], 10, 64)
}

// ChildRSS is the body of `neurrun bench rss`: it loads refs from st in mode, runs
// each once at batch 1 (so lazily built state exists), returns memory the garbage
// collector holds to the system, and reports this process's resident set size.
func ChildRSS(ctx context.Context, st *store.Store, mode runtime.Mode, refs []string) (int64, error) {
	cache, err := runtime.NewBaseCache(runtime.DefaultCacheBytes)
	if err != nil {
		return 0, err
	}
	var models []*runtime.Model
	for _, ref := range refs {
		md, err := runtime.Load(st, ref, runtime.Options{Mode: mode, Cache: cache})
		if err != nil {
			return 0, err
		}
		feeds, err := Input(md, 1, rand.New(rand.NewPCG(1, 1)))
		if err != nil {
			return 0, err
		}
		if _, err := md.NewSession().Run(ctx, feeds); err != nil {
			return 0, err
		}
		models = append(models, md)
	}
	rt.GC()
	debug.FreeOSMemory()
	rss, err := selfRSS()
	rt.KeepAlive(models)
	rt.KeepAlive(cache)
	return rss, err
}

// selfRSS reads VmRSS from /proc/self/status.
func selfRSS() (int64, error) { return vmRSS("/proc/self/status") }

// ProcessRSS is the resident set size of process pid, from /proc/PID/status
// (Linux only).
func ProcessRSS(pid int) (int64, error) { return vmRSS(fmt.Sprintf("/proc/%d/status", pid)) }

// vmRSS reads VmRSS from a /proc/.../status file.
func vmRSS(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("resident memory: %w (Linux only)", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("resident memory: no VmRSS in %s", path)
}
