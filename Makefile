# The two commands a new user needs: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install sandbox serve test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,postgres]'
	touch $(STAMP)

install: $(STAMP) sandbox

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

serve: install
	$(BIN)/agentyard migrate
	$(BIN)/agentyard serve

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest

test: lint typecheck unit

bench: install
	$(BIN)/python bench/lifecycle.py

clean:
	rm -rf $(VENV) .agentyard .pytest_cache .mypy_cache .ruff_cache
