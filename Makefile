# Two commands: `make demo` and `make test`. Both create .venv on first use and reuse it after.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CHROMIUM ?= /usr/bin/chromium
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: demo test test-fast venv dev chromium shapes-model shapes-library bench clean

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "promptswitch needs Python 3.10+"'
	$(PYTHON) -m venv $(VENV)

# Stamps re-run pip only when a requirements file changes.
$(VENV)/.runtime-installed: requirements.txt | $(VENV)/bin/python
	$(PIP) install -q -r requirements.txt
	@touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(PIP) install -q -r requirements-dev.txt
	@touch $@ $(VENV)/.runtime-installed

venv: $(VENV)/.runtime-installed
dev: $(VENV)/.dev-installed

demo: venv
	$(PY) app.py $(ARGS)

# The browser test drives Debian's Chromium; install it when missing and we are root (CI is).
chromium:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian chromium for the browser test"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "WARNING: could not install chromium"; \
	  else echo "WARNING: $(CHROMIUM) missing and not root: the browser test will be skipped"; fi; \
	fi

test: dev chromium
	$(PY) -m pytest $(PYTEST_ARGS)

# Skip the slow end-to-end tests (CI always runs them all).
test-fast: dev
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# Train the bundled offline demo model on generated moving-shapes clips (about 30 min on 2 cores).
shapes-model: dev
	$(PY) -m model.train --dataset moving-shapes --preset shapes --out assets/models/moving-shapes

shapes-library: dev
	$(PY) -m precompute.bundled

bench: dev
	$(PY) bench/encode.py
	$(PY) bench/query.py
	$(PY) bench/precompute.py

clean:
	rm -rf $(VENV) .pytest_cache
