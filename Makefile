# The front door. Every target installs what it needs first (idempotent, cached outside the
# repository under ~/.cache/datashare), so each works on a fresh machine.
#
#   make run           the local control plane + Kafka (or $KUBECONFIG / $DATASHARE_KAFKA_BOOTSTRAP)
#   make test          build (ASan+UBSan) and run the unit and integration tests
#   make build         build the dev preset
#   make bench         build the release preset and run the benchmarks
#   make lint          clang-format check and clang-tidy
#   make fuzz          build the libFuzzer targets (clang) and run each for FUZZ_SECONDS (default 120)
#   make chaos         the reliability suite at full size (hack/chaos.sh, docs/reliability.md)
#   make cluster-up / cluster-down / cluster-status

SHELL := /bin/bash
# ccache: paths relative to the checkout, so a fresh clone (CI) reuses what an earlier one compiled.
export CCACHE_BASEDIR := $(CURDIR)
export CCACHE_NOHASHDIR := true
PRESET ?= dev
JOBS ?= $(shell nproc)
TEST_LABELS ?= unit|integration
CTEST_ARGS ?=

.PHONY: all deps configure build test test-unit test-tsan run bench lint format fuzz chaos cluster-up cluster-down cluster-status clean

all: build

deps:
	@hack/install-deps.sh

configure: deps
	@cmake --preset $(PRESET) >/dev/null

build: configure
	@cmake --build --preset $(PRESET) -j $(JOBS)

# Unit and integration tests under ASan+UBSan. The integration label starts the local cluster
# (tests/fixtures/cluster.sh) unless KUBECONFIG and DATASHARE_KAFKA_BOOTSTRAP are set.
test: build
	@ctest --preset $(PRESET) -L '$(TEST_LABELS)' -j $(JOBS) $(CTEST_ARGS)

test-unit: build
	@ctest --preset $(PRESET) -L unit -j $(JOBS) $(CTEST_ARGS)

test-tsan:
	@$(MAKE) test PRESET=tsan

run: deps
	@hack/run.sh

bench:
	@$(MAKE) build PRESET=release
	@hack/bench.sh

# The long fuzz run: every target of fuzz/ from its committed seeds; what it learns stays in
# build/fuzz/corpus/<target> (fuzz/README.md says how to fold it back). FUZZ_TARGETS picks some.
FUZZ_SECONDS ?= 120
FUZZ_TARGETS ?= fuzz_sidecar_config fuzz_kubeconfig fuzz_watch_stream fuzz_change_event fuzz_http_target fuzz_crd_spec
fuzz: deps
	@cmake --preset fuzz >/dev/null
	@cmake --build --preset fuzz -j $(JOBS)
	@for t in $(FUZZ_TARGETS); do echo "== $$t ($(FUZZ_SECONDS) s)"; \
	  fuzz/run.sh build/fuzz/bin/$$t fuzz/corpus/$$t $(FUZZ_SECONDS) build/fuzz/corpus/$$t || exit 1; done

# Kill -9, broker outages, network faults at the sizes of issue #9: one line per scenario, non-zero
# on any loss. make test runs the same scenarios at reduced sizes (ctest -L chaos). CHAOS_ARGS picks
# scenarios.
CHAOS_ARGS ?=
chaos: build
	@hack/chaos.sh $(CHAOS_ARGS)

lint: configure
	@hack/lint.sh

format:
	@hack/lint.sh --fix

cluster-up: deps
	@hack/local-cluster.sh up

cluster-down:
	@hack/local-cluster.sh down

cluster-status:
	@hack/local-cluster.sh status

clean:
	rm -rf build
