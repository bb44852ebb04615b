package infer

import (
	"fmt"
	"io"
)

// Markdown writes the report as tables: per model and batch, samples/s and p50 of
// each engine, and the ratios the targets are stated in.
func Markdown(w io.Writer, r *Report) {
	fmt.Fprintf(w, "Inference, %d threads, fine-tunes imported at tau %g (compressed = base codes + packed delta).\n\n", r.Threads, r.Tau)
	fmt.Fprintln(w, "| model | batch | f32 samples/s (p50 ms) | compressed samples/s (p50 ms) | torch samples/s (p50 ms) | compressed / f32 | f32 / torch |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	type key struct {
		model string
		batch int
	}
	by := map[key]map[string]Row{}
	var order []key
	for _, row := range r.Rows {
		k := key{row.Model, row.Batch}
		if by[k] == nil {
			by[k] = map[string]Row{}
			order = append(order, k)
		}
		by[k][row.Engine] = row
	}
	cell := func(row Row, ok bool) string {
		if !ok {
			return "-"
		}
		return fmt.Sprintf("%.0f (%.3f)", row.SamplesPerS, row.P50Ms)
	}
	ratio := func(a, b Row, ok bool) string {
		if !ok || b.SamplesPerS == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", a.SamplesPerS/b.SamplesPerS)
	}
	for _, k := range order {
		e := by[k]
		f, okF := e["neurstore f32"]
		c, okC := e["neurstore compressed"]
		t, okT := e["torch"]
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s |\n", k.model, k.batch,
			cell(f, okF), cell(c, okC), cell(t, okT), ratio(c, f, okF && okC), ratio(f, t, okF && okT))
	}
	g := r.GEMV
	fmt.Fprintf(w, "\nFused base + delta GEMV, batch 1, %dx%d, int16 base codes + 4-bit delta (group 64): %.2f bytes/weight.\n\n", g.Rows, g.Cols, g.BytesPerWeight)
	fmt.Fprintln(w, "| kernel | GB/s of weight bytes | vs memory copy bandwidth |")
	fmt.Fprintln(w, "|---|---|---|")
	fmt.Fprintf(w, "| fused base + delta | %.1f | %.0f%% |\n", g.FusedGBs, 100*g.FusedGBs/g.MemGBs)
	fmt.Fprintf(w, "| dense f32 | %.1f | %.0f%% |\n", g.DenseGBs, 100*g.DenseGBs/g.MemGBs)
	fmt.Fprintf(w, "| memory copy (read + write bytes) | %.1f | 100%% |\n", g.MemGBs)
	if r.RSS != nil {
		fmt.Fprintf(w, "\nResident memory (%s, fresh process each): one fine-tune in f32 mode %.1f MiB; six fine-tunes in compressed mode %.1f MiB: %.2fx.\n",
			r.RSS.Model, float64(r.RSS.OneF32Bytes)/(1<<20), float64(r.RSS.SixCompressedBytes)/(1<<20), r.RSS.Ratio)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "\nNote: %s.\n", n)
	}
}
