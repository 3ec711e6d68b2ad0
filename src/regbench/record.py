"""The run-record contract: every name a regbench run writes to MLflow, and the arm label.

This is the one home of these names; training writes them, and compare, runs, bench and the
tests read them from here. No MLflow, Hydra or TensorFlow import: any tool can use it cheaply.

A training run records (docs/architecture.md, "The run record"):

* params: the resolved config flattened with dotted keys (``regularizer.name``, ``seed``, ...),
  plus the optimizer's config that MLflow's Keras callback adds, each key prefixed
  ``OPTIMIZER_PARAM_PREFIX``;
* tags: ``RUN_TAGS`` (plus MLflow's own ``mlflow.*`` tags, and ``PARENT_TAG`` in a sweep);
* per-epoch metrics, step = epoch from 0: ``EPOCH_METRICS``;
* final metrics, once: ``FINAL_METRICS``;
* artifacts: ``ARTIFACTS`` (the ``PLOTS`` under ``PLOTS_DIR``), and the MLflow model named
  ``MODEL_ARTIFACT``, a logged model of the run that ``runs:/<run id>/model`` resolves to;
* status: one of ``STATUSES``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

# statuses (MLflow's RunStatus names)
FINISHED, FAILED, KILLED, RUNNING = "FINISHED", "FAILED", "KILLED", "RUNNING"
STATUSES = (FINISHED, FAILED, KILLED, RUNNING)

# params read back by name (all params are the flattened config)
PARAM_REGULARIZER = "regularizer.name"
PARAM_SEED = "seed"
OPTIMIZER_PARAM_PREFIX = "optimizer_"

# tags of a training run
TAG_REGULARIZER, TAG_MODEL, TAG_DATA, TAG_SEED = "regularizer", "model", "data", "seed"
TAG_GIT_COMMIT, TAG_DATA_SHA256, TAG_ARM = "git_commit", "data_sha256", "arm"
TAG_HOST, TAG_PID = "host", "pid"
TAG_CONFIG_HASH = "config_hash"  # of the resolved config, result-neutral keys left out
RESULT_NEUTRAL_KEYS = (  # keys that do not change what a run computes: left out of its hash
    "mlflow.tracking_uri", "mlflow.experiment_name", "data.dir", "trainer.verbose",
    "trainer.threads", "rerun", "reuse_stale", "margins.test_accuracy", "margins.test_data_loss",
)
PARAM_KERNEL, PARAM_WEIGHT = "regularizer.kernel", "regularizer.weight"


PARAM_RESTORES = "trainer.restore_best_weights"


def result_neutral_keys(params: Mapping[str, str]) -> set[str]:
    """The keys of a flattened config (a run's params) that do not change what it computes:
    RESULT_NEUTRAL_KEYS, ``regularizer.weight`` when there is no kernel (``none`` takes a
    weight, so that one sweep can cross every option with one weight list, and ignores it),
    and ``trainer.restore_best_weights`` when true (what every run did before the key
    existed: their configs keep their hashes)."""
    unused = {PARAM_WEIGHT} if params.get(PARAM_KERNEL) == "None" else set()
    restores = {PARAM_RESTORES} if str(params.get(PARAM_RESTORES)) == "True" else set()
    return set(RESULT_NEUTRAL_KEYS) | unused | restores


# the code that trained a run (regbench.run.identity): its identity, the three parts it is made of,
# and where the regularizer's code came from (builtin, a plugin file, an installed distribution)
TAG_CODE_IDENTITY, TAG_CODE_REGULARIZER = "code_identity", "code_regularizer"
TAG_CODE_TRAINING, TAG_CODE_VERSIONS = "code_training", "code_versions"
TAG_REGULARIZER_SOURCE = "regularizer_source"
CODE_TAGS = (TAG_CODE_IDENTITY, TAG_CODE_REGULARIZER, TAG_CODE_TRAINING, TAG_CODE_VERSIONS,
             TAG_REGULARIZER_SOURCE)
RUN_TAGS = (TAG_REGULARIZER, TAG_MODEL, TAG_DATA, TAG_SEED, TAG_GIT_COMMIT, TAG_DATA_SHA256,
            TAG_ARM, TAG_HOST, TAG_PID, TAG_CONFIG_HASH, *CODE_TAGS)
TAG_ERROR_TYPE, TAG_ERROR_MESSAGE = "error_type", "error_message"  # FAILED runs
TAG_FAILURE, FAILURE_NAN_LOSS = "failure", "nan_loss"  # a diverged run
TAG_KILLED_BY = "killed_by"  # closed by ``regbench-runs --stale --mark-killed``
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"

# a strength grid's calibration probe, logged in the path's experiment (regbench.design.calibrate):
# the tag holds the option probed; such a run trains nothing a comparison reads. Its key is the
# hash of the config it probes, under a tag of its own: TAG_CONFIG_HASH says a run trained that
# config, and a job of it finding the probe would skip its training
TAG_CALIBRATION, TAG_PROBE_HASH = "calibration", "probe_config_hash"

# sweeps: the parent run of a multirun
TAG_SWEEP, SWEEP_PARENT, TAG_SWEEP_DIR, TAG_LAUNCHER = "sweep", "parent", "sweep_dir", "launcher"
PARAM_SWEEP_OVERRIDES = "sweep.overrides"
CHILDREN_METRICS = {status: f"children_{status.lower()}" for status in STATUSES}
CHILDREN_MISSING = "children_missing"  # jobs that failed before their run existed
CHILDREN_SKIPPED = "children_skipped"  # jobs whose config already had a FINISHED run

# metrics
MONITORED = ("val_accuracy", "val_loss", "val_data_loss")  # allowed ``trainer.monitor`` values
EPOCH_METRICS = ("loss", "accuracy", "data_loss", "penalty", "val_loss", "val_accuracy",
                 "val_data_loss", "val_penalty", "learning_rate", "epoch_seconds")
CURVE_METRICS = ("loss", "val_loss", "data_loss", "val_data_loss", "accuracy", "val_accuracy")
TEST_ACCURACY, TEST_DATA_LOSS = "test_accuracy", "test_data_loss"
TEST_TOTAL_LOSS, TEST_PENALTY = "test_total_loss", "test_penalty"
TEST_ECE, TEST_BRIER = "test_ece", "test_brier"
# the values a run's final test metric can take (NaN aside: a failed evaluation, dropped and
# counted by the statistics); a recorded value outside its range, or infinite, is impossible
METRIC_RANGES = {TEST_ACCURACY: (0.0, 1.0), TEST_DATA_LOSS: (0.0, float("inf")),
                 TEST_TOTAL_LOSS: (0.0, float("inf")), TEST_ECE: (0.0, 1.0),
                 TEST_BRIER: (0.0, 2.0)}
BEST_EPOCH, EPOCHS_TRAINED, TRAIN_SECONDS = "best_epoch", "epochs_trained", "train_seconds"
# the regularizer's weight at the end of training, on training examples (models.penalty_shares)
PENALTY_LOSS_SHARE, PENALTY_GRADIENT_SHARE = "penalty_loss_share", "penalty_gradient_share"
FINAL_METRICS = (TEST_ACCURACY, TEST_DATA_LOSS, TEST_TOTAL_LOSS, TEST_PENALTY, TEST_ECE,
                 TEST_BRIER, BEST_EPOCH, EPOCHS_TRAINED, TRAIN_SECONDS, PENALTY_LOSS_SHARE,
                 PENALTY_GRADIENT_SHARE)
# where a run's wall time went besides model.fit (TRAIN_SECONDS): seconds_<phase>, logged with
# the final metrics (``make bench`` splits a run by them). config: validation and the
# regularizer's checks; data: reading and splitting; store: connecting and the experiment;
# model: building and compiling; epoch_metrics: the store's copy of every epoch checked;
# evaluate: the test pass and the penalty's shares; plots; save_model: the MLflow model.
PHASES = ("config", "data", "store", "model", "epoch_metrics", "evaluate", "plots",
          "save_model")
PHASE_METRICS = tuple(f"seconds_{phase}" for phase in PHASES)

# artifacts
CONFIG_ARTIFACT = "config.yaml"
RELIABILITY_ARTIFACT = "reliability.json"
PLOTS_DIR = "plots"
PLOTS = ("learning_curves.png", "reliability.png")
MODEL_SUMMARY_ARTIFACT = "model_summary.txt"  # written by MLflow's Keras callback
ARTIFACTS = (CONFIG_ARTIFACT, RELIABILITY_ARTIFACT, PLOTS_DIR, MODEL_SUMMARY_ARTIFACT)
MODEL_ARTIFACT = "model"

def arm_label(name: str, strengths: Sequence[float]) -> str:
    """The arm of a run: its regularizer's name and the strengths its kernel really applied
    (``regularizers.strengths``, from ``get_config()``), e.g. ``custom-0.0001``,
    ``l1_l2-0.002-0.5`` (weight, l1_ratio), ``none``. Training writes it as the tag ``arm``;
    a comparison groups runs by that tag."""
    return "-".join([name, *(f"{value:g}" for value in strengths)])


def arm_name(label: str) -> str:
    """The regularizer of an arm label, the inverse of ``arm_label``'s first part:
    ``l2-1e-05`` -> ``l2`` (a name is a Python identifier, so it holds no ``-``)."""
    return label.split("-")[0]


def run_name(arm: str, model: str, data: str, seed: int) -> str:
    """``<arm>-<model>-<data>-s<seed>``, e.g. ``custom-0.0001-mlp_bn-mnist-s0``."""
    return f"{arm}-{model}-{data}-s{seed}"


def seeds_said(param: object, tag: object, name: object) -> set[int]:
    """The seeds a run states: its param ``seed``, its tag ``seed`` and the ``-s<seed>`` that
    ends its ``run_name``, those it has. More than one: the run contradicts itself (its seed
    was relabelled), and nothing may pair on it or reuse it."""
    found = {str(param), str(tag), *re.findall(r"-s(\d+)$", str(name))}
    return {int(value) for value in found if value.isdigit()}
