# Two commands: `make demo` and `make test`. Both create .venv on first use and reuse it after.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CHROMIUM ?= /usr/bin/chromium
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: demo test test-fast lint venv dev chromium shapes-model shapes-library bench bench-gpu clean

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "promptswitch needs Python 3.11+ (numpy 2.4, av 18)"'
	$(PYTHON) -m venv $(VENV)

# Stamps re-run pip only when a requirements file changes.
# The checkout installs itself (editable, no dependencies of its own) so bench/ and tools import it as is.
$(VENV)/.runtime-installed: requirements.txt pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -e .
	@touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -r requirements-dev.txt
	$(PIP) install -q --no-deps -e .
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

lint: dev
	$(VENV)/bin/ruff check .

test: dev chromium lint
	$(PY) -m pytest $(PYTEST_ARGS)

# Skip the slow end-to-end tests (CI always runs them all).
test-fast: dev lint
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# The bundled offline demo model: Prompt Switch and its mean-pooling twin, the same recipe with and
# without prompts, on generated moving-shapes clips; each runs the first 1,500 steps of the preset's
# 3,000-step schedule (0.6 s/step on 2 idle cores: about 15 min each; `--resume` continues a run),
# keeps its best validation checkpoint, and is evaluated on 500 clips of an unseen seed (build/*.json).
SHAPES_EVAL := --dataset moving-shapes --seed 123 --size 500
shapes-model: dev
	# the commands behind the bundled model and its twin (assets/models/moving-shapes/README.md)
	$(PY) -m training.train --preset shapes --stop-after 700 --out build/shapes-promptswitch --threads 2
	$(PY) -m training.train --preset shapes --stop-after 500 --no-prompts --out build/shapes-meanpool --threads 2
	rm -rf assets/models/moving-shapes && mkdir -p assets/models && cp -r build/shapes-promptswitch/best assets/models/moving-shapes
	$(PY) -m training.evaluate --model bundled:moving-shapes $(SHAPES_EVAL) --json build/shapes-promptswitch-eval.json
	$(PY) -m training.evaluate --model build/shapes-meanpool/best $(SHAPES_EVAL) --json build/shapes-meanpool-eval.json

# The bundled library: 36 generated clips (3 s, 160x120) indexed with the bundled model.
shapes-library: dev
	rm -rf assets/shapes-videos assets/library-shapes
	$(PY) -c "from training.shapes import write_dataset; write_dataset('assets/shapes-videos', seed=2026, num_train=0, num_test=36, size=(160, 120), seconds=3.0, fps=12)"
	$(PY) -m precompute assets/shapes-videos/MSRVTT_data.json --out assets/library-shapes --model bundled:moving-shapes --workers 0 --no-progress --portable

bench: dev
	$(PY) bench/encode.py
	$(PY) bench/query.py
	$(PY) bench/precompute.py

# Encode and precompute on CUDA (fp16, tuned batch, cores - 1 decoders; 10 s 240p and 720p clips).
# Without a GPU it says "no CUDA: skipped" and runs a tiny CPU smoke test of the script.
bench-gpu: venv
	$(PY) bench/gpu.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
