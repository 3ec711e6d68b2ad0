"""The package's layout holds: layers that import only downwards, no import cycle, one command
that lists every subcommand, the plugin name at the top, configs that travel with the package."""

import ast
import os
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from helpers import PROJECT_ROOT, QUIET_TENSORFLOW
from regbench.cli.main import COMMANDS, dispatch

PACKAGE = PROJECT_ROOT / "src" / "regbench"
# lowest first: a module may import its own layer's modules and those of lower layers only
LAYERS = (("errors", "record", "locations", "processes"), ("config",), ("run",), ("analysis",),
          ("design",), ("cli",), ("__init__", "__main__"))


def module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    return next(index for index, names in enumerate(LAYERS) if top in names)


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the regbench modules it imports (at its top or inside a function)."""
    modules = {module_name(path, package): path for path in package.rglob("*.py")}
    graph = {}
    for module, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.startswith("regbench"):
                for alias in node.names:  # `from regbench.run import store` imports run.store
                    child = f"{node.module}.{alias.name}"
                    found.add(child if child in modules else node.module)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("regbench"))
        graph[module] = (found & set(modules)) - {module}
    return graph


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return [f"{module} -> {target}" for module, targets in graph.items() for target in targets
            if layer_of(target) > layer_of(module)]


def cycles_of(graph: dict[str, set[str]]) -> list[str]:
    state, cycles = {}, []

    def visit(module, trail):
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*trail[trail.index(target):], target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_no_import_runs_up_a_layer():
    assert upward_imports(import_graph()) == []


def test_no_import_cycle():
    assert cycles_of(import_graph()) == []


def test_the_layout_checks_see_an_upward_import_and_a_cycle(tmp_path):
    """Not vacuous: the graph holds known edges, and a package whose run/ imports cli/ inside a
    function, and two modules importing each other, are caught."""
    graph = import_graph()
    assert "regbench.run.store" in graph["regbench.run.tracking"]
    assert "regbench.design.study" in graph["regbench.cli.study"]
    fake = tmp_path / "regbench"
    for folder in ("run", "cli"):
        (fake / folder).mkdir(parents=True)
        (fake / folder / "__init__.py").write_text("")
    (fake / "run" / "a.py").write_text("def f():\n    from regbench.cli import b\n")
    (fake / "cli" / "b.py").write_text("from regbench.run.a import f\n")
    graph = import_graph(fake)
    assert upward_imports(graph) == ["regbench.run.a -> regbench.cli.b"]
    assert cycles_of(graph) == ["regbench.cli.b -> regbench.run.a -> regbench.cli.b"]


def test_regbench_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exited:
        dispatch(["--help"])
    listed = capsys.readouterr().out
    assert exited.value.code == 0
    assert all(f"    {name} " in listed or f"    {name}\n" in listed for name in COMMANDS)


def test_an_unknown_command_is_refused_naming_the_allowed_ones(capsys):
    with pytest.raises(SystemExit) as exited:
        dispatch(["trian"])
    assert exited.value.code == 2 and "invalid choice: 'trian'" in capsys.readouterr().err


def test_a_plugin_imports_regularizer_from_the_top(tmp_path):
    import regbench
    from regbench.config import registry

    assert regbench.regularizer is registry.regularizer
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        regbench.nothing  # noqa: B018


def test_a_non_editable_install_finds_its_configs_outside_the_checkout(tmp_path):
    """The wheel built from the project, installed into a fresh venv that sees this
    environment's dependencies (a .pth file naming its site-packages: their own .pth files,
    this checkout's editable install among them, are not read), composes a config from its own
    package data, in a folder far from the checkout."""
    source = tmp_path / "source"  # a copy: building writes build/ and egg-info beside it
    shutil.copytree(PROJECT_ROOT / "src", source / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, source)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(wheels), str(source)], check=True, timeout=300)
    target = tmp_path / "venv"
    venv.create(target)
    python = target / "bin" / "python"
    own = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    (Path(own) / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    wheel = next(wheels.glob("regbench-*.whl"))
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "-q", "--force-reinstall",
                    str(wheel)], check=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, **QUIET_TENSORFLOW, "PYTHONNOUSERSITE": "1"}
    env.pop("REGBENCH_HOME", None)
    shown = subprocess.run([str(target / "bin" / "regbench"), "train", "--cfg", "job",
                            "regularizer=l1_l2"], cwd=elsewhere, capture_output=True, text=True,
                           env=env, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "l1_ratio: 0.5" in shown.stdout
    where = subprocess.run([str(python), "-c", "import regbench.locations as l; "
                            "print(l.CONF_DIR); print(l.PROJECT_ROOT)"], cwd=elsewhere,
                           capture_output=True, text=True, env=env, check=True)
    conf_dir, root = where.stdout.split()
    assert conf_dir.startswith(str(target)) and Path(root) == elsewhere


@pytest.mark.parametrize("argv", [["compare", "--bogus"], ["study"], ["path", "walk", "x"],
                                  ["verdict", "l1", "--first", "two"], ["runs", "--nope"]])
def test_a_refused_argument_is_one_line_naming_the_command(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        dispatch(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: regbench {argv[0]}: "), lines
