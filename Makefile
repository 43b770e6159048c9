# The two commands a new user needs: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The Gemini CLI, pinned (as GEMINI_CLI_VERSION in src/agentyard/runtimes/acp_gemini.py).
GEMINI_CLI_VERSION := 0.61.0
NODE_DIR := $(VENV)/node
GEMINI_STAMP := $(NODE_DIR)/.gemini-cli-$(GEMINI_CLI_VERSION)

.PHONY: install sandbox browser gemini serve test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,postgres]'
	touch $(STAMP)

install: $(STAMP) sandbox browser gemini

# The gemini agent (ACP): @google/gemini-cli installed with npm into the virtualenv (never
# globally; the sandbox sees the virtualenv read-only), when Node.js >= 20 is present.
gemini: $(STAMP)
	@if [ -f $(GEMINI_STAMP) ]; then :; \
	elif ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then \
	  echo "Node.js >= 20 (with npm) is not installed: the gemini agent will be unavailable"; \
	elif [ "$$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then \
	  echo "Node.js $$(node --version) is older than 20: the gemini agent will be unavailable"; \
	else \
	  echo "installing @google/gemini-cli@$(GEMINI_CLI_VERSION) into $(NODE_DIR)"; \
	  mkdir -p $(NODE_DIR) && \
	  npm install --prefix $(NODE_DIR) --no-save --no-audit --no-fund --ignore-scripts \
	    --loglevel=error @google/gemini-cli@$(GEMINI_CLI_VERSION) && \
	  touch $(GEMINI_STAMP); \
	fi

# Agents run in a bubblewrap sandbox; as root on Debian/Ubuntu it is installed here,
# otherwise the one command to run is printed (the server then runs agents unconfined, loudly).
sandbox:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing bubblewrap (agent sandbox)"; \
	    (apt-get install -y -q bubblewrap >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null && apt-get install -y -q bubblewrap >/dev/null)) || \
	    echo "could not install bubblewrap: run 'apt-get install bubblewrap'"; \
	  else \
	    echo "bubblewrap is not installed: agents will run unconfined until you run"; \
	    echo "  sudo apt-get install bubblewrap   (or your system's bubblewrap package)"; \
	  fi; \
	}

# The dashboard's browser tests drive Debian's chromium with Playwright (never a downloaded
# browser); as root on Debian/Ubuntu it is installed here, otherwise the command is printed
# (and those tests fail, saying so).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (dashboard browser tests)"; \
	    (apt-get install -y -q chromium >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)) || \
	    echo "could not install chromium: run 'apt-get install chromium'"; \
	  else \
	    echo "chromium is not installed: the dashboard's browser tests need"; \
	    echo "  sudo apt-get install chromium"; \
	  fi; \
	}

serve: install
	$(BIN)/agentyard migrate
	$(BIN)/agentyard serve

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install
	$(BIN)/mypy

# The suite runs in one process: its end-to-end tests time real agents, signals and sweeps,
# and two modules at once on a 2-core machine made some of them miss their bounds.
# PYTEST_WORKERS=2 runs it on two workers (pytest-xdist, a test module to each at a time).
PYTEST_WORKERS ?= 0
unit: install
	$(BIN)/pytest $(if $(filter-out 0,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist loadfile)

test: lint typecheck unit

# Every row of the performance table: the Claude task and per-run cost, the queue drain, and
# the per-request/SSE/RSS rows (bench/api.py).
# wrk loads the status endpoint (installed here as root on Debian/Ubuntu; without it an
# async client does, and the client is then the bottleneck).
bench: install
	@command -v wrk >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -q wrk >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null)) || \
	    echo "could not install wrk: bench/api.py falls back to an async client"; \
	  else \
	    echo "wrk is not installed: bench/api.py falls back to an async client"; \
	  fi; \
	}
	$(BIN)/python bench/lifecycle.py
	$(BIN)/python bench/runs.py
	$(BIN)/python bench/api.py

clean:
	rm -rf $(VENV) .agentyard .pytest_cache .mypy_cache .ruff_cache
