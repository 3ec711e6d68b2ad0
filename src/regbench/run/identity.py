"""The code identity of a run: a fingerprint of everything that decides what it computes.

A run's result is a function of its resolved config (``tracking.config_hash``) and of the code
that ran it. This module is the one home of the rule of what code counts:

* **training**: the modules of regbench that decide what a run computes, ``TRAINING_MODULES``
  (the data pipeline, the model, the built-in regularizers, the registry's build of a
  regularizer, the optimizer, the callbacks that schedule and stop training, the metrics, the
  training loop). Not the modules that only record, compare or report (tracking, query, stats,
  report, plots, the commands): editing those changes no result.
* **regularizer**: the source file that defines the option's class: the plugin's file, an
  installed distribution's module or regbench's own ``regularizers.py``; for a Keras class, the
  Keras version (``keras==3.15.0:L2``), which fixes its code. ``none`` has none.
* **versions**: Python's minor version, TensorFlow, Keras and numpy (their installed
  distributions), which compute every number.

Granularity: a whole module, read as its syntax tree with docstrings removed
(``source_fingerprint``): comments and docstrings leave it unchanged, any change to code (a
formula, a constant, a default, a renamed variable) moves it. Finer (function by function)
would need the call graph of a run and miss module-level constants; coarser (the git commit)
moves on a README edit and says nothing of a plugin outside the repository.

The run's ``code_identity`` tag is the first 12 hex digits of sha256 over the three parts; each
part is a tag of its own (``record.CODE_TAGS``), beside where the regularizer came from
(``regularizer_source``) and the git commit. A resumed command reuses a run only when its
identity is today's (``sweep.reusable_run``); a comparison analyses one identity per arm
(``query.one_code_per_arm``).

Nothing here imports TensorFlow, Keras or MLflow: identities are computed in every command.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from regbench import record
from regbench.config import registry
from regbench.locations import PACKAGE_DIR

# the modules of src/regbench whose code decides what a run computes (module docstring), by
# name -> their file in the package
TRAINING_MODULES = {"data": "run/data.py", "models": "run/models.py",
                    "regularizers": "run/regularizers.py", "registry": "config/registry.py",
                    "optimizers": "run/optimizers.py", "callbacks": "run/callbacks.py",
                    "metrics": "run/metrics.py", "training": "run/training.py",
                    "splits": "config/splits.py", "numbers": "config/numbers.py"}
FLAT_LAYOUT = "{name}.py"  # where the commits before the packages kept each of them
VERSIONED = ("tensorflow", "keras", "numpy")  # distributions whose version is part of it
DIGITS = 12  # hex digits of each fingerprint
UNRECORDED = "unrecorded"  # the identity of a run recorded before identities were


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:DIGITS]


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                node.body = body[1:] or [ast.Pass()]
    return tree


def source_fingerprint(source: str) -> str:
    """sha256 (first DIGITS hex digits) of ``ast.dump`` of the source's syntax tree without
    docstrings and without line numbers: equal for two sources that differ in comments,
    docstrings and layout only. A source that does not parse is hashed as text."""
    try:
        tree = _without_docstrings(ast.parse(source))
    except SyntaxError:
        return _sha(source)
    return _sha(ast.dump(tree, annotate_fields=False, include_attributes=False))


def training_fingerprint(sources: dict[str, str]) -> str:
    """The fingerprint of the training code given as module name -> source (a module missing
    from ``sources`` counts as absent): sha256 over each TRAINING_MODULES module's
    ``source_fingerprint``, in that order."""
    return _sha(" ".join(f"{name}:{source_fingerprint(sources[name])}" if name in sources
                         else f"{name}:absent" for name in TRAINING_MODULES))


def package_sources(package_dir: Path = PACKAGE_DIR) -> dict[str, str]:
    """TRAINING_MODULES' sources as they are in ``package_dir``."""
    return {name: path.read_text() for name, file in TRAINING_MODULES.items()
            if (path := package_dir / file).is_file()}


def _installed(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "absent"


def versions() -> str:
    """``python=3.11 tensorflow=2.21.0 keras=3.15.0 numpy=2.4.6``: what computes the numbers."""
    python = f"python={sys.version_info.major}.{sys.version_info.minor}"
    return " ".join([python, *(f"{name}={_installed(name)}" for name in VERSIONED)])


def _class_source(cls: type) -> str:
    """The text of the module that defines ``cls``; ValueError when it has none."""
    try:
        path = inspect.getsourcefile(cls)
    except TypeError:
        path = None
    if not path or not Path(path).is_file():
        raise ValueError(f"the source of {cls.__qualname__} cannot be read (define it in a file)")
    return Path(path).read_text()


def regularizer_fingerprint(target: str | None, cls: type | None,
                            package_dir: Path = PACKAGE_DIR) -> str:
    """The regularizer part (module docstring): ``none`` without a class; for a Keras class
    ``keras==<version>:<Class>``; else the ``source_fingerprint`` of the file that defines the
    class (regbench's own are read from ``package_dir``, without importing them)."""
    if target is None:
        return "none"
    module, _, name = target.rpartition(".")
    if module.startswith("keras"):
        return f"keras=={_installed('keras')}:{name}"
    if module == registry.BUILTIN_TARGET_PREFIX and cls is None:
        return source_fingerprint((package_dir / TRAINING_MODULES["regularizers"]).read_text())
    return source_fingerprint(_class_source(cls))


@dataclass(frozen=True)
class CodeIdentity:
    """The code identity of a run of one regularizer option (module docstring)."""

    regularizer: str
    training: str
    versions: str
    source: str  # where the regularizer's code came from: builtin, a file, a distribution

    @property
    def identity(self) -> str:
        return _sha(f"{self.regularizer} {self.training} {self.versions}")

    def tags(self) -> dict[str, str]:
        """The run's tags (``record.CODE_TAGS``)."""
        return {record.TAG_CODE_IDENTITY: self.identity,
                record.TAG_CODE_REGULARIZER: self.regularizer,
                record.TAG_CODE_TRAINING: self.training, record.TAG_CODE_VERSIONS: self.versions,
                record.TAG_REGULARIZER_SOURCE: self.source}


@functools.cache
def _training_now() -> str:
    return training_fingerprint(package_sources())


def of_option(name: str) -> CodeIdentity:
    """Today's code identity of a run of regularizer option ``name`` (the user's options
    loaded by the registry); ConfigError for an unknown option or a class without source."""
    option = registry.get(name)
    try:
        regularizer = regularizer_fingerprint(option.target, option.cls)
    except ValueError as error:
        raise registry.ConfigError(f"regularizer={name}: {error}") from None
    return CodeIdentity(regularizer, _training_now(), versions(), option.source)


def of_config(cfg) -> CodeIdentity:
    """Today's code identity of a run of the composed config ``cfg``."""
    return of_option(str(cfg.regularizer.name))


def _git(root: Path, *args: str) -> str | None:
    import subprocess

    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


def sources_at(commit: str, root: Path) -> dict[str, str]:
    """TRAINING_MODULES' sources at ``commit`` of the git checkout ``root`` (in the package
    layout, else in the flat one of the commits before it)."""
    found = {name: _git(root, "show", f"{commit}:src/regbench/{file}")
             or _git(root, "show", f"{commit}:src/regbench/{FLAT_LAYOUT.format(name=name)}")
             for name, file in TRAINING_MODULES.items()}
    return {name: text for name, text in found.items() if text is not None}


def pins_at(commit: str, root: Path) -> str:
    """The pins of VERSIONED in pyproject.toml at ``commit`` (``tensorflow==2.21.0 ...``)."""
    import re

    text = _git(root, "show", f"{commit}:pyproject.toml") or ""
    return " ".join(match.group(0) for name in VERSIONED
                    if (match := re.search(rf"\b{name}==[\w.]+", text))) or "no pins"


def trained_commits(first_line: str) -> dict[str, int]:
    """commit -> runs, from a report's first line (``... from 51 runs trained at commit A (18),
    B (2).``, as ``report.provenance`` writes it); empty for a report of no runs."""
    import re

    _, found, listed = first_line.partition(" runs trained at commit ")
    return {commit: int(n) for commit, n in re.findall(r"([0-9a-f]{40}) \((\d+)\)", listed)
            } if found else {}


def published_markdown(reports: Path, root: Path) -> str:
    """reports/code-identities.md: for each published report, the commits its runs were
    trained at (from its first line), the training fingerprint and the pinned versions at each
    (read from git), and the TRAINING_MODULES whose code differed between those commits. Runs
    recorded before code identities were carry their commit only: this is what can be said of
    their code."""
    head = (_git(root, "rev-parse", "HEAD") or "unknown").strip()
    lines = [f"Written by `regbench identities` at commit {head}, from the first line "
             "of each report under reports/ and the code at each commit it names (no runs "
             "read).", "",
             "The runs of these reports were recorded before regbench recorded a code identity "
             "per run. The training part of the identity (regbench.run.identity: the modules "
             f"{', '.join(TRAINING_MODULES)}, docstrings and comments left out) can be computed "
             "at each commit their runs were trained at; the versions, only as pinned then "
             "(keras follows tensorflow's pin).", "",
             "| report | commit (runs) | training fingerprint | pins | training modules that "
             "differ from the report's first commit |", "|---|---|---|---|---|"]
    for path in sorted(reports.glob("*/*.md")):
        commits = trained_commits(path.read_text().splitlines()[0])
        sources = {commit: sources_at(commit, root) for commit in commits}
        first = next(iter(commits), None)
        for commit, runs in commits.items():
            differ = [name for name in TRAINING_MODULES
                      if (sources[commit].get(name) is None) != (sources[first].get(name) is None)
                      or name in sources[commit] and source_fingerprint(sources[commit][name])
                      != source_fingerprint(sources[first][name])]
            lines.append(f"| {path.relative_to(reports)} | {commit[:12]} ({runs}) | "
                         f"`{training_fingerprint(sources[commit])}` | {pins_at(commit, root)} | "
                         f"{', '.join(differ) or '–'} |")
    return "\n".join(lines) + "\n"
