package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/neurstore/neurstore/bench/compress"
	"github.com/spf13/cobra"
)

func benchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmarks: compression reports",
	}
	cmd.AddCommand(benchCompressCmd(), benchInferCmd(), benchServeCmd(), benchRSSCmd())
	return cmd
}

// defaultEval is the evaluation script of the committed families.
const defaultEval = "bench/family/eval_family.py"

func benchCompressCmd() *cobra.Command {
	var (
		dir      string
		families []string
		taus     string
		eval     string
		sweep    bool
		asJSON   bool
		out      string
	)
	cmd := &cobra.Command{
		Use:   "compress",
		Short: "Measure compression and metric drift on model families",
		Long: `Compress imports each model family listed in DIR/family.json into fresh
temporary stores (lossless, then at each --taus value) and reports, per family,
the bytes kept against the family's safetensors bytes, for:

  zstd -19 per file            (the zstd command; Go's zstd if it is missing)
  byte planes, entropy coded   (each tensor split into byte planes, like ZipNN)
  NeurStore lossless           (every key and value the store keeps, index too)
  NeurStore tau T              (the same at each error bound)
  paper's rule, tau T          (8-bit base + min-max residual, no entropy coding)

For every lossy row it exports each model, runs the evaluation command on the
originals and on the exports, and reports the worst metric drift. The default
evaluation command is "/usr/bin/python3 ` + defaultEval + `" when that
script exists (run from the repository root) and Debian's python3-torch is
installed; otherwise the report has no metrics. --eval none turns it off.
--sweep also tries taus from 1e-4 up (steps of 1.1-1.4x) and reports the
largest one up to which every tau keeps the drift within 0.5%: it stops at
the first tau past that.

The user's store is not touched.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := compress.Options{Dir: dir, Families: families, Sweep: sweep, Log: cmd.ErrOrStderr()}
			for _, t := range strings.Split(taus, ",") {
				if t = strings.TrimSpace(t); t == "" {
					continue
				}
				v, err := strconv.ParseFloat(t, 64)
				if err != nil || !(v > 0) || v > 1e30 {
					return fmt.Errorf("--taus: %q is not a positive number", t)
				}
				opts.Taus = append(opts.Taus, v)
			}
			switch {
			case eval == "none":
			case eval != "":
				opts.Eval = strings.Fields(eval)
			default:
				if _, err := os.Stat(defaultEval); err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "no metrics: %s not found (run from the repository root, or give --eval)\n", defaultEval)
				} else if err := exec.Command("/usr/bin/python3", "-c", "import torch").Run(); err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), "no metrics: /usr/bin/python3 cannot import torch (apt-get install python3-torch, or give --eval)")
				} else {
					opts.Eval = []string{"/usr/bin/python3", defaultEval}
				}
			}
			if sweep && opts.Eval == nil {
				return fmt.Errorf("--sweep needs an evaluation command (--eval)")
			}
			fams, err := compress.Run(cmd.Context(), opts)
			if err != nil {
				return err
			}
			return writeReport(cmd.OutOrStdout(), out, asJSON, fams, func(w io.Writer) { compress.Markdown(w, fams) })
		},
	}
	cmd.Flags().StringVar(&dir, "families", "testdata/family", "folder with family.json and the models")
	cmd.Flags().StringSliceVar(&families, "family", nil, "only these families (default: all)")
	cmd.Flags().StringVar(&taus, "taus", "1e-4,1e-3,1e-2", "comma-separated error bounds to measure")
	cmd.Flags().StringVar(&eval, "eval", "", `evaluation command, run as CMD FAMILY ROLE=FILE...; "none" for no metrics`)
	cmd.Flags().BoolVar(&sweep, "sweep", false, "also find the largest tau whose metric drift is <= 0.5%")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of Markdown tables")
	cmd.Flags().StringVar(&out, "out", "", "write the report to this file instead of standard output")
	return cmd
}

// writeReport writes a benchmark report to out (standard output when ""), as
// indented JSON or through markdown. A file is complete or reports an error.
func writeReport(stdout io.Writer, out string, asJSON bool, v any, markdown func(io.Writer)) (err error) {
	w := stdout
	if out != "" {
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		defer func() {
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}()
		w = f
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	markdown(w)
	return nil
}
