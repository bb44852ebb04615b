package main

import (
	"fmt"

	"github.com/neurstore/neurstore/runtime/conformance"
	"github.com/spf13/cobra"
)

func conformanceCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "conformance DIR",
		Short: "Run ONNX backend node test cases against the runtime",
		Long: `Conformance runs every ONNX backend test case in DIR (folders holding model.onnx
and test_data_set_*/input_*.pb, output_*.pb) on the CPU runtime and prints one line
per case: pass, fail with the largest error, or skip with the unsupported op.
The last line is "N passed, M failed, K skipped". It exits non-zero if any case
fails.

Outputs are judged as onnx's backend test runner judges them: same type and
shape, |got - want| <= 1e-7 + 1e-3 |want| per element.

Make the cases with: /usr/bin/python3 bench/conformance/generate.py DIR
(a filtered copy is committed in testdata/onnx-node).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w := cmd.OutOrStdout()
			sum, err := conformance.Run(cmd.Context(), args[0], func(r conformance.Result) {
				switch r.Status {
				case conformance.Pass:
					fmt.Fprintf(w, "pass  %s (max error %.3g)\n", r.Name, r.MaxErr)
				case conformance.Fail:
					fmt.Fprintf(w, "FAIL  %s: %s\n", r.Name, r.Reason)
				default:
					fmt.Fprintf(w, "skip  %s: %s\n", r.Name, r.Reason)
				}
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "%d passed, %d failed, %d skipped\n", sum.Passed, sum.Failed, sum.Skipped)
			if sum.Failed > 0 {
				return exitError(1)
			}
			return nil
		},
	}
}
