# The project's entry points (docs: INTERFACES.md). Each target installs what
# is missing first, so a fresh Debian 12 machine needs nothing but this.
BUILD_DIR ?= build
ASAN_DIR  ?= build-asan
JOBS      ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps build build-asan test test-v2 test-v2-quick unit-asan bench demo format format-check clean

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)
	cmake --build $(BUILD_DIR) -j $(JOBS)

build-asan: deps
	cmake -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=Debug -DBERTH_SANITIZE=ON $(CMAKE_FLAGS)
	cmake --build $(ASAN_DIR) -j $(JOBS) --target berth-unit-tests

# Unit tests under ASan+UBSan, then every test (privileged ones included) on
# the normal build. A test that cannot run here shows as "Skipped" (ctest's
# summary counts it as not run); check-skips.sh then fails the target for
# every skip that tests/expected-skips.txt does not list.
EXPECTED_SKIPS ?= tests/expected-skips.txt
test: build build-asan format-check
	rm -f $(ASAN_DIR)/ctest-junit.xml $(BUILD_DIR)/ctest-junit.xml
	cd $(ASAN_DIR) && ctest --output-on-failure -L unit --output-junit ctest-junit.xml
	bash scripts/check-skips.sh $(EXPECTED_SKIPS) $(ASAN_DIR)/ctest-junit.xml
	cd $(BUILD_DIR) && ctest --output-on-failure --output-junit ctest-junit.xml
	bash scripts/check-skips.sh $(EXPECTED_SKIPS) $(BUILD_DIR)/ctest-junit.xml
	bash scripts/vm/test-v2.sh --quick $(BUILD_DIR)

# The privileged tests that touch cgroups, in a pure cgroup v2 machine:
# Debian's kernel in qemu (software emulation) with cgroup_no_v1=all, built
# from Debian packages and cached in $(BUILD_DIR)/vm (scripts/vm/). test-v2
# runs the whole set; test-v2-quick, which `make test` runs, a subset.
test-v2: build
	bash scripts/vm/test-v2.sh $(BUILD_DIR)

test-v2-quick: build
	bash scripts/vm/test-v2.sh --quick $(BUILD_DIR)

bench: build
	bash bench/run.sh $(BUILD_DIR)

# Builds only what the demo runs (the tests take minutes on 2 cores).
DEMO_TARGETS = berthd berth berth-shim berth-runtime berth-rootfs berth-probe
demo: deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)
	cmake --build $(BUILD_DIR) -j $(JOBS) --target $(DEMO_TARGETS)
	bash examples/demo.sh $(BUILD_DIR)

format:
	git ls-files '*.cc' '*.h' | xargs clang-format -i

format-check:
	@git ls-files '*.cc' '*.h' | xargs clang-format --dry-run --Werror

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR)
