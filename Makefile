# One-command set-up: `make test` and `make demo` create .venv, install torch (CPU wheel) first,
# then nic with its dependencies.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-fast wheel-test decoder-wheel demo lint bench clean browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,serve,eval,onnx]'
	touch $(STAMP)

# The browser test (tests/test_serve_browser.py) drives Debian's chromium with its chromedriver;
# tests/test_metadata.py reads tags back with exiftool. Under CI (CI=true, as root) `make test`
# installs them first; elsewhere run `make browser` as root once, or those tests skip.
browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null && command -v exiftool >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver libimage-exiftool-perl >/dev/null; }

test: $(STAMP) $(if $(filter true 1,$(CI)),browser)
	$(BIN)/ruff check nic nic_decode tests benchmarks scripts lab
	$(BIN)/python -m pytest -q

# The inner loop: lint, then the tests marked `fast` (no process, no browser; tests/conftest.py
# fails one that starts a process). Under a minute on 2 cores; `make test` runs them too.
# One thread: with a core taken (a training run), torch's second thread waits on it and the
# tier takes ten times longer.
test-fast: lint
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m fast

# The wheel (`pip wheel . --no-deps`), installed into a fresh virtualenv in a temporary folder
# and used there; then the light decoder's wheel likewise, without torch (docs/DECODER.md).
# About two minutes, so apart from `make test`; .ci/run runs both.
wheel-test: $(STAMP)
	$(BIN)/python -m pytest -q -rA -m wheel tests/test_wheel.py tests/test_decoder_wheel.py

# The light decoder's wheel, dist/nic_decode-*.whl: nic_decode and its models, exported from
# nic's shipped and archived weights (scripts/build_decoder_wheel.py).
decoder-wheel: $(STAMP)
	PYTHONPATH=. $(BIN)/python scripts/build_decoder_wheel.py --out dist

demo: $(STAMP)
	$(BIN)/python scripts/demo.py assets/kodim23.png --out demo

lint: $(STAMP)
	$(BIN)/ruff check nic nic_decode tests benchmarks scripts lab

bench: $(STAMP)
	$(BIN)/python benchmarks/speed.py

clean:
	rm -rf $(VENV) demo dist .pytest_cache .ruff_cache
