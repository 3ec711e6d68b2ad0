"""README.md says what the project has and does: every measured figure comes from a file a
project command wrote, the configuration table lists what conf/ and the schema hold, and the
layout and docs name every module."""

import dataclasses
import re

import pytest

from regbench import schema
from regbench.locations import CONF_DIR, PROJECT_ROOT, config_groups
from regbench.schema import group_options

README = (PROJECT_ROOT / "README.md").read_text()
RESULTS = "bench/RESULTS.md"
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")  # 0.9867, 1.45; not 3.11 in a version
MEASURE = re.compile(r"\b\d[\d,.]*\s?(?:min|minutes|hours?|ms|s|GiB|MiB|runs an hour|"
                     r"seconds|x)(?!\w)")


def sections(code_blocks: bool = False) -> dict[str, str]:
    """``## heading`` -> its text (subsections included), code blocks left out unless
    ``code_blocks``."""
    text = README if code_blocks else re.sub(r"```.*?```", "", README, flags=re.S)
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def linked_files(text: str) -> list[str]:
    return sorted(set(re.findall(r"\]\(((?:reports|bench)/[^)#]+)\)", text)))


def backing(section: str, text: str) -> list[str]:
    """The files a section's figures must come from: its linked reports, or RESULTS.md."""
    return [RESULTS] if section == "Performance" else linked_files(text)


MEASURED = ("What the studies show", "Performance", "Decided verdicts: the sequential design",
            "Test your own regularizer")


@pytest.mark.parametrize("section", MEASURED)
def test_every_figure_of_a_measured_section_is_in_a_file_it_names(section):
    text = sections()[section]
    files = backing(section, text)
    assert files, f"{section} names no file its figures come from"
    content = "\n".join((PROJECT_ROOT / name).read_text() for name in files)
    for figure in DECIMAL.findall(text):
        assert figure in content, f"{figure} in '{section}' is in none of {files}"


def test_no_other_section_quotes_a_measurement():
    """Elsewhere a decimal is a setting, a constant or a version (it stands in conf/, src/,
    pyproject.toml or the Makefile), and no duration, memory size or rate is quoted."""
    code = "\n".join(p.read_text() for p in [
        *CONF_DIR.rglob("*.yaml"), *(PROJECT_ROOT / "src").rglob("*.py"),
        PROJECT_ROOT / "pyproject.toml", PROJECT_ROOT / "Makefile"])
    for section, text in sections().items():
        if section in MEASURED:
            continue
        for figure in DECIMAL.findall(text):
            assert figure in code, f"{figure} in '{section}' is neither a setting nor measured"
        assert not MEASURE.findall(text), f"'{section}' quotes {MEASURE.findall(text)}"


def configuration_rows() -> dict[str, str]:
    """The Configuration section's table rows: each name in the first cell (`a`, `b`) -> the
    row."""
    text = sections()["Configuration"]
    return {name.strip().strip("`"): line for line in text.splitlines()
            if line.startswith("| `") for name in line.split("|")[1].split(",")}


@pytest.mark.parametrize("group", [*config_groups(), "hydra/launcher"])
def test_the_configuration_table_lists_every_option_of_every_group(group):
    row = configuration_rows().get(group)
    assert row, f"the configuration table has no row for {group}"
    for option in group_options(group):
        assert f"`{option}`" in row, f"{group} option {option} is not in its row"


SCHEMA_NODES = {"data": schema.DataConfig, "model": schema.ModelConfig,
                "trainer": schema.TrainerConfig, "mlflow": schema.MlflowConfig}


@pytest.mark.parametrize("node", SCHEMA_NODES)
def test_the_key_table_lists_every_key_with_its_allowed_values(node):
    rows = configuration_rows()
    for field in dataclasses.fields(SCHEMA_NODES[node]):
        if field.name == "name":  # set by the option chosen
            continue
        key = f"{node}.{field.name}"
        assert key in rows, f"the key table has no row for {key}"
        for value in schema.ALLOWED.get(key, ()):
            assert f"`{value}`" in rows[key], f"{key}'s value {value} is not in its row"


def test_every_module_is_in_the_layout_and_the_architecture_table():
    modules = sorted(p.stem for p in (PROJECT_ROOT / "src" / "regbench").glob("*.py")
                     if p.stem != "__init__")
    layout = sections(code_blocks=True)["Layout"]
    architecture = (PROJECT_ROOT / "docs" / "architecture.md").read_text()
    table = "\n".join(line for line in architecture.splitlines() if line.startswith("| `"))
    for module in modules:
        assert re.search(rf"\b{module}\b", layout), f"README's Layout leaves out {module}"
        assert f"`{module}`" in table, f"docs/architecture.md's table leaves out {module}"


def test_arm_is_defined_where_it_is_first_used():
    first = README.index(" arm")
    definition = README.index("An *arm* is")
    assert definition < first + 400, "README uses 'arm' well before it says what one is"
