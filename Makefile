# netreach task runner. `make help` lists the targets.
.DEFAULT_GOAL := help
CARGO ?= cargo
PREFIX ?= /usr/local

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-10s %s\n", $$1, $$2}'

test: ## Every check and test: formatting, clippy, the whole test suite, then a leftover check (what CI runs; as root).
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	# The DaemonSet image's build: no demo, no testbed.
	$(CARGO) clippy -p netreach --bin netreach --no-default-features --locked -- -D warnings
	$(CARGO) test --workspace --locked
	./scripts/chart-test.sh
	./scripts/alerts-test.sh
	$(CARGO) run -q --locked -p testbed --bin testbed-cleanup -- --check
	./scripts/check-leftovers.sh

clean-testbed: ## Remove what a crashed testbed run left behind (netns, cgroups, processes).
	$(CARGO) run -q --locked -p testbed --bin testbed-cleanup

build: ## Build the netreach binary (release; `make build FEATURES=--no-default-features` leaves out the demo, as the image does).
	$(CARGO) build --release --locked -p netreach $(FEATURES)

bench: ## Run the policy-engine benchmarks (criterion).
	$(CARGO) bench -p netreach --bench policy

generate: ## Regenerate committed artefacts (the CRD YAML in the chart).
	$(CARGO) run -q -p netreach -- crd > charts/netreach/crds/netreach.dev_crds.yaml

demo: ## The main job: one round of `netreach demo` on the built-in runbook scenario (as root).
	$(CARGO) run -q --release --locked -p netreach -- demo --once

example: ## Explain a blocked flow of the shipped offline example.
	$(CARGO) run -q --release -p netreach -- explain -f examples/shop --from shop/frontend --to payments/gateway --port 8443

bench-memory: ## Where the agent's memory goes at 10,000 pairs: heap per structure, per pod and per pair.
	$(CARGO) bench -p netreach --bench memory

demo-rss: ## RSS of `netreach demo` on the 100 x 100 scenario after three rounds, and where it is (as root).
	$(CARGO) build --release --locked -p netreach
	./scripts/demo-rss.sh

bench-agent-rss: ## RSS of the DaemonSet binary (`netreach agent`, profile daemonset, no demo feature) at 9,900 pairs on one testbed node, as shipped and with --pair-metrics all (as root).
	$(CARGO) build --profile daemonset --locked -p netreach --no-default-features
	AGENT_BIN=$(CURDIR)/target/daemonset/netreach $(CARGO) bench -p netreach --bench agent_rss

bench-probe: ## Cost of one TCP probe: netreach vs a plain connect loop, nc and blackbox_exporter (as root).
	$(CARGO) bench -p netreach --bench probe_cost

bench-matrix: ## Offline JSON matrix, whole process: this build vs the baseline (1,000 pods) and vs nca (200 pods).
	./scripts/bench-matrix.sh

bench-whatif: ## whatif on the 1,000-pod x 200-policy dump with one policy edited, whole process (target: under 3 s).
	$(CARGO) bench -q --locked -p netreach --bench matrix_json -- --only d

install: ## Install netreach into $(PREFIX)/bin, with the kubectl plugin link kubectl-netreach.
	$(CARGO) build --release --locked -p netreach
	install -D -m 0755 target/release/netreach $(DESTDIR)$(PREFIX)/bin/netreach
	ln -sf netreach $(DESTDIR)$(PREFIX)/bin/kubectl-netreach

.PHONY: install
.PHONY: help test clean-testbed build bench bench-agent-rss bench-memory bench-probe bench-matrix bench-whatif demo-rss generate demo example

alerts-test: ## Alert rules (promtool check + unit tests), dashboard checks, live Prometheus on the demo (as root).
	./scripts/alerts-test.sh

.PHONY: alerts-test

chart-test: ## Helm chart render/lint/validate, security and RBAC asserts, hadolint, capability proof (as root).
	./scripts/chart-test.sh

.PHONY: chart-test
