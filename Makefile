# apmkit's tasks. `make run` starts apmkit on embedded defaults; `make test` runs every test.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/apmkit/apmkit/internal/version.Version=$(VERSION)
# The exact build command; the Dockerfile runs the same one (a test checks they agree).
BUILD   := CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)"

.PHONY: build run test bench lint confd proto proto-check clean

build:
	$(BUILD) -o bin/apmkit ./cmd/apmkit

# Runs with the conf.d folder (only samples on a fresh clone: embedded defaults) and the
# Pinpoint input enabled on 127.0.0.1:9991 (+ 9992/9993), writing line protocol to ./data/out.
run: build
	ENV_DEFAULT_ENABLED_INPUTS=$${ENV_DEFAULT_ENABLED_INPUTS:-pinpoint} ./bin/apmkit run --conf-dir ./conf.d --data-dir ./data

test:
	$(GO) test -race -count=1 -timeout 75m ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

confd:
	$(GO) run ./internal/confgen -dir conf.d

proto:
	bash inputs/pinpoint/proto/gen.sh

# Fails when the committed generated code differs from what `make proto` writes.
proto-check: proto
	git diff --exit-code -- inputs/pinpoint/pb

clean:
	rm -rf bin data
