# Set-up is part of every target: a fresh machine needs only Python 3.10+ and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# bittensor==10.5.0 (the legacy SDK axon and dendrite) in a virtualenv of its own: see `make bench`.
LEGACY_VENV  := $(VENV)/legacy
LEGACY_STAMP := $(LEGACY_VENV)/.installed
GEN    := axon_grpc/_generated/axon/v1/axon_pb2.py
NODE_CLIENT := examples/node-client
NODE_DEPS   := $(NODE_CLIENT)/node_modules/.package-lock.json
TS_KIT      := clients/typescript
TS_KIT_DEPS := $(TS_KIT)/node_modules/.package-lock.json

.PHONY: demo test check docs fuzz proto node-deps ts-kit-deps redis-server fleet-tools cpp-tools go-tools clean fleet

# The runtime with the Envoy edge (what `make demo` needs), then the test, docs and Redis extras.
BASE_STAMP := $(VENV)/.base-installed

$(BASE_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -e '.[edge]'  # bytecode on first import: a quicker first demo
	touch $(BASE_STAMP)

$(STAMP): $(BASE_STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(GEN): $(BASE_STAMP) $(wildcard proto/axon/v1/*.proto) scripts/gen_protos.py
	$(PY) scripts/gen_protos.py

proto: $(GEN)

# The Node.js interop client; its test is skipped (with the reason) where npm is missing.
$(NODE_DEPS): $(NODE_CLIENT)/package.json $(NODE_CLIENT)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix $(NODE_CLIENT) --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: the Node.js interop test will be skipped"; fi

node-deps: $(NODE_DEPS)

# The TypeScript client kit's packages (its test builds it with tsc and calls an axon); skipped with
# the reason where npm is missing (Node.js 20.19+ is not in Debian's packages), failed under CI.
$(TS_KIT_DEPS): $(TS_KIT)/package.json $(TS_KIT)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix $(TS_KIT) --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: the TypeScript kit's tests will be skipped"; fi

ts-kit-deps: $(TS_KIT_DEPS)

# The tests start their own redis-server (a free loopback port, no persistence) and stop it.
# Installed from Debian's packages when missing (CI runs as root); elsewhere the Redis tests
# are skipped with the reason, except under CI, where they fail.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing redis-server"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
				apt-get install -y -qq --no-install-recommends redis-server >/dev/null; \
		else echo "redis-server not found (apt-get install redis-server): the Redis tests will be skipped"; fi; }

# The fleet's hosts are network namespaces (ip netns, veth, a bridge: iproute2) and its Redis runs
# as primary, replicas and Sentinels (redis-server --sentinel) or as a Cluster (redis-cli --cluster).
# Installed from Debian's packages when missing (as root); the fleet test skips, with the reason,
# only where network namespaces cannot be made.
fleet-tools: redis-server
	@command -v ip >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing iproute2 redis-tools"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
				apt-get install -y -qq --no-install-recommends iproute2 redis-tools >/dev/null; \
		else echo "ip or redis-cli not found (apt-get install iproute2 redis-tools): the fleet test will be skipped"; fi; }

# protoc, grpc_cpp_plugin and the grpc++ headers: the C++ codegen command of
# `scripts/gen_protos.py --print` is run and its output compiled by the suite
# (tests/test_codegen_languages.py), skipped with the reason where they are missing.
cpp-tools:
	@command -v grpc_cpp_plugin >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing protobuf-compiler protobuf-compiler-grpc libgrpc++-dev"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				--no-install-recommends protobuf-compiler protobuf-compiler-grpc libgrpc++-dev >/dev/null \
				|| echo "could not install the C++ gRPC tools: the C++ codegen test will be skipped"; \
		else echo "grpc_cpp_plugin not found: the C++ codegen test will be skipped"; fi; }

# Go, protoc-gen-go(-grpc), grpc-go's and x/crypto's sources from Debian's packages: the suite
# generates Go code with the printed command and builds a client and the Go kit (clients/go)
# against them in GOPATH mode (no module download), skipped with the reason where they are missing.
GO_SOURCES := /usr/share/gocode/src
go-tools:
	@command -v protoc-gen-go-grpc >/dev/null 2>&1 && command -v go >/dev/null 2>&1 \
		&& [ -d $(GO_SOURCES)/google.golang.org/grpc ] && [ -d $(GO_SOURCES)/golang.org/x/crypto/sha3 ] || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing golang-go protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev golang-golang-x-crypto-dev"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
				golang-go protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev golang-google-protobuf-dev \
				golang-golang-x-crypto-dev >/dev/null \
				|| echo "could not install the Go tools: the Go client test will be skipped"; \
		else echo "go or protoc-gen-go-grpc not found: the Go client tests will be skipped"; fi; }

# `axon-grpc serve` on Envoy answering a signed gRPC call, a legacy HTTP call and a /metrics scrape
# on one port; where Envoy cannot run, it says why and shows the in-process servers.
demo: $(BASE_STAMP) $(GEN)
	$(VENV)/bin/axon-grpc demo

# The Dendrite's tests against the real SDK 10.5.0 axon use $(LEGACY_VENV) (built once, ~40 s;
# skipped with the reason where it cannot be installed).
test: check docs $(STAMP) $(GEN) node-deps ts-kit-deps redis-server fleet-tools cpp-tools go-tools $(LEGACY_STAMP)
	$(PY) -m pytest -q

# The documentation site (mkdocs.yml, docs/) into site/; --strict fails on a broken link or reference.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# The gates a maintainer expects, run by `make test`: lint, format and types.
check: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy axon_grpc bridge bench

# The fuzz suite at length (`make test` runs 60 examples per property); FUZZ_EXAMPLES sets how many.
FUZZ_EXAMPLES ?= 2000
fuzz: $(STAMP) $(GEN)
	AXON_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q tests/test_fuzz.py

clean:
	rm -rf $(VENV) axon_grpc/_generated .pytest_cache site $(NODE_CLIENT)/node_modules $(TS_KIT)/node_modules

# `make bench`: the benchmark suite (docs/BENCHMARKS.md; `python -m bench`, the bench/ folder): this axon's gRPC path (one process, and
# two workers with the Redis nonce store) and HTTP bridge beside a bare grpc.aio echo, a verified
# echo and the legacy Bittensor SDK 10.5.0 axon. That SDK conflicts with the test extra's (11.x),
# so it gets its own virtualenv inside .venv (about 40 s, once); where it cannot be installed, the
# bench skips the legacy target and says so. The two-worker target starts its own redis-server
# (installed as for the tests; skipped with the reason where missing).
# Options go through BENCH_ARGS, e.g. make bench BENCH_ARGS='--concurrency 1,64 --duration 10'.
BENCH_STAMP  := $(VENV)/.bench-installed
BENCH_ARGS   ?=

.PHONY: bench stress

# `make stress`: floods against the Envoy edge on 127.0.0.1 while a client calls it (issue 12's
# "Under attack"), bounded in count and time; prints a table. Options: STRESS_ARGS='--scale 0.1'.
STRESS_ARGS ?=

stress: $(STAMP) $(GEN)
	$(PY) scripts/stress_edge.py $(STRESS_ARGS)

# `make fleet`: two hosts behind `axon-grpc front`, Redis with Sentinel and a Redis Cluster, each in
# a network namespace of its own (root), with faults under load: a host SIGKILLed and one drained,
# the Redis primary and a Cluster primary SIGKILLed, every accepted request replayed; prints a table
# (docs/FLEET.md). About two and a half minutes. Options: FLEET_ARGS='--callers 8'.
FLEET_ARGS ?=

fleet: $(STAMP) $(GEN) fleet-tools
	$(PY) scripts/fleet_faults.py $(FLEET_ARGS)

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

$(LEGACY_STAMP):
	@echo "building $(LEGACY_VENV) with bittensor==10.5.0 (the legacy reference axon)"
	@{ $(PYTHON) -m venv $(LEGACY_VENV) \
		&& $(LEGACY_VENV)/bin/python -m pip install --quiet --upgrade pip \
		&& $(LEGACY_VENV)/bin/python -m pip install --quiet 'bittensor==10.5.0' \
		&& touch $(LEGACY_STAMP); } \
		|| echo "could not install bittensor==10.5.0 in $(LEGACY_VENV): the bench and the tests skip the legacy SDK"

bench: $(BENCH_STAMP) $(GEN) $(LEGACY_STAMP) redis-server
	$(PY) -m bench --legacy-python $(LEGACY_VENV)/bin/python $(BENCH_ARGS)
