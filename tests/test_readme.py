"""README.md and docs/ say what the project has and does: every measured figure comes from a
file a project command wrote, the configuration table lists what conf/ and the schema hold, the
architecture table names every module, and the README stays short."""

import dataclasses
import re

import pytest

from regbench.cli.main import COMMANDS
from regbench.config import schema
from regbench.config.schema import group_options
from regbench.locations import CONF_DIR, PROJECT_ROOT, config_groups

README = "README.md"
RESULTS = "bench/RESULTS.md"
DOCUMENTS = (README, *sorted(f"docs/{p.name}" for p in (PROJECT_ROOT / "docs").glob("*.md")))
MAX_README_LINES = 250
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")  # 0.9867, 1.45; not 3.11.4 in a version
MEASURE = re.compile(r"\b\d[\d,.]*\s?(?:min|minutes|hours?|ms|s|GiB|MiB|runs an hour|"
                     r"seconds|x)(?!\w)")
# the sections whose figures are measured, per document (each names the files they come from);
# every section of the results and the regularizer's page is
MEASURED = {README: ("What it found", "A first study"),
            "docs/performance.md": ("Performance",),
            "docs/statistics.md": ("Decided verdicts: the sequential design",)}
ALL_MEASURED = ("docs/results.md", "docs/regularizers.md")


def text_of(document: str) -> str:
    return (PROJECT_ROOT / document).read_text()


def sections(document: str = README, code_blocks: bool = False) -> dict[str, str]:
    """``## heading`` -> its text (subsections included), code blocks left out unless
    ``code_blocks``."""
    text = text_of(document)
    text = text if code_blocks else re.sub(r"```.*?```", "", text, flags=re.S)
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def linked_files(text: str) -> list[str]:
    return sorted(set(re.findall(r"\]\((?:\.\./)?((?:reports|bench)/[^)#]+)\)", text)))


def backing(document: str, text: str) -> list[str]:
    """The files a section's figures must come from: its linked reports, or RESULTS.md."""
    return [RESULTS] if document == "docs/performance.md" else linked_files(text)


def measured_sections() -> list[tuple[str, str]]:
    return [*((document, section) for document, names in MEASURED.items() for section in names),
            *((document, section) for document in ALL_MEASURED for section in sections(document))]


@pytest.mark.parametrize(("document", "section"), measured_sections())
def test_every_figure_of_a_measured_section_is_in_a_file_it_names(document, section):
    text = sections(document)[section]
    files = backing(document, text)
    assert files, f"{document}: {section} names no file its figures come from"
    content = "\n".join((PROJECT_ROOT / name).read_text() for name in files)
    for figure in DECIMAL.findall(text):
        assert figure in content, f"{figure} in {document}: '{section}' is in none of {files}"


@pytest.mark.parametrize("document", DOCUMENTS)
def test_no_other_section_quotes_a_measurement(document):
    """Elsewhere a decimal is a setting, a constant or a version (it stands in conf/, src/,
    pyproject.toml or the Makefile), and no duration, memory size or rate is quoted."""
    code = "\n".join(p.read_text() for p in [
        *CONF_DIR.rglob("*.yaml"), *(PROJECT_ROOT / "src").rglob("*.py"),
        PROJECT_ROOT / "pyproject.toml", PROJECT_ROOT / "Makefile"])
    measured = {s for d, s in measured_sections() if d == document}
    for section, text in sections(document).items():
        if section in measured:
            continue
        for figure in DECIMAL.findall(text):
            assert figure in code, f"{figure} in {document}: '{section}' is neither a setting " \
                "nor measured"
        assert not MEASURE.findall(text), f"{document}: '{section}' quotes " \
            f"{MEASURE.findall(text)}"


def test_the_readme_is_short_and_links_every_document():
    readme = text_of(README)
    assert len(readme.splitlines()) <= MAX_README_LINES
    for document in DOCUMENTS[1:]:
        assert f"]({document})" in readme, f"README does not link {document}"


def test_the_readme_lists_every_command():
    table = sections()["Commands"]
    for name in COMMANDS:
        assert f"`regbench {name}" in table, f"README's command table leaves out {name}"


def configuration_rows() -> dict[str, str]:
    """The Configuration section's table rows: each name in the first cell (`a`, `b`) -> the
    row."""
    text = sections("docs/configuration.md")["Configuration"]
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


def test_every_module_is_in_the_architecture_table_and_every_package_in_the_layout():
    package = PROJECT_ROOT / "src" / "regbench"
    modules = sorted(".".join(p.relative_to(package).with_suffix("").parts)
                     for p in package.rglob("*.py") if p.stem not in ("__init__", "__main__"))
    layout = sections(code_blocks=True)["Layout"]
    architecture = text_of("docs/architecture.md")
    table = "\n".join(line for line in architecture.splitlines() if line.startswith("| `"))
    for module in modules:
        assert f"`{module}`" in table, f"docs/architecture.md's table leaves out {module}"
    for folder in (p for p in package.iterdir() if (p / "__init__.py").is_file()):
        assert f"  {folder.name}/" in layout, f"README's Layout leaves out {folder.name}/"


def test_arm_is_defined_where_it_is_first_used():
    readme = text_of(README)
    first = readme.index(" arm")
    definition = readme.index("An *arm* is")
    assert definition < first + 400, "README uses 'arm' well before it says what one is"
