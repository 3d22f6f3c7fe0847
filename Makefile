# Two entry points: `make run` (set up, then serve the bundled article) and `make test`.
PYTHON ?= python3.11
# bash with pipefail: a failing command piped into tee fails the target.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint screenshot eval eval-runtimes bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU build first: an unpinned torch would pull a CUDA build of several GB.
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/qa serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: $(STAMP) lint
	bash .ci/chromium
	bash .ci/fonts
	$(BIN)/python -m pytest

# README's picture of the Ask tab, taken by the browser test that checks that page; `make test` leaves it alone.
screenshot: $(STAMP)
	bash .ci/chromium
	QA_SCREENSHOT=$(CURDIR)/docs/screenshot.png QA_REQUIRE_BROWSER=1 \
		$(BIN)/python -m pytest tests/test_browser.py -k test_ask_shows_cards_with_the_answer_marked

bench: $(STAMP)
	$(BIN)/python -m bench

# The quality figures in README (about an hour on 2 cores); the data is read where it lies.
DATA ?= ../shared/data
# Pinned to the torch runtime: these are the figures the other runtimes are compared with.
eval: $(STAMP)
	$(BIN)/qa eval --squad $(DATA)/squad-v1.1-dev/dev-v1.1.json --split-at 24 --runtime torch -q \
		-o bench/results/eval-squad | tee bench/results/eval-squad.md
	$(BIN)/qa eval --squad $(DATA)/squad-v1.1-dev/dev-v1.1.json --split-at 24 --passage-vectors sentence-mean \
		--runtime torch -q -o bench/results/eval-squad-sentence-mean | tee bench/results/eval-squad-sentence-mean.md
	$(BIN)/qa eval --beir $(DATA)/beir-scifact --split train,test --runtime torch -q -o bench/results/eval-scifact \
		| tee bench/results/eval-scifact.md

# Each runtime's quality from one commit, read by `python -m bench runtimes` (about 40 minutes a runtime
# on 2 cores); torch's too, as the others are judged against it with nothing else changed.
RUNTIMES ?= torch onnx-int8 onnx
eval-runtimes: $(STAMP)
	for runtime in $(RUNTIMES); do \
		$(BIN)/qa eval --squad $(DATA)/squad-v1.1-dev/dev-v1.1.json --split-at 24 --runtime $$runtime -q \
			-o bench/results/eval-squad-$$runtime | tee bench/results/eval-squad-$$runtime.md && \
		$(BIN)/qa eval --beir $(DATA)/beir-scifact --split test --runtime $$runtime -q \
			-o bench/results/eval-scifact-$$runtime | tee bench/results/eval-scifact-$$runtime.md || exit 1; \
	done

clean:
	rm -rf $(VENV) index .pytest_cache .mypy_cache .ruff_cache
