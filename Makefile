# The README's commands. Build trees: build/release, build/asan, build/fuzz.
JOBS ?= $(shell nproc)
HOST ?= 0.0.0.0
PORT ?= 8080
FUZZ_SECONDS ?= 60

.PHONY: all build deps test-deps run test test-unit test-asan test-tsan fuzz fuzz-smoke bench clean

all: build

deps:
	@bash scripts/install-deps.sh

test-deps:
	@bash scripts/install-deps.sh --test

build:
	@cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build build/release -j $(JOBS)

run: deps build
	./build/release/realtimed --host $(HOST) --port $(PORT) --config config/demo.json

test: test-deps build
	cd build/release && ctest --output-on-failure -j $(JOBS)

test-asan: test-deps
	@cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DRT_SANITIZE=ON -DCMAKE_C_COMPILER=clang >/dev/null
	@cmake --build build/asan -j $(JOBS)
	cd build/asan && ctest --output-on-failure -j $(JOBS)

# The code that crosses threads (workers, inboxes, publish_async, the live-query
# pool) under ThreadSanitizer: a report makes the binary fail (halt_on_error).
TSAN_TESTS = unit/test_worker|unit/test_server|unit/test_live_api|integration/workers|integration/pubsub|integration/presence|integration/livequery|integration/shutdown|integration/flushinterval
test-tsan: test-deps
	@cmake -S . -B build/tsan -DCMAKE_BUILD_TYPE=Debug -DRT_TSAN=ON -DCMAKE_C_COMPILER=clang >/dev/null
	@cmake --build build/tsan -j $(JOBS)
	cd build/tsan && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ctest --output-on-failure -j $(JOBS) -R '$(TSAN_TESTS)'

fuzz: deps
	@cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=Debug -DRT_FUZZ=ON -DCMAKE_C_COMPILER=clang >/dev/null
	@cmake --build build/fuzz -j $(JOBS)
	bash scripts/fuzz.sh build/fuzz $(FUZZ_SECONDS)

fuzz-smoke:
	$(MAKE) fuzz FUZZ_SECONDS=30

bench: deps build
	bash bench/fanout.sh

clean:
	rm -rf build
