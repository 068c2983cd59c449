# clipd's entry point: deps, build, test, bench, gpu-check, install.
# `make test` works on a fresh Debian 12 machine: it installs what it needs first.

BUILD      ?= build
PREFIX     ?= /usr/local
CMAKE_ARGS ?=
PYTHON     ?= /usr/bin/python3
JOBS       ?= $(shell nproc)
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: all deps build lib clipd test bench bench-cpu install gpu-check embed clean

all: build

deps:
	bash scripts/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)

lib: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

build: lib clipd

# bin/clipd links build/lib/libclipengine.so (rpath set by cgo/engine).
clipd: lib
	go build -ldflags "-X main.version=$(VERSION)" -o bin/clipd ./cmd/clipd

test: deps build
	cd $(BUILD) && ctest --output-on-failure -j 1
	go test ./...
	bash tests/install/check.sh

install: lib
	cmake --install $(BUILD) --prefix $(PREFIX)

# CPU engine vs PyTorch on a B/32-shaped random model (see bench/RESULTS.md).
bench-cpu: lib
	bash bench/cpu-bench.sh

bench: bench-cpu

# Run on the GPU machine (see ../shared/GPU.md): builds the CUDA library there and checks it.
gpu-check:
	bash bench/gpu-check.sh

# The real job (needs internet): weights into the cache if missing (a no-op when cached),
# then Open Images V7 validation -> OUTPUT/Images_Embedded.h5. EMBED_ARGS adds flags.
EMBED_ARGS ?=
embed: build
	bin/clipd weights fetch
	bin/clipd embed $(EMBED_ARGS)

clean:
	rm -rf $(BUILD) bin
