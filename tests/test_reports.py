"""The studies' reports in reports/ and README's summary of them: every figure the summary
quotes comes from the report its row links to, and every report says how it was made."""

import re

from regbench.locations import PROJECT_ROOT

SECTION = "## What the studies show"
FIGURE = re.compile(r"\[[^\]]*\d[^\]]*\]|[+-]?\d+\.\d+")  # an interval, or a decimal number


def summary_rows() -> list[list[str]]:
    """The cells of README's summary table rows that link a report: | [regime](reports/...) |"""
    section = (PROJECT_ROOT / "README.md").read_text().split(SECTION, 1)[1].split("\n## ")[0]
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in section.splitlines() if line.startswith("| [")]


def test_every_figure_the_readme_quotes_is_in_the_report_its_row_links():
    rows = summary_rows()
    assert rows, f"README.md has no summary table under '{SECTION}'"
    for cells in rows:
        link = re.search(r"\]\((reports/[^)]+)\)", cells[0])
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
        assert re.match(r"Written by `python -m regbench\.\w+.*` at commit [0-9a-f]{40}, from "
                        r"(\d+ runs trained at commit [0-9a-f]{40}|simulated studies \(no "
                        r"runs\))", first), report
