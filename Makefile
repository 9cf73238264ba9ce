# apmkit's tasks. `make run` starts apmkit on embedded defaults; `make test` runs every test.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/apmkit/apmkit/internal/version.Version=$(VERSION)
# The exact build command; the Dockerfile runs the same one (a test checks they agree).
BUILD   := CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)"

.PHONY: build run test tools bench lint confd proto proto-check clean

build:
	$(BUILD) -o bin/apmkit ./cmd/apmkit

# Runs with the conf.d folder (only samples on a fresh clone: embedded defaults) and the
# Pinpoint input enabled on 127.0.0.1:9991 (+ 9992/9993), writing line protocol to ./data/out.
run: build
	ENV_DEFAULT_ENABLED_INPUTS=$${ENV_DEFAULT_ENABLED_INPUTS:-pinpoint} ./bin/apmkit run --conf-dir ./conf.d --data-dir ./data

test: tools
	$(GO) test -race -count=1 -timeout 75m ./...

# bin/jaeger, Jaeger all-in-one for the OTLP tests: the tool of its own module tools/jaeger,
# built once per tools/jaeger/go.sum and cached outside the clone (tools/jaeger/build.sh).
tools: bin/jaeger

bin/jaeger: tools/jaeger/go.mod tools/jaeger/go.sum tools/jaeger/build.sh
	GO=$(GO) tools/jaeger/build.sh $@

# Every benchmark: the Go micro-benchmarks, then the load benchmark (about 10 minutes).
bench: bench-go bench-load

.PHONY: bench-go bench-load bench-quick

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# ppload against ppfloor (the decode-only floor) and apmkit (full path to a local DataWay
# sink), stream and batch, 8 and 500 agents, 60 s each, on 127.0.0.1; writes
# bench/RESULTS.md (with a CPU profile of each apmkit run: "Where the CPU goes") and
# bench/results.json. Pass flags with BENCHFLAGS, e.g. BENCHFLAGS="-duration 30s -agents 8";
# BENCHFLAGS="-before bench/results.json" adds a before/after table against the last run.
bench-load:
	GO=$(GO) $(GO) run ./cmd/benchrun $(BENCHFLAGS)

# The same in 10 s runs, as a smoke test; the report and results go to temp files.
bench-quick:
	GO=$(GO) $(GO) run ./cmd/benchrun -quick -out $${TMPDIR:-/tmp}/apmkit-bench-quick.md \
		-results $${TMPDIR:-/tmp}/apmkit-bench-quick.json $(BENCHFLAGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

confd:
	$(GO) run ./internal/confgen -dir conf.d

# docs/CONFIG.md, every option and environment variable, from the config structs (a test
# fails when it drifts).
.PHONY: docs
docs:
	$(GO) run ./docs/gen -out docs/CONFIG.md

proto:
	bash inputs/pinpoint/proto/gen.sh

# Fails when the committed generated code differs from what `make proto` writes.
proto-check: proto
	git diff --exit-code -- inputs/pinpoint/pb

clean:
	rm -rf bin data
