# YouTube-8M competition workspace. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
YT8M := $(VENV)/bin/yt8m
LEVEL ?= frame
# WORKERS: processes converting shards (default: one per core, at most one per shard)
WORKERS ?=
# FOLDS: K of a new fold assignment (default 5; the sample competition uses 3, see `all`)
FOLDS ?=
# make download: the official download.py's partition, fraction (m,n = the m-th of n parts) and mirror
PARTITION ?= 2/frame/train
SHARD ?= 1,100
MIRROR ?= us
# make download-features: the fraction is fetched in PARTS pieces, each converted then deleted
PARTS ?= 10
# make features DELETE_INPUT=1: delete each source shard once its conversion is verified
DELETE_INPUT ?=
COMPETITION ?= youtube8m-2018
# make train: MODEL=<id> (models/<id>.yaml), FOLD=k (default: every fold), DISTRIBUTE=1 (data
# parallel over the local GPUs)
MODEL ?=
FOLD ?=
DISTRIBUTE ?=
TRAIN_FLAGS = --quiet --level $(LEVEL) $(if $(DISTRIBUTE),--distribute)
# specs trained side by side by `make train-all` (one process each; keep 1 on a single GPU)
JOBS ?= 1
PORT ?= 6006
# PRESET=paper: the specs of models/paper/ (the references' settings, for the real data) into
# models/paper/<id>/, blended into ensembles/paper/<id>/
PRESET ?=
MODELS_DIR := models$(if $(PRESET),/$(PRESET))
ENSEMBLES_OUT := ensembles$(if $(PRESET),/$(PRESET))
# raw-video specs (model: stnet) train on input/kinetics/, not on the features/ folds
VIDEO_SPECS := $(shell grep -l '^model: *stnet' $(MODELS_DIR)/*.yaml 2>/dev/null)
# distillation students (training: {teacher: ...}) train after the ensembles they learn from
DISTILL_SPECS := $(shell grep -l '^ *teacher:' $(MODELS_DIR)/*.yaml 2>/dev/null)
SPECS := $(filter-out $(VIDEO_SPECS) $(DISTILL_SPECS),$(wildcard $(MODELS_DIR)/*.yaml))
VIDEO_INPUT ?= input/kinetics
ENSEMBLES := $(wildcard ensembles/*.yaml)
# LEVEL=video (video-level shards only): the specs of video-level models, and the ensembles of them
ifeq ($(LEVEL),video)
LISTED := $(shell test -x $(YT8M) && $(YT8M) specs --level video $(SPECS) $(ENSEMBLES))
SPECS := $(filter models/%,$(LISTED))
ENSEMBLES := $(filter ensembles/%,$(LISTED))
endif
# make submission: SRC=models/<id> or ensembles/<id> (default: best OOF GAP), ID=, GZIP=1, FORCE=1
# make submit: SUB=<id> MSG="..." DRY_RUN=1
SRC ?=
# make compact: SRC=models/<id> or ensembles/<id>, K (classes kept per video, at least 20)
K ?= 100
ID ?=
SUB ?=
MSG ?=

.PHONY: help all setup sample features train segments train-all ensemble distill compact tensorboard lab submission submit test \
        sample-video train-video \
        test-slow lint format bench bench-scale download download-features download-kaggle clean-features clean

help: ## List the targets with a line on each
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  %-16s %s\n", $$1, $$2}'

all: setup sample features train-all ensemble distill sample-video train-video ## Set up, then run the whole job on the built-in sample competitions
	@$(MAKE) --no-print-directory submission
	@$(foreach spec,$(VIDEO_SPECS),$(MAKE) --no-print-directory submission SRC=$(spec:.yaml=);)

# The sample competition is folded in 3 (not 5): 2 folds train faster, but a stacker trained on
# 1,000 rows of 14 members scores below the best member (0.305 against 0.353).
all: FOLDS := $(or $(FOLDS),$(if $(wildcard features/folds.csv),,3))
# The demo models are too small to keep two cores busy: train two specs side by side.
all: JOBS := 2

setup: $(VENV)/.installed ## Create the virtualenv in .venv and install the workspace into it

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

sample: setup ## Generate the sample competition into input/ (a no-op when it is already there; VERSION=2019: the segment-rated 2019 layout)
	$(YT8M) sample $(if $(VERSION),--version $(VERSION))

features: setup ## Decode input/ shards into the features/ cache and assign folds (LEVEL, WORKERS, FOLDS, DELETE_INPUT=1)
	$(YT8M) features --level $(LEVEL) $(if $(WORKERS),--workers $(WORKERS)) \
	  $(if $(FOLDS),--folds $(FOLDS)) $(if $(DELETE_INPUT),--delete-input)

train: setup ## Train one spec out-of-fold (MODEL=<id>, optionally FOLD=k) into models/<id>/
	@test -n "$(MODEL)" || { echo "make train: name a spec, e.g. MODEL=nextvlad (models/*.yaml)"; exit 2; }
	$(YT8M) train models/$(MODEL).yaml $(if $(FOLD),--fold $(FOLD)) $(TRAIN_FLAGS)

segments: setup ## 2019: fine-tune a trained spec with a segments: section on the rated segments and score every test segment (MODEL=<id>)
	@test -n "$(MODEL)" || { echo "make segments: name a spec, e.g. MODEL=nextvlad (models/*.yaml)"; exit 2; }
	$(YT8M) segments models/$(MODEL).yaml

train-all: setup $(SPECS:.yaml=/metrics.json) ## Train every YouTube-8M spec in models/*.yaml over every fold (skips what is up to date; LEVEL=video: the video-level ones on features/video/; PRESET=paper: models/paper/*.yaml)
	@$(YT8M) leaderboard --roots $(ENSEMBLES_OUT) $(MODELS_DIR)

# Serially, the first stale spec's recipe trains every stale spec in one process (one TensorFlow
# start-up instead of one per spec) and the later recipes find their target already rebuilt;
# under `make -j` each recipe trains its own spec, side by side.
models/%/metrics.json: models/%.yaml features/$(LEVEL)/manifest.json
	@if [ $@ -nt $< ] && [ $@ -nt features/$(LEVEL)/manifest.json ]; then :; else \
	  set -x; $(YT8M) train $(if $(findstring j,$(MAKEFLAGS)),$<,$(SPECS) --jobs $(JOBS)) \
	    $(TRAIN_FLAGS); fi

features/%/manifest.json:
	@echo "no feature cache at features/$*/: build it with make features LEVEL=$*"; exit 2

sample-video: setup ## Generate the sample raw-video competition into input/kinetics/ (a no-op when there)
	$(YT8M) sample-video --output $(VIDEO_INPUT)

train-video: setup $(VIDEO_SPECS:.yaml=/metrics.json) ## Train every raw-video spec (model: stnet) on input/kinetics/

ifneq ($(VIDEO_SPECS),)
$(VIDEO_SPECS:.yaml=/metrics.json): models/%/metrics.json: models/%.yaml $(wildcard $(VIDEO_INPUT)/*.csv)
	$(YT8M) train $< $(TRAIN_FLAGS)
endif

ensemble: setup $(patsubst ensembles/%.yaml,$(ENSEMBLES_OUT)/%/metrics.json,$(ENSEMBLES)) ## Blend trained models: every ensembles/*.yaml into ensembles/<id>/ (PRESET=paper: the models/paper/ members into ensembles/paper/<id>/)
	@$(YT8M) leaderboard --roots $(ENSEMBLES_OUT) $(MODELS_DIR)

$(ENSEMBLES_OUT)/%/metrics.json: ensembles/%.yaml $(SPECS:.yaml=/metrics.json)
	$(YT8M) ensemble $< $(if $(PRESET),--models $(MODELS_DIR) --out $(ENSEMBLES_OUT))

distill: setup $(DISTILL_SPECS:.yaml=/metrics.json) ## Train the students of models/*.yaml with a training: {teacher: ...} on their teachers' out-of-fold targets
	@$(YT8M) leaderboard

ifneq ($(DISTILL_SPECS),)
$(DISTILL_SPECS:.yaml=/metrics.json): models/%/metrics.json: models/%.yaml $(ENSEMBLES:.yaml=/metrics.json)
	$(YT8M) train $< $(TRAIN_FLAGS)
endif

compact: setup ## Keep only each video's top K logits of a source's predictions, folds included (SRC=models/<id> K=100)
	@test -n "$(SRC)" || { echo "make compact: name a source, e.g. SRC=models/nextvlad K=100"; exit 2; }
	$(YT8M) compact $(SRC) --top-k $(K)

tensorboard: setup ## Serve the training curves of every models/<id>/tensorboard (PORT)
	$(VENV)/bin/tensorboard --logdir models --port $(PORT)

lab: setup ## Install JupyterLab (extra `notebooks`) and open the notebooks/ folder in it
	$(PY) -m pip install --quiet -e '.[dev,notebooks]'
	$(VENV)/bin/jupyter lab notebooks

submission: setup ## Write submissions/<id>.csv from the best test predictions (SRC, ID, GZIP, FORCE; PRESET=paper: the best of ensembles/paper/ and models/paper/; COMPETITION=youtube8m-2019: Class,Segments from the best segment scores)
	$(YT8M) submission write --competition $(COMPETITION) $(if $(SRC),--source $(SRC)) \
	  $(if $(PRESET),--roots $(ENSEMBLES_OUT) $(MODELS_DIR)) \
	  $(if $(ID),--id $(ID)) $(if $(GZIP),--gzip) $(if $(FORCE),--force)

submit: setup ## Check, then send submissions/<SUB>.csv with the kaggle CLI (SUB, MSG, DRY_RUN=1)
	$(YT8M) submission submit $(SUB) --competition $(COMPETITION) \
	  $(if $(MSG),--message "$(MSG)") $(if $(DRY_RUN),--dry-run)

test: setup ## Run the test suite (slow tests excluded)
	$(PY) -m pytest -m "not slow" -n 2 --dist loadgroup

test-slow: setup ## Run only the slow tests
	$(PY) -m pytest -m slow -n 2

lint: setup ## Check style with ruff
	$(VENV)/bin/ruff check .

format: setup ## Apply the lint fixes ruff can make
	$(VENV)/bin/ruff check --fix .

bench: setup ## Measure cache build, loader and scoring throughput; writes notebooks/bench.md
	$(YT8M) bench

bench-scale: setup ## Every stage's time and peak memory at 10k and 40k videos; writes notebooks/scale.md
	$(YT8M) bench --scale

download: setup ## Fetch real shards with the official download.py (PARTITION=2/frame/train SHARD=1,100 MIRROR=us)
	$(YT8M) download --partition $(PARTITION) --shard $(SHARD) --mirror $(MIRROR)

download-features: setup ## Download and convert piece by piece, deleting the shards of input/<level>/ once converted: about 1x the disk (PARTITION SHARD PARTS=10 MIRROR WORKERS FOLDS)
	$(YT8M) download --partition $(PARTITION) --shard $(SHARD) --mirror $(MIRROR) --parts $(PARTS) \
	  --convert --delete-input $(if $(WORKERS),--workers $(WORKERS)) $(if $(FOLDS),--folds $(FOLDS))

download-kaggle: setup ## Fetch a competition's Kaggle files into input/kaggle (COMPETITION=youtube8m-2018)
	$(VENV)/bin/kaggle competitions download $(COMPETITION) -p input/kaggle

clean-features: ## Delete the features/ cache (folds.csv included)
	find features -mindepth 1 ! -name README.md -exec rm -rf {} +

clean: clean-features ## Delete every generated artifact, the sample input and the virtualenv
	find input -mindepth 1 ! -name README.md -exec rm -rf {} +
	rm -rf $(VENV)
