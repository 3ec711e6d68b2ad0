"""The studies' reports in reports/ and docs/results.md's summary of them: every figure the summary
quotes comes from the report its row links to, and every report says how it was made."""

import re

from regbench.locations import PROJECT_ROOT

RESULTS = "docs/results.md"
SECTION = "## What the studies show"
FIGURE = re.compile(r"\[[^\]]*\d[^\]]*\]|[+-]?\d+\.\d+")  # an interval, or a decimal number


def summary_rows() -> list[list[str]]:
    """The cells of the summary table rows that link a report: | [regime](../reports/...) |"""
    section = (PROJECT_ROOT / RESULTS).read_text().split(SECTION, 1)[1].split("\n## ")[0]
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in section.splitlines() if line.startswith("| [")]


def test_every_figure_the_readme_quotes_is_in_the_report_its_row_links():
    rows = summary_rows()
    assert rows, f"{RESULTS} has no summary table under '{SECTION}'"
    for cells in rows:
        link = re.search(r"\]\(\.\./(reports/[^)]+)\)", cells[0])
        assert link, f"the row {cells} links no report"
        report = (PROJECT_ROOT / link.group(1)).read_text()
        for cell in cells[1:]:
            for figure in FIGURE.findall(cell):
                assert figure in report, f"{figure} ({cells[0]}) is not in {link.group(1)}"


def test_every_report_names_its_command_and_commits():
    reports = sorted((PROJECT_ROOT / "reports").glob("*/*.md"))
    assert reports
    for report in reports:
        first = report.read_text().splitlines()[0]
        assert re.match(r"Written by `(python -m regbench\.\w+|regbench \w+).*` at commit "
                        r"[0-9a-f]{40}, from "
                        r"(\d+ runs trained at commit [0-9a-f]{40}|simulated studies \(no "
                        r"runs\))", first), report


def test_the_optimizer_the_docs_say_the_studies_trained_with_is_the_one_their_reports_name():
    """The drift that once had the docs say `adam`: the optimizer is read from every report's
    shared configuration, and it is the one docs/configuration.md names."""
    named = set()
    for report in (PROJECT_ROOT / "reports").rglob("*.md"):
        text = report.read_text()  # `trainer.optimizer=X` or, grouped, `| trainer | ...optimizer=X`
        named.update(re.findall(r"trainer\.optimizer=(\w+)", text))
        named.update(re.findall(r"^\| trainer \|.*\boptimizer=(\w+)", text, flags=re.M))
    assert len(named) == 1
    (optimizer,) = named
    text = (PROJECT_ROOT / "docs" / "configuration.md").read_text()
    assert f"Every study\npublished in reports/ trained with `{optimizer}`" in text
