# healthmesh — build, test and run.
#
# The module list comes from go.work: every module listed there is built,
# vetted and tested; nothing runs `./...` at the workspace root.

SHELL   := /bin/bash
GO      ?= go
BIN     := $(CURDIR)/bin
MODULES := $(shell sed -n '/^use (/,/^)/{s/^[[:space:]]*\.\/\([^[:space:]]*\).*/\1/p}' go.work)
DATA    ?= $(CURDIR)/.data
LDFLAGS := -s -w
# Tests get this much time per module; the end-to-end tests start real processes.
TEST_TIMEOUT ?= 20m

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show the targets
	@awk 'BEGIN {FS = ":.*?## "} /^[a-zA-Z0-9_-]+:.*?## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  modules: $(MODULES)"

.PHONY: build
build: ## Build every binary (static, CGO off) into bin/
	@mkdir -p $(BIN)
	@set -e; for m in $(MODULES); do \
	  pkgs=$$(cd $$m && $(GO) list -f '{{if eq .Name "main"}}{{.ImportPath}}{{end}}' ./...); \
	  if [ -n "$$pkgs" ]; then \
	    echo "build $$m"; \
	    (cd $$m && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $$pkgs); \
	  fi; \
	done
	@ls $(BIN)

.PHONY: test
test: ## Run every module's tests with the race detector
	@set -e; for m in $(MODULES); do \
	  echo "== test $$m"; \
	  (cd $$m && $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...); \
	done

.PHONY: test-short
test-short: ## Tests without the race detector and without the slow end-to-end cases
	@set -e; for m in $(MODULES); do (cd $$m && $(GO) test -short -count=1 ./...); done

.PHONY: lint
lint: ## gofmt and go vet over every module
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@set -e; for m in $(MODULES); do echo "vet $$m"; (cd $$m && $(GO) vet ./...); done

.PHONY: modcheck
modcheck: ## Every module builds on its own (GOWORK=off) with its replace directives
	@set -e; for m in $(MODULES); do echo "GOWORK=off build $$m"; (cd $$m && GOWORK=off $(GO) build -o /dev/null ./...); done

.PHONY: run
run: build ## Run the demo: all-in-one healthmesh + dpvs-agent emulator + demo backends on loopback
	BIN=$(BIN) DATA=$(DATA) deploy/examples/run-demo.sh

.PHONY: nats-cli
nats-cli: ## Install the pinned nats CLI (natscli v0.4.0) into bin/
	@mkdir -p $(BIN)
	cd tools/natscli && GOWORK=off GOBIN=$(BIN) $(GO) install github.com/nats-io/natscli/nats

.PHONY: clean
clean: ## Remove build output and local data
	rm -rf $(BIN) $(DATA)
