# kubeforge — see README.md. Two entry points matter:
#   make lab    the seed plan on this machine: lab hosts, init on master01, join node01/node02
#   make test   everything CI runs (unit, fuzz, benchmarks-as-tests, e2e on lab hosts)
#   (make conformance: the upstream conformance suite against the make lab cluster)
SHELL := /bin/bash
BIN   ?= _output/kubeforge
LAB_DIR ?= /var/lib/kubeforge/lab

.PHONY: build deps bundle lab lab-down test unit e2e fuzz bench vet conformance

build:
	@mkdir -p _output
	CGO_ENABLED=0 go build -trimpath -o $(BIN) ./cmd/kubeforge

deps:
	@hack/install-deps.sh

bundle: deps
	@hack/build-bundle.sh >/dev/null

lab: deps bundle build
	hack/lab-cluster.sh --dir $(LAB_DIR)
	$(BIN) lab status --dir $(LAB_DIR)

# The upstream conformance suite against the `make lab` cluster (docs/conformance.md).
# CONFORMANCE_ARGS='--focus (DNS|Service|Networking).*\[Conformance\]' runs a subset.
conformance: deps bundle build
	hack/conformance.sh --dir $(LAB_DIR) $(CONFORMANCE_ARGS)

lab-down: build
	$(BIN) lab down --dir $(LAB_DIR)

vet:
	gofmt -l $$(git ls-files '*.go') | (! grep .)
	go vet ./...

test:
	@hack/test.sh

bench: deps bundle build
	@hack/bench-lab.sh
