# wsgate's front door. `make run` and `make test` install what they need
# (Debian packages), build with Meson, and go.

BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 10
PYTHON     := /usr/bin/python3
PYTEST     := $(PYTHON) -m pytest -q -p no:cacheprovider

.PHONY: all build run test test-unit test-integration asan test-asan fuzz test-fuzz lint \
	test-memcheck tsan test-tsan deps deps-test bench clean format

all: build

deps:
	@scripts/install-deps.sh build

deps-test:
	@scripts/install-deps.sh test

$(BUILD)/build.ninja:
	meson setup $(BUILD) --buildtype=debugoptimized

$(ASAN_BUILD)/build.ninja:
	CC=gcc meson setup $(ASAN_BUILD) --buildtype=debug -Db_sanitize=address,undefined \
		-Db_lundef=false

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

# Starts the example echo backend and the gateway on its defaults.
run: build
	scripts/run-demo.sh

# Everything CI runs: the analysers, unit and integration tests, then the
# same under AddressSanitizer and UndefinedBehaviorSanitizer, the
# integration tests under ThreadSanitizer, a reduced set under valgrind,
# then every fuzz target over its corpus and for FUZZ_SECONDS of new inputs.
test: deps-test build
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory test-unit test-integration
	$(MAKE) --no-print-directory test-asan
	$(MAKE) --no-print-directory test-tsan
	$(MAKE) --no-print-directory test-memcheck
	$(MAKE) --no-print-directory test-fuzz

test-unit:
	meson test -C $(BUILD) --suite unit --suite bench --print-errorlogs

test-integration:
	WSGATE_BIN=$(CURDIR)/$(BUILD)/wsgate $(PYTEST) -n 2 tests/integration
	WSGATE_BUILD=$(CURDIR)/$(BUILD) $(PYTEST) tests/bench

asan: deps-test $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)

test-asan: asan
	ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		meson test -C $(ASAN_BUILD) --suite unit --suite bench --print-errorlogs
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		WSGATE_BIN=$(CURDIR)/$(ASAN_BUILD)/wsgate WSGATE_SANITIZED=1 $(PYTEST) -n 2 tests/integration

# The gateway is multi-threaded (workers share the registry, the sessions
# and the admin state): the integration tests again with ThreadSanitizer.
# A data race report in the gateway's stderr fails the test it happened in.
$(TSAN_BUILD)/build.ninja:
	CC=gcc meson setup $(TSAN_BUILD) --buildtype=debug -Db_sanitize=thread -Db_lundef=false

tsan: deps-test $(TSAN_BUILD)/build.ninja
	ninja -C $(TSAN_BUILD) wsgate

test-tsan: tsan
	TSAN_OPTIONS=halt_on_error=0:second_deadlock_stack=1 WSGATE_BIN=$(CURDIR)/$(TSAN_BUILD)/wsgate \
		WSGATE_SANITIZED=1 $(PYTEST) -n 2 tests/integration

# cppcheck and clang-tidy (.clang-tidy says which checks and why): any
# finding fails.
lint: deps-test $(BUILD)/build.ninja
	cppcheck --error-exitcode=1 --enable=warning,performance,portability --std=c11 \
		--inline-suppr -q -I src --suppress=missingIncludeSystem src bench tests/unit tests/fuzz
	git ls-files 'src/*.c' | xargs -P 2 -n 8 clang-tidy -p $(BUILD) --quiet

# The migration, admin and health tests with the gateway under valgrind
# memcheck: any memory error or definite leak fails (tests/memcheck/wsgate).
MEMCHECK_TESTS := tests/integration/test_drain.py tests/integration/test_admin_api.py \
	tests/integration/test_health.py
test-memcheck: build
	WSGATE_BIN=$(CURDIR)/tests/memcheck/wsgate WSGATE_MEMCHECK_BIN=$(CURDIR)/$(BUILD)/wsgate \
		$(PYTEST) $(MEMCHECK_TESTS)

$(FUZZ_BUILD)/build.ninja:
	CC=clang meson setup $(FUZZ_BUILD) --buildtype=debug -Dfuzz=true \
		-Db_sanitize=address,undefined -Db_lundef=false

fuzz: deps-test $(FUZZ_BUILD)/build.ninja
	ninja -C $(FUZZ_BUILD)

test-fuzz: fuzz
	meson test -C $(FUZZ_BUILD) --suite fuzz --print-errorlogs
	BUILD_DIR=$(CURDIR)/$(FUZZ_BUILD) scripts/fuzz.sh $(FUZZ_SECONDS)

# wsgate against nginx and HAProxy on this machine (docs/performance.md).
bench: build
	scripts/install-deps.sh bench
	bench/compare

format:
	clang-format -i $$(git ls-files 'src/*.c' 'src/*.h' 'tests/unit/*.c' 'bench/*.c')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD)
