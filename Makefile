# distillery: make demo runs the quickstart on embedded defaults, make test runs the tests.

SHELL := /bin/bash
GO ?= go

# compute's AVX2 matmul kernels need the simd experiment (2-3x faster on CPU),
# and the parallel Go-backend scheduler deadlocks on 2 cores.
export GOEXPERIMENT ?= simd
export GOMLX_BACKEND ?= go:ops_sequential

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.buildVersion=$(VERSION)
BIN := bin/distillery
GOBIN := $(shell $(GO) env GOPATH)/bin
VERSITYGW := $(GOBIN)/versitygw
VERSITYGW_VERSION := v1.8.0

# Packages with goroutines run under the race detector.
RACE_PKGS := ./pipeline/... ./store/... ./datasets/... ./openai/... ./gateway/... ./distill/...
# compute's matmul kernels do pointer arithmetic that -race's checkptr rejects.
NOCHECKPTR := -gcflags='github.com/gomlx/compute/...=-d=checkptr=0'
ALL_PKGS = $(shell $(GO) list ./...)
OTHER_PKGS = $(filter-out $(shell $(GO) list $(RACE_PKGS)),$(ALL_PKGS))

.PHONY: all build demo teacher test bench fuzz lint tools torch chromium docs clean gpu-check

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/distillery

demo: build
	scripts/demo.sh

# Rebuilds the quickstart's tokenizer, teacher and student base from the vendored
# reviews (75 min on a shared 2-core machine) and checks them against models/SHA256SUMS;
# `make teacher INSTALL=1` replaces models/ instead.
teacher: build
	scripts/build-teacher.sh $(if $(INSTALL),--install)

# What the tests need: the real S3 server (versitygw, Apache-2.0) the store tests
# start on loopback, and Debian's PyTorch, the independent oracle of the model tests.
tools: $(VERSITYGW) torch chromium

torch:
	@/usr/bin/python3 -c "import torch" 2>/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch libopenblas0-pthread; }

# Headless Chromium renders the eval report in a test (no console errors, plots present).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

$(VERSITYGW):
	$(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)

test: tools
	$(GO) vet ./...
	DISTILLERY_REQUIRE_S3=1 PATH="$(GOBIN):$$PATH" $(GO) test -race $(NOCHECKPTR) $(RACE_PKGS)
	$(GO) test -timeout 30m ./distill/...  # the trainer and KD-loss tests are built without -race
	DISTILLERY_REQUIRE_TORCH=1 DISTILLERY_REQUIRE_CHROMIUM=1 $(GO) test -timeout 30m $(OTHER_PKGS)

# Go benchmarks, then the same model shapes in PyTorch+OpenBLAS on this machine
# (model/testdata/oracle/bench_torch.py) for the ratio.
bench: torch
	$(GO) test -run '^$$' -bench . -benchmem -cpu 1 ./datasets/...
	$(GO) test -run '^$$' -bench . -benchmem $(filter-out %/datasets,$(ALL_PKGS))
	/usr/bin/python3 model/testdata/oracle/bench_torch.py --threads 1
	$(MAKE) build && scripts/bench-memory.sh
	DISTILLERY_ABLATION=1 $(GO) test ./pipeline -run TestKDAblation -v -timeout 90m

# Short coverage-guided runs of every fuzz target (count-based: reproducible length).
fuzz:
	$(GO) test ./recipes -run '^$$' -fuzz FuzzParse -fuzztime 20000x -parallel 1
	$(GO) test ./datasets -run '^$$' -fuzz FuzzReadJSONLRow -fuzztime 20000x -parallel 1
	$(GO) test ./openai -run '^$$' -fuzz FuzzReadSSE -fuzztime 20000x -parallel 1
	$(GO) test ./routes -run '^$$' -fuzz FuzzParse -fuzztime 20000x -parallel 1
	$(GO) test ./model -run '^$$' -fuzz FuzzParseHeader -fuzztime 20000x -parallel 1
	$(GO) test ./distill -run '^$$' -fuzz FuzzFastReply -fuzztime 20000x -parallel 1
	$(GO) test ./model -run '^$$' -fuzz FuzzEncode -fuzztime 20000x -fuzzminimizetime 100x -parallel 1

# A bundle for an offline NVIDIA machine: the binary, the golden checkpoints and
# scripts/gpu-check.sh. Bring the jax-cuda13-pjrt wheel's xla_cuda_plugin.so.
gpu-check:
	rm -rf dist/gpu-check && mkdir -p dist/gpu-check
	CGO_ENABLED=1 $(GO) build -ldflags "-s -w $(LDFLAGS)" -o dist/gpu-check/distillery ./cmd/distillery
	cp -r model/testdata/golden dist/gpu-check/golden
	mkdir -p dist/gpu-check/train
	cp -r models/fine-foods-student-base dist/gpu-check/train/base
	head -400 data/fine-foods/train.jsonl > dist/gpu-check/train/reviews.jsonl
	cp scripts/gpu-check-train.yaml dist/gpu-check/train/recipe.yaml
	cp scripts/gpu-check.sh dist/gpu-check/run.sh
	tar czf dist/gpu-check.tar.gz -C dist gpu-check
	@du -h dist/gpu-check.tar.gz
	@echo "on the GPU machine: tar xzf gpu-check.tar.gz && XLA_CUDA_PLUGIN=/abs/xla_cuda_plugin.so gpu-check/run.sh"

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy -diff

docs:
	$(GO) test ./recipes -run TestReference -update

clean:
	rm -rf bin runs published dist
