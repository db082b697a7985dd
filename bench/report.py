"""docs/benchmarks.md, one `## ` section per benchmark: each run replaces its own section and leaves the others."""

from __future__ import annotations

import importlib
import os
import platform
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"


def write_section(heading: str, lines: list[str]) -> None:
    """Replaces the section titled `heading` ("## ...") with `lines`, or appends it when absent."""
    section = heading + "\n\n" + "\n".join(lines).rstrip() + "\n"
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)
    print(f"wrote {DOC.relative_to(ROOT)}")


def publish(heading: str, lines: list[str], write: bool) -> None:
    """Prints a benchmark's section and, unless told not to (`--no-write`), writes it into docs/benchmarks.md."""
    print("\n".join(lines))
    if write:
        write_section(heading, lines)


def machine(*modules: str) -> list[str]:
    """Two lines for a section: the CPU, and the versions of python and of `modules`."""
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "unknown")
    except OSError:
        cpu = "unknown"
    versions = [f"python {platform.python_version()}"]
    for name in modules:
        try:
            versions.append(f"{name} {importlib.import_module(name).__version__}")
        except ImportError:
            versions.append(f"{name} not installed")
    return [f"- CPU: {cpu}, nproc {os.cpu_count()}", f"- {', '.join(versions)}"]
