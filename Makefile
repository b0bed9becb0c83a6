# The two commands of the README. Both create the environment themselves and run offline
# (package registries aside).
#   make demo   install, then build the embedded organism and print the toy-EM table
#   make test   install, then lint, type-check and run every test (Python, front end, browser)
# Installing needs Node.js >= 20 and npm (the widgets' TypeScript is bundled into the package);
# the browser tests need Debian's Chromium, which `make test` installs with apt-get if missing.
VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python
# Without a GPU, take the CPU build of torch (a plain `torch` would pull a multi-GB CUDA build).
# Override with e.g. `make test TORCH_SPEC='torch>=2.2'` on a machine with CUDA.
TORCH_SPEC ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo 'torch>=2.2,<3' || echo 'torch==2.13.0')

# pytest workers (pytest-xdist): each test module runs on one worker (tests/conftest.py says how
# the event-loop tests keep their order); organism builds are shared through the test cache (one
# build per recipe, under a lock)
PYTEST_WORKERS ?= 2

# The build back end's requirements ([build-system] in pyproject.toml), installed into the venv so
# the editable install builds there: an isolated build environment would be a second JupyterLab
# in a temporary folder, and a CI machine can be short of disk (seen: "No space left on device");
# `editables` is what hatchling asks for on top of them for an editable build.
export BUILD_REQUIRES = import sys; tomllib = __import__("tomllib" if sys.version_info >= (3, 11) else "pip._vendor.tomli"); print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"])

.PHONY: install demo test lint js chromium clean

$(VENV)/.installed: pyproject.toml Makefile package.json package-lock.json extension/package.json
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	npm ci --no-audit --no-fund
	$(PY) -m pip install -q $$($(PY) -c "$$BUILD_REQUIRES") editables
	$(PY) -m pip install -q --no-build-isolation -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m workbench demo

lint: install
	$(PY) -m ruff check workbench tests benchmarks
	$(PY) -m mypy

# the widgets' bundles (workbench/widgets/static/*.js) and the Workbench panel (the prebuilt lab
# extension, workbench/labextension/), rebuilt from extension/ on every test run; the venv's
# JupyterLab finds the panel through a link (a wheel ships it as shared data instead)
js: install
	npm run build
	mkdir -p $(VENV)/share/jupyter/labextensions/@workbench
	ln -sfn "$(CURDIR)/workbench/labextension" $(VENV)/share/jupyter/labextensions/@workbench/extension

# Debian's Chromium for the real-browser tests (never a downloaded browser)
chromium:
	@command -v chromium >/dev/null 2>&1 || apt-get install -y -q chromium \
		|| (apt-get update -q && apt-get install -y -q chromium)

# One pytest process for every Python test, browser and server tests included (tests/conftest.py
# runs pytest-jupyter's tests before Playwright's loop starts); organism builds are cached for the
# session and its subprocesses in .test-cache/ (`rm -rf .test-cache` to time a cold run).
test: lint js chromium
	npm test
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache node_modules workbench/widgets/static
