"""Every ``§x.y`` section citation in the code and docs resolves to a heading of docs/methods.md.

Docstrings and docs cite the methods reference as ``docs/methods.md §1.6`` (or a bare ``§1.6`` inside the docs).
This scans ``src/``, ``docs/``, ``README.md``, ``examples/`` and ``bench/`` for ``§<number>[.<number>]``
citations, ranges included (``§4.1–4.5`` needs 4.1 … 4.5), and checks each against the numbered headings of
docs/methods.md (``## 2 Title``, ``### 1.6 Title``), which must also be unique.

A line that cites the sections of another document (listed in :data:`EXTERNAL_SOURCES`, e.g. Golub & Van Loan's
"Matrix Computations") is skipped.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
METHODS = ROOT / "docs" / "methods.md"
SCANNED = ("src", "docs", "README.md", "examples", "bench")
TEXT_SUFFIXES = {".py", ".md", ".rst", ".toml", ".yaml", ".yml", ".cfg", ".ini"}  # code and prose, not data
SKIP_DIRS = {"__pycache__", ".ipynb_checkpoints", "node_modules"}
# Titles of other documents whose own "§" sections are cited; such lines are not citations of docs/methods.md.
EXTERNAL_SOURCES = ("Matrix Computations",)

NUMBER = r"\d+(?:\.\d+)?"
CITATION = re.compile(rf"§\s*({NUMBER})(?:\s*[–—-]\s*({NUMBER}))?")
HEADING = re.compile(rf"^#{{1,6}}[ \t]+({NUMBER})\.?(?=[ \t]|$)")


@dataclass(frozen=True)
class Citation:
    path: Path
    line: int
    section: str
    text: str

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}: §{self.section} in {self.text.strip()[:100]!r}"


def scanned_files() -> list[Path]:
    files: list[Path] = []
    for name in SCANNED:
        top = ROOT / name
        if top.is_file():
            files.append(top)
        elif top.is_dir():
            for p in sorted(top.rglob("*")):
                rel = p.relative_to(ROOT).parts
                if any(part in SKIP_DIRS or part.endswith(".egg-info") or part.startswith(".") for part in rel):
                    continue
                if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES:
                    files.append(p)
    return files


def expand(start: str, end: str | None) -> list[str]:
    """``4.1``–``4.5`` → 4.1, 4.2, …, 4.5 (and ``2``–``4`` → 2, 3, 4); anything else → both ends."""
    if end is None:
        return [start]
    a, b = start.split("."), end.split(".")
    if len(a) == len(b) == 1 and int(a[0]) <= int(b[0]):
        return [str(i) for i in range(int(a[0]), int(b[0]) + 1)]
    if len(a) == len(b) == 2 and a[0] == b[0] and int(a[1]) <= int(b[1]):
        return [f"{a[0]}.{i}" for i in range(int(a[1]), int(b[1]) + 1)]
    return [start, end]


def citations(path: Path) -> list[Citation]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return []
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if "§" not in line or any(src in line for src in EXTERNAL_SOURCES):
            continue
        for m in CITATION.finditer(line):
            out += [Citation(path, lineno, s, line) for s in expand(m.group(1), m.group(2))]
    return out


def all_citations() -> list[Citation]:
    return [c for p in scanned_files() for c in citations(p)]


def heading_numbers() -> list[str]:
    numbers, fenced = [], False
    for line in METHODS.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and (m := HEADING.match(line)):
            numbers.append(m.group(1))
    return numbers


def test_methods_doc_exists_and_is_numbered():
    assert METHODS.is_file(), "docs/methods.md is missing"
    numbers = heading_numbers()
    assert "1" in numbers and "1.1" in numbers, f"docs/methods.md has no numbered sections: {numbers}"


def test_no_duplicate_section_numbers():
    dupes = sorted(n for n, c in Counter(heading_numbers()).items() if c > 1)
    assert not dupes, f"docs/methods.md numbers these sections more than once: {dupes}"


def test_every_citation_resolves():
    found = all_citations()
    assert any(c.path.is_relative_to(ROOT / "src") for c in found), "no § citations found under src/: scanner broken?"
    known = set(heading_numbers())
    missing = [c.where() for c in found if c.section not in known]
    assert not missing, "citations with no heading in docs/methods.md:\n" + "\n".join(missing)


@pytest.mark.parametrize(
    ("text", "sections"),
    [
        ("see docs/methods.md §1.6.", ["1.6"]),
        ("(docs/methods.md §4.1–4.5)", ["4.1", "4.2", "4.3", "4.4", "4.5"]),
        ("§4.6-4.7 and §2", ["4.6", "4.7", "2"]),
        ('Golub & Van Loan, "Matrix Computations", §5.3 and §8.1', []),
        ("no citation here", []),
    ],
)
def test_scanner(tmp_path, text, sections):
    p = tmp_path / "x.py"
    p.write_text(text + "\n", encoding="utf-8")
    assert [c.section for c in citations(p)] == sections


def test_heading_pattern():
    assert HEADING.match("### 1.6 HSIC and CKA").group(1) == "1.6"
    assert HEADING.match("## 2 Calibration").group(1) == "2"
    assert HEADING.match("## 2. Calibration").group(1) == "2"
    assert HEADING.match("## 10").group(1) == "10"
    assert HEADING.match("## 1.6x") is None
    assert HEADING.match("text ## 1.6") is None
