// Command neurrun is NeurStore's one binary: it imports models into the store,
// exports them, inspects and checks the store, and (in later versions) runs and
// serves the models it holds.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newCLI().ExecuteContext(ctx); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(int(ee)) // the command printed why
		}
		fmt.Fprintln(os.Stderr, "neurrun:", err)
		os.Exit(1)
	}
}

// exitError is an error that only sets the exit code (its message was printed).
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// newCLI builds the command tree.
func newCLI() *cobra.Command {
	root := &cobra.Command{
		Use:   "neurrun",
		Short: "NeurStore: a model store that keeps models tensor by tensor and deduplicates them",
		Long: `neurrun imports models (safetensors files, sharded Hugging Face folders, ONNX
models) into a NeurStore store, keeps each distinct tensor once, and exports them
back bit for bit.

The store is a folder (default $NEURSTORE, else ./neurstore-data) holding an
embedded Pebble database. Only one process can use a store at a time.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&storeDir, "store", defaultStore(), "store location (env NEURSTORE)")
	root.AddCommand(
		importCmd(),
		lsCmd(),
		showCmd(),
		exportCmd(),
		rmCmd(),
		statsCmd(),
		verifyCmd(),
		gcCmd(),
		compactCmd(),
		compareCmd(),
		benchCmd(),
		runCmd(),
		scoreCmd(),
		conformanceCmd(),
		serveCmd(),
	)
	return root
}
