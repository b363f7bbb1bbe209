# fieldseal: the two commands of README.md, and the work behind them.
#   make demo   install what is missing, build, and run the main job end to end
#   make test   install what is missing, check format and lints, run every test
#   make bench  install what is missing, measure the agent against plain tools, write docs/PERFORMANCE.md
#   make soak   the long fault-injection run (hours); writes docs/RELIABILITY.md (SOAK_SCALE=0.1 for a short one, SOAK_ONLY=PART for one part)
#   make fuzz-short  every fuzz target for FUZZ_SECONDS (default 30) from fuzz/seeds

CARGO ?= cargo
DEMO_DIR ?= demo-data

.PHONY: all deps build test lint fmt-check proto-check demo bench soak fuzz-short clean

all: build

deps:
	@./scripts/install-deps.sh

build: deps
	$(CARGO) build --workspace --all-targets

fmt-check:
	$(CARGO) fmt --all -- --check

lint: deps
	$(CARGO) clippy --workspace --all-targets -- -D warnings

proto-check:
	@./scripts/check-proto-no-io.sh

test: deps fmt-check lint proto-check
	@./scripts/install-deps.sh test
	$(CARGO) test --workspace

demo: deps
	@./scripts/demo.sh "$(DEMO_DIR)"

bench: deps
	@./scripts/install-deps.sh bench
	@./scripts/bench.sh

soak: deps
	@./scripts/soak.sh

fuzz-short: deps
	@./scripts/fuzz-short.sh

clean:
	$(CARGO) clean
	rm -rf "$(DEMO_DIR)"
