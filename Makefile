# neoauthz — run `make help` for the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GOLANGCI_LINT_VERSION := v2.15.0
BIN := $(CURDIR)/.bin
# Finds PostgreSQL and Redis (DATABASE_URL/REDIS_URL, the default ports, or our own under .data/).
SERVICES := eval "$$(scripts/services.sh)"

.PHONY: help build run test lint bench bench-load bench-scale proto clean

help: ## Show the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Build bin/pdp and bin/admin
	go build -o bin/ ./cmd/...

run: build ## Run neoauthz end to end on local defaults (services, migrations, demo tenants, pdp)
	@$(SERVICES) && scripts/run.sh

test: ## Run every test with -race against real PostgreSQL, Redis, nginx and Caddy (installed/started when missing), then the deploy/ checks
	@$(SERVICES) && scripts/proxies.sh && go test -race -count=1 -timeout 20m ./...
	@scripts/tools.sh && $(SERVICES) && cd deploy/validate && go test -count=1 -timeout 10m ./...

lint: $(BIN)/golangci-lint ## gofmt, go vet and golangci-lint
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt: run gofmt -w on the files above'; exit 1; }
	go vet ./...
	$(BIN)/golangci-lint run ./...

bench: ## Benchmarks (engine, identity, migrations across 1,000 tenant schemas), then bench-load
	@$(SERVICES) && go test -run '^$$' -bench . -benchmem -timeout 30m ./internal/...
	@$(MAKE) --no-print-directory bench-load

bench-load: ## Load test: a local pdp on 50 tenants × 1,000 users vs a do-nothing ext_authz server
	@$(SERVICES) && go run ./cmd/loadgen

bench-scale: ## Fan-out run: builds bin/pdp, one relay, Redis, 10 then 50 pdp processes, 200 revocations, relay and Redis killed (docs/scale.md "Relay")
	@$(SERVICES) && NEOAUTHZ_BENCH_SCALE=1 go test -count=1 -timeout 20m -run '^TestFanOut$$' -v ./internal/relay/

proto: ## Regenerate the gRPC code from proto/ (buf lint + generate)
	scripts/proto.sh

clean: ## Remove build output and local service data
	rm -rf bin .data

$(BIN)/golangci-lint:
	GOBIN=$(BIN) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
