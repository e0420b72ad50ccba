# Two entry points, both creating and using .venv at the repository root:
#   make demo   ingest data/, serve, ask one question over REST, print the cited answer
#   make test   install everything and run the test suite (SQLite and a real PostgreSQL)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ifeq ($(shell uname -m),x86_64)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
endif

.PHONY: demo test install bench eval clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	# The CPU wheel of torch first, so no resolver pulls a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	# llama-cpp-python builds llama.cpp from source; -march=native on an Intel Xeon with AMX produced
	# garbage tokens and a segfault in the server, so it is built for AVX2, which every x86-64 server of
	# the last decade runs (docs/decisions.md, "The local generator's build").
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install -q -e '.[dev,local,ray]'
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
