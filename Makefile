# Two entry points, both creating and using .venv at the repository root:
#   make demo   ingest data/, serve, ask one question over REST, print the cited answer
#   make test   install everything and run the test suite (SQLite and a real PostgreSQL)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test install bench eval clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	# The CPU wheel of torch first, so no resolver pulls a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,local,ray]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false $(VENV)/bin/rag demo

test: $(STAMP)
	scripts/test.sh

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/rag bench --out docs/benchmarks

clean:
	rm -rf .rag .pytest_cache
