"""The repository stands on its own: no reference to a document outside it, and every relative
link in the docs resolves to a file inside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: spellings of a pointer outside the repository
OUTSIDE = re.compile(r"DESIGN\.md|DESIGN §|\.\./shared/|issue #\d|\(issue \d")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", *patterns], cwd=ROOT, capture_output=True, text=True, check=True)
    return [ROOT / line for line in out.stdout.splitlines() if (ROOT / line).is_file()]


def test_no_reference_outside_the_repository():
    files = _tracked("*.py", "*.md", "*.sql", "*.yml", "*.yaml", "*.toml", "Makefile", "Dockerfile")
    hits = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()[:100]}"
        for path in files
        if path.name != Path(__file__).name
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not hits, "references outside the repository:\n" + "\n".join(hits)


def test_relative_links_in_markdown_resolve():
    broken = []
    for path in _tracked("*.md"):
        for target in LINK.findall(path.read_text()):
            if re.match(r"[a-z]+:", target):  # URLs (none point outside; checked above by pattern)
                continue
            if not (path.parent / target).exists():
                broken.append(f"{path.relative_to(ROOT)} -> {target}")
    assert not broken, "links to files that do not exist:\n" + "\n".join(broken)


def test_the_semantics_page_covers_every_section_it_is_cited_for():
    cited = set()
    for path in _tracked("*.py", "*.md", "*.sql", "*.yml"):
        cited |= {int(n) for n in re.findall(r"semantics §(\d+)", path.read_text(errors="replace"))}
    headings = {int(n) for n in re.findall(r"^## §(\d+)", (ROOT / "docs/semantics.md").read_text(), re.M)}
    assert cited, "nothing cites docs/semantics.md"
    assert cited <= headings, f"cited sections without a heading: {sorted(cited - headings)}"
