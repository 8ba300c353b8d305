"""The docs are tested: every ```python block of docs/*.md runs, every name they cite exists, every CLI line
names a real command and real options.

Per page, the ```python blocks run in order in one namespace, in a fresh temporary working folder (with
``$ALIGNKIT_CACHE`` inside it). Directives on a block's first line:

- ``# docs: no-run``: shown, not executed (real models, Ray clusters, ...); its names are still checked;
- ``# docs: file NAME`` (python or yaml blocks): written to ``NAME`` in the working folder, not executed,
  so later blocks can use it (a plugin file, a run config).

Run configs: every ```yaml block holding a run config (without plugins) validates and plans.
Names: ``import``/``from ... import`` of ``alignkit`` modules and ``alignkit.a.b`` attribute chains in
every python block (of the docs and the README), and every ```alignkit.a.b``` written in backticks in the
prose, must resolve. CLI: every ``alignkit <command> ...`` line of a ```bash block must name a command whose
``--help`` works (typer's CliRunner on :data:`alignkit.cli.app`), and each ``--option`` it uses must appear
in that help.
"""

from __future__ import annotations

import ast
import importlib
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = (
    *("spaces", "measures", "statistics", "diagnostics", "aligners", "evaluations", "runs", "architecture"),
    "networks",
    "multiview",
)

FENCE = re.compile(r"^```([A-Za-z0-9_+-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
DIRECTIVE = re.compile(r"^#\s*docs:\s*(no-run\b|file\s+(\S+)).*$")
CITED = re.compile(r"`(alignkit(?:\.[A-Za-z_]\w*)+)")


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    line: int  # line of the first code line in the markdown file
    directive: str | None  # "no-run", "file" or None
    filename: str | None


def blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        code = m.group(2)
        first = code.splitlines()[0].strip() if code.strip() else ""
        d = DIRECTIVE.match(first)
        directive = None if d is None else ("file" if d.group(2) else "no-run")
        line = text.count("\n", 0, m.start(2)) + 1
        out.append(Block(m.group(1).lower(), code, line, directive, d.group(2) if d else None))
    return out


def page(name: str) -> Path:
    return DOCS / f"{name}.md"


def all_docs() -> list[Path]:
    return [*sorted(DOCS.glob("*.md")), README]


def test_every_page_exists_and_links_from_the_readme():
    readme = README.read_text(encoding="utf-8")
    for name in PAGES:
        p = page(name)
        assert p.is_file(), f"{p} is missing"
        n = len(p.read_text(encoding="utf-8").splitlines())
        assert 40 <= n <= 200, f"{p.name}: {n} lines; keep pages concise"
        assert f"docs/{name}.md" in readme, f"README.md does not link docs/{name}.md"
        assert any(b.lang == "python" and b.directive is None for b in blocks(p)), f"{p.name}: no runnable snippet"


@pytest.fixture
def one_thread():
    """Snippets are small: one BLAS/torch thread is fastest, and keeps a loaded 2-core machine from
    oversubscribing (several times slower with the default thread count under load)."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("name", PAGES)
def test_snippets_run(name, tmp_path, monkeypatch, one_thread):
    path = page(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ALIGNKIT_CACHE", str(tmp_path / "alignkit-cache"))
    namespace: dict = {"__name__": f"docs_{name}"}
    ran = 0
    for b in blocks(path):
        if b.directive == "file":
            assert b.lang in ("python", "yaml"), f"{path.name}:{b.line}: '# docs: file' needs a python or yaml block"
            (tmp_path / b.filename).write_text(b.code, encoding="utf-8")
        elif b.lang == "python" and b.directive is None:
            # Pad so that tracebacks show the line number in the markdown file.
            exec(compile("\n" * (b.line - 1) + b.code, str(path), "exec"), namespace)
            ran += 1
    assert ran, f"{path.name}: nothing ran"


# ------------------------------------------------------------------------------------------------ names
def _resolve(dotted: str) -> None:
    """Import the longest importable module prefix of ``dotted``, then getattr the rest."""
    parts = dotted.split(".")
    obj, i = None, len(parts)
    while i > 0:
        try:
            obj = importlib.import_module(".".join(parts[:i]))
            break
        except ModuleNotFoundError as exc:
            if exc.name is None or not ".".join(parts[:i]).startswith(exc.name):
                raise
            i -= 1
    assert obj is not None, f"{dotted}: no importable module"
    for attr in parts[i:]:
        assert hasattr(obj, attr), f"{dotted}: {'.'.join(parts[:i])} has no attribute {attr!r}"
        obj = getattr(obj, attr)


def _attribute_chain(node: ast.Attribute) -> str | None:
    parts = []
    cur: ast.AST = node
    while isinstance(cur, ast.Attribute):
        parts.append(cur.attr)
        cur = cur.value
    if isinstance(cur, ast.Name) and cur.id == "alignkit":
        return ".".join(["alignkit", *reversed(parts)])
    return None


def cited_names(path: Path) -> set[str]:
    names = set(CITED.findall(path.read_text(encoding="utf-8")))
    for b in blocks(path):
        if b.lang != "python":
            continue
        tree = ast.parse(b.code, filename=f"{path.name}:{b.line}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names if a.name.split(".")[0] == "alignkit")
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "alignkit":
                names.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Attribute) and (chain := _attribute_chain(node)):
                names.add(chain)
    return names


@pytest.mark.parametrize("path", all_docs(), ids=lambda p: p.name)
def test_cited_names_exist(path):
    problems = []
    for dotted in sorted(cited_names(path)):
        try:
            _resolve(dotted)
        except (AssertionError, ImportError) as exc:
            problems.append(str(exc))
    assert not problems, f"{path.name}: " + "; ".join(problems)


# ------------------------------------------------------------------------------------------------ configs
@pytest.mark.parametrize("path", all_docs(), ids=lambda p: p.name)
def test_run_configs_validate_and_plan(path, tmp_path):
    """Every ```yaml run config (one with spaces and experiments, and no plugins) validates and plans
    (which checks the data specs and that the sizes fit the pairs); no model is loaded."""
    import yaml

    from alignkit.pipeline import load_config, plan_run

    for b in blocks(path):
        data = yaml.safe_load(b.code) if b.lang == "yaml" else None
        if isinstance(data, dict) and "spaces" in data and "experiments" in data and not data.get("plugins"):
            plan = plan_run(load_config(data), base=str(tmp_path))
            assert plan.jobs, f"{path.name}:{b.line}: the config plans no job"


# ------------------------------------------------------------------------------------------------ CLI
def cli_lines(path: Path) -> list[tuple[int, list[str]]]:
    """``(line, argv after 'alignkit')`` of every alignkit invocation in the bash blocks."""
    out = []
    for b in blocks(path):
        if b.lang not in ("bash", "sh", "shell", "console"):
            continue
        for offset, raw in enumerate(b.code.splitlines()):
            line = raw.strip().removeprefix("$ ")
            line = re.sub(r"^(\S+=\S+\s+)+", "", line)  # leading VAR=value assignments
            words = shlex.split(line, comments=True) if line else []
            if words and Path(words[0]).name == "alignkit":
                out.append((b.line + offset, words[1:]))
    return out


def _help(args: list[str]) -> str:
    from typer.testing import CliRunner

    from alignkit.cli import app

    res = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
    assert res.exit_code == 0, f"alignkit {' '.join(args)} --help failed: {res.output}"
    return res.output


def test_cli_lines_name_real_commands_and_options():
    invocations = [(p, line, argv) for p in all_docs() for line, argv in cli_lines(p)]
    assert invocations, "no alignkit command lines found"
    helps: dict[str, str] = {}
    for p, line, argv in invocations:
        command = argv[0] if argv and not argv[0].startswith("-") else ""
        if command not in helps:
            helps[command] = _help([command] if command else [])
        for word in argv[1:] if command else argv:
            if word.startswith("--"):
                option = word.split("=", 1)[0]
                found = re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", helps[command])
                assert found, f"{p.name}:{line}: `alignkit {command}` has no option {option}"


def test_top_level_help_lists_the_commands():
    text = _help([])
    for command in ("measure", "metrics", "embed", "atlas", "fit", "evaluate", "run", "report", "demo"):
        assert re.search(rf"^\W*{command}\s", text, re.MULTILINE), f"`alignkit --help` does not list {command}"


def test_every_diagnostic_is_documented():
    from alignkit.diagnostics import get, names

    text = page("diagnostics").read_text(encoding="utf-8")
    ours = [n for n in names() if get(n).func.__module__.startswith("alignkit.")]  # not the pages' own examples
    missing = [n for n in ours if f"`{n}`" not in text]
    assert not missing, f"docs/diagnostics.md does not list {missing}"
