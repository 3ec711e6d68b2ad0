"""``regbench identities``: write reports/code-identities.md, the training code's fingerprint at
each commit the published reports were trained at (``regbench.run.identity``)."""

from __future__ import annotations

from regbench.cli import common
from regbench.locations import PROJECT_ROOT, REPORTS_DIR, write_whole
from regbench.run.identity import published_markdown


def main(argv: list[str]) -> int:
    common.ArgumentParser(prog="regbench identities",
                            description=__doc__.splitlines()[0]).parse_args(argv)
    out = REPORTS_DIR / "code-identities.md"
    text = published_markdown(REPORTS_DIR, PROJECT_ROOT)
    write_whole(out, text)
    print(text, end="")
    return 0
