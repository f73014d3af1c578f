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

# ---- Containers: images FROM scratch, the compose stack, its fault tests ----
# Images are built from the static binaries in bin/, the host's CA bundle and
# a static busybox (Debian: apt-get install busybox-static); nothing is pulled.

IMAGE_PREFIX ?= healthmesh/
IMAGE_TAG    ?= dev
IMAGES       := nats-server hm-aggregator hm-prober hm-actioner hmctl dpvs-agent-emu demo-backends
IMAGE_CTX    := $(BIN)/docker-context
CA_BUNDLE    ?= /etc/ssl/certs/ca-certificates.crt
BUSYBOX      ?= /bin/busybox
# docker-compose v1 when installed, else the v2 plugin.
COMPOSE      ?= $(shell command -v docker-compose >/dev/null 2>&1 && echo docker-compose || echo docker compose)
# CLUSTER=1: the 3-node NATS cluster (docker-compose.cluster.yml).
COMPOSE_FILES := -f docker-compose.yml $(if $(CLUSTER),-f docker-compose.cluster.yml)
PROBERS      ?= 3
# Image names for docker-compose.yml, passed to compose commands only (not
# exported: the tests must not inherit HM_* variables).
COMPOSE_ENV  := HM_IMAGE_PREFIX=$(IMAGE_PREFIX) HM_IMAGE_TAG=$(IMAGE_TAG)

.PHONY: images
images: build ## Build the container images FROM scratch from bin/ (no registry needed)
	@command -v docker >/dev/null || { echo "images: docker is not installed"; exit 1; }
	@test -r $(CA_BUNDLE) || { echo "images: no CA bundle at $(CA_BUNDLE) (set CA_BUNDLE=FILE)"; exit 1; }
	@test -x $(BUSYBOX) || { echo "images: no busybox at $(BUSYBOX): apt-get install busybox-static (or set BUSYBOX=FILE)"; exit 1; }
	@! grep -qa '/lib[0-9]*/ld-linux' $(BUSYBOX) || { echo "images: $(BUSYBOX) is dynamically linked: install busybox-static (or set BUSYBOX=FILE)"; exit 1; }
	@rm -rf $(IMAGE_CTX) && mkdir -p $(IMAGE_CTX)/data
	@for i in $(IMAGES); do cp $(BIN)/$$i $(IMAGE_CTX)/; done
	@cp $(CA_BUNDLE) $(IMAGE_CTX)/ca-certificates.crt && cp $(BUSYBOX) $(IMAGE_CTX)/busybox
	@set -e; for i in $(IMAGES); do \
	  echo "image $(IMAGE_PREFIX)$$i:$(IMAGE_TAG)"; \
	  docker build -q -f deploy/docker/Dockerfile --target $$i -t $(IMAGE_PREFIX)$$i:$(IMAGE_TAG) $(IMAGE_CTX) \
	    >/dev/null 2>$(IMAGE_CTX)/build.log || { cat $(IMAGE_CTX)/build.log; exit 1; }; \
	done

.PHONY: up
up: images ## Start the compose stack (PROBERS=3, CLUSTER=1 for the 3-node NATS cluster)
	$(COMPOSE_ENV) $(COMPOSE) $(COMPOSE_FILES) up -d --scale prober=$(PROBERS)
	@echo "healthmesh is starting: $(COMPOSE) $(COMPOSE_FILES) run --rm hmctl status   (or bin/hmctl status)"

.PHONY: down
down: ## Stop the compose stack and delete its volumes
	$(COMPOSE_ENV) $(COMPOSE) $(COMPOSE_FILES) --profile tools down --volumes --remove-orphans

# The fault tests' own compose project (tools/deploytest: project).
E2E_PROJECT  := hme2e

.PHONY: e2e-compose
e2e-compose: images ## Fault scenarios against a compose stack of their own (needs docker; ~2 minutes; CLUSTER=1 too)
	@rc=0; (cd tools && $(COMPOSE_ENV) HM_E2E_COMPOSE=1 HM_E2E_CLUSTER=$(CLUSTER) HM_E2E_COMPOSE_CMD="$(COMPOSE)" \
	  $(GO) test -count=1 -timeout 30m -v -run TestComposeFaults ./deploytest/) || rc=$$?; \
	if [ "$${HM_E2E_KEEP:-}" != 1 ]; then \
	  echo "e2e-compose: removing project $(E2E_PROJECT) (containers, networks, volumes)"; \
	  $(MAKE) --no-print-directory e2e-compose-down || { [ $$rc != 0 ] || rc=1; }; \
	fi; exit $$rc

# The test removes its stack itself; this catches a run that could not
# (killed, timed out), so the next one starts clean.
.PHONY: e2e-compose-down
e2e-compose-down: ## Remove the fault tests' compose project, whatever state it is in
	@$(COMPOSE_ENV) COMPOSE_PROJECT_NAME=$(E2E_PROJECT) $(COMPOSE) -f docker-compose.yml -f docker-compose.cluster.yml \
	  --profile tools down --volumes --remove-orphans --timeout 5 2>&1 | grep -v '^\(Removing\|Stopping\|Network .* not found\|Volume .* not found\)' || true
	@left=$$(docker ps -aq --filter label=com.docker.compose.project=$(E2E_PROJECT)); \
	 left="$$left$$(docker network ls -q --filter label=com.docker.compose.project=$(E2E_PROJECT))"; \
	 left="$$left$$(docker volume ls -q --filter label=com.docker.compose.project=$(E2E_PROJECT))"; \
	 if [ -n "$$left" ]; then echo "e2e-compose-down: project $(E2E_PROJECT) not fully removed: $$left"; exit 1; fi

# ---- Prober benchmark (BENCHMARKS.md, prober section) ----
# One hm-prober against nats-server and loopback backends, each a separate
# process, in a private network namespace; about 6 minutes. Pass hm-bench
# flags in BENCH_PROBER_FLAGS, e.g. "-json", "-runs 1", "-scenarios tcp:10000",
# "-profile DIR". Only the results go to stdout (progress to stderr).
BENCH_PROBER_FLAGS ?=

.PHONY: bench-prober
bench-prober: ## Prober performance: 10k TCP, 10k ping, 5k HTTP targets at 1 s, twice each (BENCH_PROBER_FLAGS=...)
	@mkdir -p $(BIN)
	@echo "build hm-prober hm-bench demo-backends nats-server" >&2
	@cd services/prober && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/hm-prober
	@cd tools && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./hm-bench ./demo-backends
	@cd tools && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/nats-server github.com/nats-io/nats-server/v2
	@$(BIN)/hm-bench -bin $(BIN) $(BENCH_PROBER_FLAGS)

# ---- Pipeline benchmark (BENCHMARKS.md, pipeline section) ----
# The whole of healthmesh against dpvs-agent-emu and loopback backends, in a
# private network namespace: the all-in-one healthmesh and the split roles
# (nats-server, hm-aggregator, hm-actioner, 2 x hm-prober), for 10k and 60k
# TCP backends at 3 s and 10k at 1 s; about 15 minutes. Pass hm-bench flags
# in BENCH_FLAGS, e.g. "-json", "-roles all-in-one", "-scenarios tcp:10000@1s".
BENCH_FLAGS ?=

.PHONY: bench
bench: build ## Whole-pipeline benchmark: probes/s, CPU and RSS per role, detection latency vs floor, reshard (BENCH_FLAGS=...)
	@cd tools && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/nats-server github.com/nats-io/nats-server/v2
	@$(BIN)/hm-bench pipeline -bin $(BIN) $(BENCH_FLAGS)

# ---- Aggregator benchmarks (BENCHMARKS.md, aggregator section) ----
# Go benchmarks, in process: the fold path (checker + topology + engine
# bookkeeping) without a server, then engine.Run on an embedded nats-server
# (end to end from HM_RESULTS, restore of 100k targets) and the heap per
# target. Every measurement runs BENCH_AGG_COUNT times; about 6 minutes.
BENCH_AGG_COUNT ?= 3

.PHONY: bench-aggregator
bench-aggregator: ## Aggregator performance: fold, checkpoint, end to end, memory per target, restore (BENCH_AGG_COUNT=3)
	@uptime
	cd services/aggregator && $(GO) test -run '^$$' -count $(BENCH_AGG_COUNT) -benchtime 1s -bench . ./internal/checker/ ./internal/topology/
	cd services/aggregator && $(GO) test -run '^$$' -count $(BENCH_AGG_COUNT) -benchtime 1s -bench 'Fold|Checkpoint|Expire|ApplyDesired' ./internal/engine/
	cd services/aggregator && $(GO) test -run '^$$' -count $(BENCH_AGG_COUNT) -benchtime 1x -timeout 30m -bench 'EndToEnd|Restore|MemoryPerTarget' ./internal/engine/
	@uptime
