# eventline — developer commands. `make` alone lists them.
# Each target's description is the `## ` comment on its line.

SHELL := /bin/bash
CARGO ?= cargo
SCRIPTS := infrastructure/scripts

.DEFAULT_GOAL := help
.PHONY: help up down status test build fmt lint logs check-deploy deny bench chaos fuzz

help: ## List the targets
	@awk 'BEGIN { FS = ":.*## " } /^[a-zA-Z_-]+:.*## / { printf "  %-8s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

up: ## Start Redis, PostgreSQL and the services in the background (data in .run/)
	@$(SCRIPTS)/stack.sh up

down: ## Stop what `make up` started (data stays in .run/)
	@$(SCRIPTS)/stack.sh down

status: ## Show what runs in the local stack
	@$(SCRIPTS)/stack.sh status

test: ## fmt check, clippy and all tests against throwaway Redis and PostgreSQL (what CI runs)
	@$(SCRIPTS)/test.sh

build: ## Build the workspace
	$(CARGO) build --workspace

fmt: ## Format the code
	$(CARGO) fmt --all

lint: ## Clippy with warnings as errors
	$(CARGO) clippy --workspace --all-targets -- -D warnings

logs: ## Last 50 lines of each local-stack log
	@if compgen -G '.run/logs/*.log' >/dev/null; then tail -n 50 .run/logs/*.log; else echo 'no logs yet: run make up'; fi

check-deploy: ## Validate the Kubernetes manifests, compose file, Prometheus rules and dashboards
	@$(SCRIPTS)/check-deploy.sh

bench: ## Load test end to end against the local stack, with the machine's XADD and COPY ceilings (bench-results/)
	@load-tests/bench.sh

chaos: ## Faults under load on a stack of its own: every accepted event stored once? (ARGS= passes flags on)
	@load-tests/chaos.sh $(ARGS)

fuzz: ## Each cargo-fuzz target for FUZZ_SECONDS (600) from the checked-in corpus
	@fuzz/run.sh

deny: ## Licences, banned crates and sources (cargo deny; advisories need the network: cargo deny check advisories)
	@cargo deny --version >/dev/null 2>&1 || cargo install cargo-deny --locked
	cargo deny check licenses bans sources
