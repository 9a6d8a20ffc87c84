# make run  : set up .venv (once) and run the whole pipeline locally on the embedded sample
# make test : set up .venv (once) and run the test suite (make test-fast: the in-process part only)
# make check: ruff (lint and format) and mypy over the Python, configured in pyproject.toml
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run check test test-fast test-containers test-browser cluster-up cluster-down test-cluster lint bench \
	clean

setup: $(STAMP)

# Re-installs only when the dependency files change, so `make setup` is idempotent.
$(STAMP): pyproject.toml requirements-nodeps.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	$(BIN)/python -m pip install -q --no-deps -r requirements-nodeps.txt
	touch $(STAMP)

run: setup
	$(BIN)/katib-digits pipeline run --local --data data/sample --out runs/make-run \
		--max-trials 3 --trial-max-rows 1000 --trial-epochs 2 --retrain-epochs 5

# The style and the types: ruff's lint rules, ruff's formatting (`ruff format` fixes it, `ruff check --fix` most
# lint findings) and mypy. All three run; any finding fails. Settings: pyproject.toml, [tool.ruff] and [tool.mypy].
check: setup
	@status=0; \
	$(BIN)/ruff check . || status=1; \
	$(BIN)/ruff format --check . || status=1; \
	$(BIN)/mypy || status=1; \
	exit $$status

test: setup oracle
	$(BIN)/python -m pytest -n 2 --dist loadfile

# seconds, not minutes: no real training, no kfp.local run, no extra processes
# -m replaces addopts' marker filter, so the tiers' markers are excluded here again.
test-fast: setup
	$(BIN)/python -m pytest -n 2 -m "not slow and not process and not containers and not browser and not cluster"

# The container tier (root, Debian): podman from Debian's packages, a debootstrap base image, our
# Dockerfile built on it, then the trial, the linter and the whole pipeline run in that image.
PODMAN_SOCKET ?= /run/katib-digits-podman.sock
test-containers: setup
	SOCKET=$(PODMAN_SOCKET) bash scripts/containers.sh all
	DOCKER_HOST=unix://$(PODMAN_SOCKET) $(BIN)/python -m pytest -m containers tests/containers; \
		status=$$?; SOCKET=$(PODMAN_SOCKET) bash scripts/containers.sh stop; exit $$status

# The browser tier: the drawing page of `katib-digits serve` in Debian's headless chromium, driven by
# Playwright (never its own browser downloads); chromium is installed with apt when missing (root, Debian).
test-browser: setup
	command -v chromium >/dev/null || { apt-get update -qq \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	$(BIN)/python -m pytest -m browser tests/serving

# The Katib box (root, Debian): a single-node Kubernetes built from upstream sources with Katib v0.19.0 from its
# own manifests, in a network namespace of its own (docs/cluster.md, "The box"). The first `cluster-up` builds
# Kubernetes, etcd, CoreDNS and every image (tens of minutes, cached under ~/.cache/katib-digits/cluster and in
# podman); the next takes about a minute. `scripts/cluster/kubectl` talks to it.
cluster-up: setup
	bash scripts/cluster/box.sh up

cluster-down:
	bash scripts/cluster/box.sh down

# Every shipped Experiment on Katib (brings the box up when it is down; leaves it up: make cluster-down).
test-cluster: cluster-up
	$(BIN)/python -m pytest -m cluster tests/box

# The Katib oracle (tests/oracle): Katib v0.19.0's own Go code behind a JSON-lines pipe.
# `go build` is incremental; a cold build (empty Go caches) takes minutes. PHONY: oracle/ is a folder.
.PHONY: oracle
oracle:
	cd oracle && go build -buildvcs=false -o bin/katib-oracle .

lint: setup
	$(BIN)/katib-digits lint experiments/*.yaml

# Every section of the bench package (`python -m bench --help` lists them), run from the repository root.
bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf runs local_outputs .pytest_cache .mypy_cache .ruff_cache
