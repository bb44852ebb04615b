# NeurStore. `make demo` builds neurrun and runs the main job; `make test` runs the tests.

GO       ?= go
BIN      := bin/neurrun
STORE    ?= ./neurstore-data
OUT      ?= out/demo
# Go before 1.27 can end a timed fuzz run with "context deadline exceeded" and no
# crasher (golang/go#75804, a race in the fuzz coordinator): a failure that wrote
# nothing under testdata/fuzz is that; a count (FUZZTIME=500000x) avoids it.
FUZZTIME ?= 2m
# a new input is minimized for at most this long (large seeds otherwise stall
# the fuzzer for a minute each)
FUZZMIN  ?= 5s
FAMILY   := testdata/family
ADDR     ?= 127.0.0.1:8080

.PHONY: all build demo test fuzz bench clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/neurrun

# The main job: import the committed model family into the embedded store, print
# the store's sizes, export every model and check it bit for bit against its
# source, then serve the store over HTTP until Ctrl-C (a curl call to try is
# printed first).
demo: build
	@mkdir -p $(OUT)
	@set -e; for f in $(FAMILY)/*.safetensors $(FAMILY)/*.onnx $(FAMILY)/text-tiny-base-sharded; do \
		$(BIN) --store $(STORE) import --force --name "$$(basename $$f)" "$$f"; \
	done
	$(BIN) --store $(STORE) stats
	@set -e; for f in $(FAMILY)/*.safetensors $(FAMILY)/*.onnx $(FAMILY)/text-tiny-base-sharded; do \
		n=$$(basename "$$f"); \
		$(BIN) --store $(STORE) export --force "$$n" "$(OUT)/$$n" >/dev/null; \
		printf '%-40s ' "$$n"; $(BIN) compare "$$f" "$(OUT)/$$n"; \
	done
	$(BIN) --store $(STORE) verify
	@echo
	@echo "Serving $(STORE) on http://$(ADDR) (Ctrl-C stops it). Try, from another shell:"
	@echo "  curl -s http://$(ADDR)/v2/models/digits-mlp-ft1.onnx/infer -d @testdata/demo/digits-request.json"
	@echo
	$(BIN) --store $(STORE) serve --addr $(ADDR) --preload digits-mlp-ft1.onnx

# The tests, as CI runs them (.ci/run).
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

# Fuzz every parser for FUZZTIME each.
fuzz:
	$(GO) test ./graph -run '^$$' -fuzz '^FuzzSafetensorsHeader$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN)
	$(GO) test ./graph -run '^$$' -fuzz '^FuzzONNX$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN)
	$(GO) test ./store -run '^$$' -fuzz '^FuzzDecodeRecord$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN)
	$(GO) test ./store -run '^$$' -fuzz '^FuzzDecodeManifest$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN)
	$(GO) test ./store -run '^$$' -fuzz '^FuzzTensorPayload$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN)
	$(GO) test ./quant -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN)
	$(GO) test ./quant -run '^$$' -fuzz '^FuzzLosslessDecode$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN)
	$(GO) test ./quant -run '^$$' -fuzz '^FuzzLosslessDecodeDiff$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN)
	$(GO) test ./quant -run '^$$' -fuzz '^FuzzQuantizeFor$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN)
	$(GO) test ./quant -run '^$$' -fuzz '^FuzzDecodeLowRank$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN)
	$(GO) test ./hnsw -run '^$$' -fuzz '^FuzzLoadNode$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN)

# Import/export throughput on a generated 512 MiB safetensors file (see bench/io.sh).
bench: build
	sh bench/io.sh

clean:
	rm -rf bin out
