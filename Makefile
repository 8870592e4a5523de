# artalign: `make demo` runs the main job on the embedded default; `make test` runs the tests.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
ART := $(VENV)/bin/artalign
DEMO ?= runs/demo
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test lint format bench clean-demo screenshots

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

test: $(VENV)/.installed
	$(PY) -m pytest -q

# lint-imports: the package layers and no import cycles (contracts in pyproject.toml)
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The main job on the embedded default: `artalign loop --preset quick` (data set -> oracle ->
# CLIP -> VAE -> UNet -> generator evaluation -> labeling batch judged by simulated raters ->
# reward model -> DDPO and DPO -> evaluation of base vs aligned -> DIR/report.html). Each stage is
# skipped when its done-marker (DIR/.stages) or, for the base stages, the output of the rules below
# exists; the rules below build the base stages one by one, as before.
demo: $(VENV)/.installed
	$(ART) loop --preset quick --out $(DEMO)
	@$(PY) -m base_models.demo_summary $(DEMO)

$(DEMO)/data/metadata.jsonl: | $(VENV)/.installed
	$(ART) data make --out $(DEMO)/data --preset quick --seed 0 --overwrite

$(DEMO)/oracle_test/metadata.jsonl: | $(VENV)/.installed
	$(ART) data make --out $(DEMO)/oracle_test --n 2000 --seed 7 --split all --unsafe-share 0.1 --overwrite

$(DEMO)/oracle/model.safetensors: | $(VENV)/.installed
	$(ART) oracle train --out $(DEMO)/oracle --preset quick

$(DEMO)/oracle_eval/metrics.json: $(DEMO)/oracle/model.safetensors $(DEMO)/oracle_test/metadata.jsonl
	$(ART) oracle score --model $(DEMO)/oracle --data $(DEMO)/oracle_test --out $(DEMO)/oracle_eval

$(DEMO)/clip/open_clip_model.safetensors: $(DEMO)/data/metadata.jsonl
	$(ART) base train-clip --data $(DEMO)/data --out $(DEMO)/clip --preset quick

$(DEMO)/clip_eval/metrics.json: $(DEMO)/clip/open_clip_model.safetensors
	$(ART) base eval-clip --model $(DEMO)/clip --out $(DEMO)/clip_eval

$(DEMO)/vae/metrics.json: $(DEMO)/data/metadata.jsonl
	$(ART) base train-vae --data $(DEMO)/data --out $(DEMO)/vae --preset quick

$(DEMO)/generator/model_index.json: $(DEMO)/vae/metrics.json $(DEMO)/clip/open_clip_model.safetensors
	$(ART) base train-unet --data $(DEMO)/data --vae $(DEMO)/vae --clip $(DEMO)/clip \
		--out $(DEMO)/generator --preset quick

$(DEMO)/generator_eval/metrics.json: $(DEMO)/generator/model_index.json $(DEMO)/oracle/model.safetensors
	$(ART) base eval-generator --model $(DEMO)/generator --oracle $(DEMO)/oracle \
		--clip $(DEMO)/clip --out $(DEMO)/generator_eval

# Labeling: 40 prompts x 4 generated images as pair and 4-way rank tasks, 3 raters per task,
# judged by simulated raters through the store API the app uses (`artalign label serve` for people).
$(DEMO)/labels/prompts.txt: | $(VENV)/.installed
	$(ART) data prompts --out $@ --n 40 --seed 11 --objects 1-2

$(DEMO)/labels/labels.db: $(DEMO)/generator/model_index.json $(DEMO)/labels/prompts.txt
	rm -rf $@ $@.images $@.tmp $@.tmp.images
	$(ART) label batch --db $@.tmp --model $(DEMO)/generator --prompts $(DEMO)/labels/prompts.txt \
		--k 4 --kinds pair,rank --overlap 3 --steps 20 --guidance 3 --batch-name round1
	mv $@.tmp.images $@.images && mv $@.tmp $@

$(DEMO)/label_sim/metrics.json: $(DEMO)/labels/labels.db $(DEMO)/oracle/model.safetensors
	$(ART) label simulate --db $(DEMO)/labels/labels.db --profile configs/raters/default.yaml \
		--oracle $(DEMO)/oracle --n 100000 --out $@

$(DEMO)/label_agreement/metrics.json: $(DEMO)/label_sim/metrics.json
	$(ART) label agreement --db $(DEMO)/labels/labels.db --out $@

clean-demo:
	rm -rf $(DEMO)

# Every benchmark, each printing its table with ratios against a baseline measured in the same run.
# Needs the demo artefacts (make demo). The alignment benchmarks reuse runs/bench/align.
BENCH_ENV := OMP_NUM_THREADS=1
bench: $(VENV)/.installed
	$(BENCH_ENV) $(PY) benchmarks/sampling_speed.py
	$(BENCH_ENV) $(PY) benchmarks/fid_speed.py
	$(BENCH_ENV) $(PY) benchmarks/label_latency.py
	$(BENCH_ENV) $(PY) benchmarks/reward_accuracy.py --clip $(DEMO)/clip --oracle $(DEMO)/oracle --out runs/bench/reward
	$(BENCH_ENV) $(PY) benchmarks/reward_throughput.py --model runs/bench/reward/b/model --clip $(DEMO)/clip
	$(BENCH_ENV) $(PY) benchmarks/unet_throughput.py
	$(BENCH_ENV) $(PY) benchmarks/vae_ceiling.py --vae $(DEMO)/vae/vae --oracle $(DEMO)/oracle
	$(BENCH_ENV) $(PY) benchmarks/safety_checker.py
	$(BENCH_ENV) $(PY) benchmarks/align_data.py
	$(BENCH_ENV) $(PY) benchmarks/dpo_winrate.py
	$(BENCH_ENV) $(PY) benchmarks/ddpo_alignment.py --minutes 15
	$(BENCH_ENV) $(PY) benchmarks/prompt_optimiser.py

# The labeling app's screenshots in docs/img, taken by its browser test (needs Debian chromium).
screenshots: $(VENV)/.installed
	ARTALIGN_SCREENSHOTS=docs/img $(PY) -m pytest -q \
		tests/labeling_app/test_browser.py::test_pair_task_fits_a_small_screen_and_screenshots
