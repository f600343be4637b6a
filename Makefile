# kafkette — the two commands a new user needs are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test

.PHONY: run test unit integration generate bench bench-console clean container-test sim sim-replication cluster chaos fuzz soak

$(STAMP): pyproject.toml
	@# Debian's python3 needs python3-venv for `-m venv`; install it when we can.
	$(PYTHON) -m venv $(VENV) || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	@# An editable install compiles no bytecode: without it every broker start compiles
	@# kafkette from source (~120 ms more to the first answer).
	$(PY) -m compileall -q kafkette >/dev/null
	touch $@

$(TSTAMP): $(STAMP) pyproject.toml integration/kafkajs/package-lock.json
	$(PY) -m pip install -q -e '.[test]'
	@# kcat (librdkafka 2.0.2 on Debian 12) is an extra client for the integration
	@# tests; its tests skip when it cannot be installed.
	@command -v kcat >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && apt-get install -y -qq kcat >/dev/null) || echo "kcat not installed: its tests will skip"; }
	@# kafkajs (a Node.js client, pinned by integration/kafkajs/package-lock.json) for the
	@# integration tests; they skip when Node.js and npm are missing.
	@if command -v npm >/dev/null 2>&1; then npm ci --prefix integration/kafkajs --no-audit --no-fund --silent \
	  || echo "npm ci failed: the kafkajs tests will skip"; else echo "npm not found: the kafkajs tests will skip"; fi
	@# chromium + chromedriver: the console's browser tests (integration/test_console_browser.py);
	@# they skip when no browser can be installed.
	@command -v chromedriver >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) || echo "chromium not installed: the console browser tests will skip"; }
	@# iptables: the fault campaign's network partitions (kafkette/chaos/netns.py); it
	@# runs without partitions when it cannot be installed.
	@command -v iptables >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && apt-get install -y -qq iptables >/dev/null) || echo "iptables not installed: no network partitions in the fault campaign"; }
	touch $@

## Start one broker on 127.0.0.1:9092 with data in ./kafkette-data, console at http://127.0.0.1:8080/
## and its Schema Registry at http://127.0.0.1:8081
run: $(STAMP)
	$(VENV)/bin/kafkette serve --set log.dirs=./kafkette-data --set console.listener=127.0.0.1:8080 \
	  --set schema.registry.listener=127.0.0.1:8081

## Start a local cluster: make cluster BROKERS=3 (127.0.0.1:9092.., data in ./kafkette-cluster,
## console of node 1 at http://127.0.0.1:8080/; Ctrl-C stops it)
BROKERS ?= 3
cluster: $(STAMP)
	$(VENV)/bin/kafkette cluster --brokers $(BROKERS) --dir ./kafkette-cluster --console 127.0.0.1:8080

## Run the unit and integration tests
test: $(TSTAMP)
	$(PY) -m pytest -q tests integration

unit: $(TSTAMP)
	$(PY) -m pytest -q tests

integration: $(TSTAMP)
	$(PY) -m pytest -q integration

## Deterministic simulation of the Raft controller quorum: make sim SEEDS=N
SEEDS ?= 10000
sim: $(STAMP)
	$(PY) -m kafkette.controller.raft.sim --seeds $(SEEDS)

## Deterministic simulation of partition replication (real replica manager, logs and
## controller; seeded network and faults): make sim-replication SEEDS=N STEPS=K
STEPS ?= 1500
sim-replication: $(STAMP)
	$(PY) -m kafkette.broker.replication_sim --seeds $(SEEDS) --steps $(STEPS)

## Regenerate kafkette/protocol/messages from protocol_specs/*.yaml
generate: $(STAMP)
	$(PY) -m kafkette.protocol.generator

clean:
	rm -rf $(VENV) kafkette-data kafkette-cluster

## Benchmarks (not part of `make test`): kafkette vs librdkafka's mock cluster, same run;
## transactions: transactional produce (100 records per commit) vs idempotent on one broker,
## commit_transaction p50/p99, read_committed vs read_uncommitted consume (TXN_RECORDS=N);
## replication rows on a real 3-node cluster (produce RF3 acks=all vs RF1 acks=1, follower
## lag p50/p99/max in records and ms, failover after kill -9 of a leader, lost/dup records);
## single-node produce/consume against the last commit before replication (3dc167e, via
## git archive; BENCH_ARGS="--base-rev REV", "--base-rev none" skips it); the built-in Schema
## Registry's start-up and RSS on vs off, register / GET latency (--only registry).
## Then the console's page load times with 10,000 partitions (bench-results-console.json).
## Tables on stdout, JSON in bench-results.json; e.g. `make bench REPEAT=1 BENCH_ARGS="--only replication,base"`
bench: $(TSTAMP)
	$(PY) -m kafkette.bench --records $${RECORDS:-1000000} --repeat $${REPEAT:-3} \
	  $${TXN_RECORDS:+--txn-records $$TXN_RECORDS} --json $${BENCH_JSON:-bench-results.json} $(BENCH_ARGS)
	@# the console's page load times with 10,000 partitions (CONSOLE_BENCH=0 skips them)
	@[ "$${CONSOLE_BENCH:-1}" = 0 ] || $(PY) -m kafkette.bench.console --partitions $${PARTITIONS:-10000} \
	  --json bench-results-console.json

## Console page load times with 10,000 partitions (kafkette.bench.console; HTTP and, when
## chromium is installed, headless Chromium): make bench-console PARTITIONS=N
bench-console: $(TSTAMP)
	$(PY) -m kafkette.bench.console --partitions $${PARTITIONS:-10000} --json $${BENCH_JSON:-bench-results-console.json}

## Replication fault campaign (not part of `make test`, which runs a short fixed-seed one):
## kill -9, SIGSTOP, controller kills and network partitions on a 3-node cluster, then a
## check for lost and duplicated records, and (TXN transactional producers, 0: none) for
## lost committed, aborted-read and torn transactions; e.g. `make chaos SEED=7 ROUNDS=40`.
## Summary on stdout, JSON in chaos-results.json; exits non-zero on any violation.
SEED   ?= 1
ROUNDS ?= 30
TXN    ?= 2
chaos: $(TSTAMP)
	@command -v iptables >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && apt-get install -y -qq iptables >/dev/null) || echo "iptables not installed: no network partitions"; }
	$(PY) -m kafkette.chaos --seed $(SEED) --rounds $(ROUNDS) --json $${CHAOS_JSON:-chaos-results.json} \
	  --transactional-producers $(TXN) $(CHAOS_ARGS)

## Protocol fuzzing (not part of `make test`, which runs a fixed-seed 10^4 frames):
## structure-aware and capture-mutated frames against one broker+controller node, beside
## a healthy client; e.g. `make fuzz FRAMES=100000 FUZZ_SEED=3`. Exits non-zero on a
## finding (seed, frame index and hex printed; `python -m kafkette.fuzz --replay S:I`).
FRAMES    ?= 1000000
FUZZ_SEED ?= 1
fuzz: $(STAMP)
	$(PY) -m kafkette.fuzz --frames $(FRAMES) --seed $(FUZZ_SEED) --json $${FUZZ_JSON:-fuzz-results.json} $(FUZZ_ARGS)

## Soak (not part of `make test`, which runs a two-minute one): one broker process for
## DURATION seconds under idempotent producers (a plain, a short-retention and a compacted
## topic), a consumer group whose members leave and join every 20-30 s, and admin calls;
## then no acknowledged record lost or duplicated, each compacted key's latest value the
## last acknowledged one, and the broker's RSS, fds and threads flat (samples every 10 s).
## samples.csv and summary.json in SOAK_OUT; exits non-zero on a failure;
## e.g. `make soak DURATION=900 SOAK_ARGS="--rate 100 --fds 10"`.
DURATION ?= 3600
soak: $(TSTAMP)
	$(PY) -m kafkette.soak --duration $(DURATION) --out $${SOAK_OUT:-soak-results} $(SOAK_ARGS)

## Build the container image with podman and smoke-test it (CI runs this after `make test`)
container-test: $(TSTAMP)
	bash docker/container_test.sh
