"""The code identity of a run (regbench.run.identity): which edits move which fingerprint, and how
resume, compare and the reports use it."""

import shutil

import pandas as pd
import pytest

from helpers import PROJECT_ROOT
from regbench import record
from regbench.analysis import query, report
from regbench.config import registry
from regbench.errors import ConfigError
from regbench.run import identity

PACKAGE = PROJECT_ROOT / "src" / "regbench"
EXAMPLE = PROJECT_ROOT / "examples" / "soft_orthogonal.py"


def edited(path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path.name}"
    path.write_text(text.replace(old, new, 1))


@pytest.fixture
def package_copy(tmp_path):
    """A copy of src/regbench to edit, and a function giving its training fingerprint."""
    copy = tmp_path / "regbench"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy, lambda: identity.training_fingerprint(identity.package_sources(copy))


@pytest.mark.parametrize("module, old, new, moves", [
    # docstrings, comments and layout: what a run computes is the same
    ("run/models.py", '"""', '"""A docstring edited. ', False),
    ("run/training.py", "\nimport", "\n# a comment\n\n\nimport", False),
    ("run/regularizers.py", "        return {\"weight\": self.weight, \"eps\": self.eps, "
     "\"mode\": self.mode}", "        return {\"weight\": self.weight,  # layout\n"
     "                \"eps\": self.eps, \"mode\": self.mode}", False),
    # modules that record, compare or report: not training code
    ("analysis/report.py", "def provenance(", "def _more():\n    return 1\n\n\ndef provenance(",
     False),
    ("run/tracking.py", "def flatten(", "def _more():\n    return 1\n\n\ndef flatten(", False),
    # a formula, a constant, a default of the training code
    ("run/regularizers.py", "ops.square(", "ops.abs(", True),
    ("run/callbacks.py", "def ", "LIMIT = 3\n\n\ndef ", True),
    ("run/data.py", "def ", "OFFSET = 1e-3\n\n\ndef ", True),
    ("run/optimizers.py", "class ", "EPSILON = 1e-6\n\n\nclass ", True),
    ("config/splits.py", "def ", "OFFSET = 1\n\n\ndef ", True),
])
def test_which_edit_moves_the_training_fingerprint(package_copy, module, old, new, moves):
    copy, fingerprint = package_copy
    before = fingerprint()
    assert before == identity.training_fingerprint(identity.package_sources(PACKAGE))
    edited(copy / module, old, new)
    assert (fingerprint() != before) == moves


def test_which_edit_moves_a_plugins_fingerprint(plugin, tmp_path):
    """The plugin's part of the identity is its file's code: a comment or docstring edit
    leaves it, a formula edit moves it; the training part and the versions stay."""
    path = plugin(EXAMPLE.read_text(), name="soft_orthogonal.py")
    first = identity.of_option("soft_orthogonal")
    assert first.source == f"file {path}"
    assert first.regularizer == identity.source_fingerprint(EXAMPLE.read_text())
    edited(path, "    def __call__", "    # a comment only\n    def __call__")
    edited(path, '"""weight * ||W^T W - I||_F^2', '"""The penalty: weight * ||W^T W - I||_F^2')
    assert identity.of_option("soft_orthogonal") == first
    edited(path, "ops.square(gram - identity)", "ops.abs(gram - identity)")
    second = identity.of_option("soft_orthogonal")
    assert second.regularizer != first.regularizer and second.identity != first.identity
    assert (second.training, second.versions) == (first.training, first.versions)


def test_the_versions_and_keras_classes(monkeypatch):
    l2 = identity.of_option("l2")
    assert l2.regularizer.startswith("keras==") and l2.regularizer.endswith(":L2")
    assert l2.source == "builtin" and l2.versions.startswith("python=3.11 tensorflow=")
    assert identity.of_option("none").regularizer == "none"
    assert identity.of_option("custom").regularizer == identity.source_fingerprint(
        (PACKAGE / "run" / "regularizers.py").read_text())
    monkeypatch.setattr(identity, "version", lambda name: "9.9.9")  # an upgrade
    upgraded = identity.of_option("l2")
    assert upgraded.versions.endswith("numpy=9.9.9") and upgraded.identity != l2.identity
    assert identity.of_option("custom").identity != identity.CodeIdentity(
        identity.of_option("custom").regularizer, l2.training, l2.versions, "builtin").identity


def test_a_class_without_a_source_file_is_refused_in_one_line(plugin):
    import keras

    plugin("")
    cls = type("Made", (keras.regularizers.Regularizer,), {
        "__init__": lambda self, weight=0.1: setattr(self, "weight", weight),
        "__call__": lambda self, x: self.weight * keras.ops.sum(x),
        "get_config": lambda self: {"weight": self.weight}, "__module__": "nowhere"})
    registry.register("made", cls)
    with pytest.raises(ConfigError, match=r"^regularizer=made: the source of Made cannot be "
                       r"read \(define it in a file\)$"):
        identity.of_option("made")


def runs_of(*rows) -> pd.DataFrame:
    """Runs as query.fetch_runs gives them: (arm, seed, code identity or None, commit)."""
    return pd.DataFrame([{"run_id": f"r{i}", "arm": arm, "seed": seed,
                          f"tags.{record.TAG_CODE_IDENTITY}": code,
                          f"tags.{record.TAG_GIT_COMMIT}": commit}
                         for i, (arm, seed, code, commit) in enumerate(rows)])


def test_an_arm_of_two_code_identities_is_refused_unless_mixing_is_asked_for():
    mixed = runs_of(("l2-0.0001", 0, "aaa", "c1"), ("l2-0.0001", 1, "bbb", "c2"),
                    ("none", 0, "ccc", "c1"), ("none", 1, None, "c0"))
    with pytest.raises(query.CompareError, match=r"^arm l2-0.0001 holds runs of 2 code "
                       r"identities: aaa \(1 runs\), bbb \(1 runs\) \(and more arms\); train "):
        query.one_code_per_arm(mixed, mix_code=False)
    notes = query.one_code_per_arm(mixed, mix_code=True)
    assert notes[0].endswith(": compared mixed (--mix-code)") and len(notes) == 3
    assert notes[2].startswith("1 run(s) were recorded without a code identity")
    header = report.provenance("regbench compare", "c" * 40, mixed, notes)
    assert header.splitlines()[2].startswith("**Note**: arm l2-0.0001 holds runs of 2 code")
    assert "- not recorded (runs from before code identities), arms none (1): commits c0" \
        in header
    assert query.one_code_per_arm(mixed[mixed["run_id"].isin(["r0", "r2"])], False) == []


def test_a_command_that_trains_analyses_todays_code_only():
    today = {name: identity.of_option(name).identity for name in ("l2", "none")}
    runs = runs_of(("l2-0.0001", 0, today["l2"], "c1"), ("l2-0.0001", 1, "old", "c0"),
                   ("none", 0, today["none"], "c1"), ("none", 1, None, "c0"))
    kept, notes = query.keep_todays_code(runs, reuse_stale=False)
    assert list(kept["run_id"]) == ["r0", "r2"]
    assert notes == ["2 run(s) trained by other code than today's (another code identity, or "
                     "none recorded) are left out (--reuse-stale keeps them)"]
    kept, notes = query.keep_todays_code(runs, reuse_stale=True)
    assert len(kept) == 4 and notes[0].startswith("reuse_stale: 2 of 4 runs were trained by "
                                                  "other code than today's")


def test_compare_refuses_an_arm_of_two_code_identities_and_names_each_when_told(tmp_path,
                                                                                capsys):
    import mlflow
    from mlflow.tracking import MlflowClient

    from helpers import record_run, sqlite_uri
    from regbench.cli import compare

    mlflow.set_tracking_uri(sqlite_uri(tmp_path))
    experiment_id = mlflow.create_experiment("code", artifact_location=(tmp_path / "a").as_uri())
    for seed in range(3):
        for arm, params, code in (("l2-0.0001", {"name": "l2", "weight": "0.0001"},
                                   "aaaaaaaaaaaa" if seed < 2 else "bbbbbbbbbbbb"),
                                  ("none", {"name": "none"}, "cccccccccccc")):
            run_id = record_run(experiment_id, arm, params, seed, 0.9 + seed / 100, 0.3)
            MlflowClient().set_tag(run_id, record.TAG_CODE_IDENTITY, code)
    arguments = ["--experiment", "code", "--tracking-uri", sqlite_uri(tmp_path), "--no-log",
                 "--reference", "none", "--out", str(tmp_path / "r")]
    capsys.readouterr()  # MLflow's lines of creating the store
    with pytest.raises(SystemExit) as exit_:
        compare.main(arguments)
    lines = [line for line in capsys.readouterr().err.splitlines() if " INFO " not in line]
    assert exit_.value.code == 2 and lines == [
        "error: arm l2-0.0001 holds runs of 2 code identities: aaaaaaaaaaaa (2 runs), "
        "bbbbbbbbbbbb (1 runs); train its seeds again with today's code, or give --mix-code "
        "to compare them mixed"]
    assert not (tmp_path / "r").exists()
    assert compare.main([*arguments, "--mix-code"]) == 0
    text = (tmp_path / "r" / "comparison.md").read_text().splitlines()
    assert text[2] == ("**Note**: arm l2-0.0001 holds runs of 2 code identities: aaaaaaaaaaaa "
                       "(2 runs), bbbbbbbbbbbb (1 runs): compared mixed (--mix-code).")
    training = identity.of_option("l2").training
    assert any(line.startswith(f"- `bbbbbbbbbbbb`, arms l2-0.0001 (1): training `{training}`")
               for line in text)


def test_a_job_reuses_a_run_of_todays_code_only(tmp_path):
    """The rule of resuming (sweep.reusable_run) on a store: a run of today's code is reused,
    one of other code or of none recorded is trained again unless reuse_stale, and the job's
    line says which and why."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from helpers import sqlite_uri
    from regbench.design import sweep

    mlflow.set_tracking_uri(sqlite_uri(tmp_path))
    experiment_id = mlflow.create_experiment("resume")
    client = MlflowClient()

    def finished(config_hash, code=None):
        tags = {record.TAG_CONFIG_HASH: config_hash,
                **({record.TAG_CODE_IDENTITY: code} if code else {})}
        run = client.create_run(experiment_id, tags=tags)
        client.set_terminated(run.info.run_id)
        return run.info.run_id

    old = finished("h1")  # recorded before code identities
    reuse = sweep.reusable_run(experiment_id, "h1", "today", reuse_stale=False)
    assert reuse == sweep.Reuse(None, False, [(old, identity.UNRECORDED)])
    assert reuse.line("today") == (
        f"training again: this config's 1 FINISHED run(s) ({old[:8]}) were trained by code "
        "unrecorded, not today's today; comparisons leave them out (reuse_stale=true reuses "
        "them)")
    stale = sweep.reusable_run(experiment_id, "h1", "today", reuse_stale=True)
    assert stale.run_id == old and stale.line("today").startswith(
        f"skipped: reuse_stale=true reuses FINISHED run {old} of code unrecorded")
    current = finished("h1", "today")
    reuse = sweep.reusable_run(experiment_id, "h1", "today", reuse_stale=False)
    assert reuse.run_id == current and reuse.current
    assert reuse.line("today").startswith(f"skipped: this config already has FINISHED run "
                                          f"{current} of today's code today")
    assert sweep.reusable_run(experiment_id, "h2", "today", False) == sweep.Reuse(None, False, [])
    assert sweep.Reuse(None, False, []).line("today") is None


def test_the_published_code_identities_are_what_git_gives_and_the_results_quote_them():
    """reports/code-identities.md is what ``regbench identities`` writes now (its first
    line names the commit that wrote it), and each commit docs/results.md names as trained by other
    training code is a row whose training modules differ."""
    import re

    from regbench.locations import REPORTS_DIR

    published = (REPORTS_DIR / "code-identities.md").read_text().splitlines()
    assert published[1:] == identity.published_markdown(REPORTS_DIR, PROJECT_ROOT).splitlines()[1:]
    results = (PROJECT_ROOT / "docs" / "results.md").read_text()
    paragraph = results[results.index("were recorded before runs carried"):].split("\n\n")[0]
    named = re.findall(r"\b[0-9a-f]{12}\b", paragraph)
    assert len(named) == 4
    cells = [row.strip("| ").split(" | ") for row in published if re.match(r"\| \S+\.md \|", row)]
    fingerprints = {cell[1].split()[0]: cell[2] for cell in cells}
    differing = {cell[1].split()[0]: cell[4] for cell in cells}
    assert set(named) == {"7b3addd4ebe3", "d4fb2fde4d3c", "77eedb0b0cce", "c53425e2e57d"}
    for commit in ("7b3addd4ebe3", "d4fb2fde4d3c", "77eedb0b0cce"):
        assert fingerprints[commit] != fingerprints["c53425e2e57d"]
    assert differing["7b3addd4ebe3"] == "regularizers, registry, training"
