"""Benchmarks (`make bench`): numbers go into docs/benchmarks.md, never into test assertions."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def write_section(heading: str, lines: list[str], doc: Path = DOC) -> None:
    """Replace the section under `heading` ("## ...") of docs/benchmarks.md with `lines` (appended if absent)."""
    section = heading + "\n\n" + "\n".join(lines).rstrip() + "\n"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    doc.write_text(text)
