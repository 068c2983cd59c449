# clipd's entry point: deps, build, test, bench, gpu-check, install.
# `make test` works on a fresh Debian 12 machine: it installs what it needs first.

BUILD      ?= build
PREFIX     ?= /usr/local
CMAKE_ARGS ?=
PYTHON     ?= /usr/bin/python3
JOBS       ?= $(shell nproc)
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: all deps build lib clipd test test-cluster tidy-check fuzz bench bench-cpu install gpu-check embed clean

all: build

deps:
	bash scripts/install-deps.sh

# The configure step reruns whenever CMAKE_ARGS differ from the last configure's, which
# $(CMAKE_STAMP) records (a variable dropped from CMAKE_ARGS keeps its cached value; `make
# clean` starts over).
CMAKE_CONFIG := -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)
CMAKE_STAMP  := $(BUILD)/.clip-cmake-args
ifneq ($(strip $(CMAKE_CONFIG)),$(strip $(shell cat $(CMAKE_STAMP) 2>/dev/null)))
.PHONY: $(CMAKE_STAMP)
endif
ifeq ($(wildcard $(BUILD)/CMakeCache.txt),)
.PHONY: $(CMAKE_STAMP)
endif
$(CMAKE_STAMP):
	cmake -S . -B $(BUILD) $(CMAKE_CONFIG)
	echo '$(subst ','\'',$(CMAKE_CONFIG))' > $@

lib: $(CMAKE_STAMP)
	cmake --build $(BUILD) -j $(JOBS)

build: lib clipd

# Go links libclipengine through pkg-config (cgo/engine/link_pkgconfig.go) against this
# build directory's clipengine-uninstalled.pc, so BUILD=out links out/lib (with an rpath).
# A plain `go build`/`go test` without the tag links build/lib (cgo/engine/link_intree.go).
# The go command's cache does not key on pkg-config's answer, so the build directory also
# goes into CGO_CPPFLAGS (a define nothing reads): another BUILD rebuilds the cgo packages.
GO_TAGS := -tags clipengine_pkgconfig
GO_ENV  := PKG_CONFIG_PATH=$(abspath $(BUILD))$(if $(PKG_CONFIG_PATH),:$(PKG_CONFIG_PATH)) \
           CGO_CPPFLAGS="$(CGO_CPPFLAGS) -DCLIPENGINE_BUILD_DIR=$(abspath $(BUILD))"

clipd: lib
	$(GO_ENV) go build $(GO_TAGS) -ldflags "-X main.version=$(VERSION)" -o bin/clipd ./cmd/clipd

# The object-storage tests run against a real S3 server: SeaweedFS, built once into the cache
# (scripts/seaweedfs.sh, ~6 minutes on 2 cores the first time); CLIPD_REQUIRE_S3=1 makes a
# missing server a failure, not a skip.
test: deps build tidy-check
	cd $(BUILD) && ctest --output-on-failure -j 1
	weed=$$(bash scripts/seaweedfs.sh) && CLIPD_WEED=$$weed CLIPD_REQUIRE_S3=1 $(GO_ENV) go test $(GO_TAGS) -timeout 40m ./...
	bash tests/install/check.sh
	$(MAKE) --no-print-directory test-cluster
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(TEST_FUZZTIME)

# The cluster recipes (deploy/): the Kubernetes manifests, Dockerfile and sbatch scripts checked
# against clipd's flags, then the Slurm recipe run on a one-node Slurm that the test starts
# (as root; it skips, saying why, where Slurm cannot start). SLURM_TRANSCRIPT=FILE keeps its
# transcript.
test-cluster: clipd
	$(PYTHON) tests/cluster/check_recipes.py bin/clipd
	timeout 600 bash tests/cluster/slurm.sh

# Every fuzz target for FUZZTIME each (scripts/fuzz.sh): the Go ones (each `func FuzzX` in a
# _test.go file, found by name, so new targets such as the HDF5 readers' join by themselves)
# and the libFuzzer + ASan/UBSan harnesses of engine/fuzz, built with clang in FUZZ_BUILD.
# `make test` runs them for TEST_FUZZTIME each so they cannot rot. FUZZ_ONLY=REGEX picks some.
FUZZTIME      ?= 60s
TEST_FUZZTIME ?= 3s
FUZZ_BUILD    ?= build-fuzz
fuzz: lib
	$(GO_ENV) GO_TEST_FLAGS="$(GO_TAGS)" FUZZTIME=$(FUZZTIME) FUZZ_BUILD=$(FUZZ_BUILD) bash scripts/fuzz.sh

# Fails (showing the diff) when `go mod tidy` would change go.mod or go.sum.
tidy-check:
	go mod tidy -diff

install: lib
	cmake --install $(BUILD) --prefix $(PREFIX)

# CPU engine vs PyTorch on a B/32-shaped random model (see bench/RESULTS.md).
bench-cpu: lib
	bash bench/cpu-bench.sh

bench: bench-cpu

# Run on a GPU machine: builds the CUDA library there and checks it (bench/gpu-check.sh).
gpu-check:
	bash bench/gpu-check.sh

# The real job (needs internet): weights into the cache unless EMBED_ARGS gives them
# (--weights/-w) or the cache holds a usable file already (inspect --header-only: no network;
# it adopts a model.safetensors placed there by hand), then Open Images V7 validation ->
# OUTPUT/Images_Embedded.h5. EMBED_ARGS adds flags.
EMBED_ARGS ?=
embed: build
ifeq ($(filter --weights --weights=% -w -w=%,$(EMBED_ARGS)),)
	bin/clipd weights inspect --header-only >/dev/null 2>&1 || bin/clipd weights fetch
endif
	bin/clipd embed $(EMBED_ARGS)

clean:
	rm -rf $(BUILD) $(FUZZ_BUILD) bin
