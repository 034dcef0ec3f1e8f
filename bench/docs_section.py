"""Write a benchmark's section into a markdown file in docs/, replacing the previous run's."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, key: str, lines: list[str], title: str) -> str:
    """Put `lines` between `<!-- key:start -->` / `<!-- key:end -->` markers in `path`."""
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    section = "\n".join([start, *lines, end])
    text = path.read_text() if path.exists() else f"# {title}\n\n"
    if start in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)
    return section
