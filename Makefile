# The two commands a newcomer needs: `make run` and `make test`.
JOBS ?= $(shell nproc)
MAKEFLAGS += --no-print-directory
BUILD := build/release

.PHONY: run test build setup clean

setup:
	@scripts/setup.sh

build: setup
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS)

run: build
	@scripts/run_main_job.sh

test: build
	@ctest --preset release -j $(JOBS)

clean:
	rm -rf build
