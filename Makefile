# docvl: `make run` sets up and runs the main job on samples/; `make test` sets up and runs every test.
VENV ?= .venv
MODEL ?= Qwen/Qwen3-VL-8B-Instruct
BACKEND ?= transformers
OUT ?= out

.PHONY: setup run smoke test lint bench samples

setup:
	./scripts/setup.sh

run: setup
	mkdir -p $(OUT)
	$(VENV)/bin/docvl plan samples/invoice.pdf samples/report.pdf samples/deck.pptx --task summary --model $(MODEL)
	$(VENV)/bin/docvl run samples/invoice.pdf samples/report.pdf samples/deck.pptx --task summary \
		--backend $(BACKEND) --model $(MODEL) $(if $(BASE_URL),--base-url $(BASE_URL)) --out $(OUT)/summaries.jsonl

# Offline smoke test of the whole stack on a tiny random Qwen3-VL built locally. Random weights
# finish a reply only on the bounded decoder schema (DOCVL_DECODER_BOUNDS=1; never for real models).
smoke: setup
	$(VENV)/bin/docvl dev tiny-model .tiny-model
	DOCVL_DECODER_BOUNDS=1 $(MAKE) run MODEL=.tiny-model

test: setup lint
	$(VENV)/bin/pytest

lint:
	$(VENV)/bin/ruff check docvl pipeline flows schemas tests bench scripts
	$(VENV)/bin/ruff format --check docvl pipeline flows schemas tests bench scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

samples: setup
	$(VENV)/bin/python scripts/make_samples.py

# P1-P8 side by side (bench/RESULTS.md explains them); pypdfium2 for P1 comes with the dev extra.
bench: setup
	$(VENV)/bin/python bench/suite.py --out bench/RESULTS-suite.md
