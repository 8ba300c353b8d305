"""Start-up cost of the package and the CLI: ``import alignkit`` and every ``--help`` stay free of torch,
numpy, scipy and pandas; the lazy public names resolve as eager imports did; the CLI modules form no
import cycle and are registered in workflow order."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import alignkit.cli

HEAVY = ("torch", "numpy", "scipy", "pandas")
COMMANDS = ("measure", "metrics", "embed", "atlas", "fit", "evaluate", "run", "report", "demo")
CLI_DIR = Path(alignkit.cli.__file__).parent


def _python(code: str) -> str:
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return res.stdout


def _heavy_loaded(code: str) -> list[str]:
    out = _python(code + f"\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    return json.loads(out.strip().splitlines()[-1])


def test_import_alignkit_is_light():
    assert _heavy_loaded("import alignkit\nassert alignkit.__version__") == []


def test_every_help_is_light():
    code = f"""
from typer.testing import CliRunner
from alignkit.cli import app
runner = CliRunner()
for args in (["--help"], ["--version"], *[[c, "--help"] for c in {COMMANDS!r}]):
    res = runner.invoke(app, args)
    assert res.exit_code == 0, (args, res.output)
"""
    assert _heavy_loaded(code) == []


def test_listing_the_measures_is_light():
    """``alignkit metrics`` reads the registry; the measure modules import torch lazily (alignkit._lazy)."""
    code = """
from typer.testing import CliRunner
from alignkit.cli import app
for args in (["metrics"], ["metrics", "--json"]):
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0 and "mutual_knn" in res.output, res.output
import alignkit
assert len(alignkit.metrics.names()) >= 17
"""
    assert _heavy_loaded(code) in ([], ["numpy"])  # numpy (~0.1 s) is fine; torch, scipy and pandas are not


def test_console_script_help_lists_commands_in_workflow_order():
    script = Path(sys.executable).with_name("alignkit")
    if not script.exists():
        pytest.skip("the alignkit console script is not installed next to this interpreter")
    res = subprocess.run(
        [str(script), "--help"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"},
    )
    assert res.returncode == 0, res.stderr
    rows = [line.split()[1] for line in res.stdout.splitlines() if line.startswith("│ ") and len(line.split()) > 2]
    assert [r for r in rows if r in COMMANDS] == list(COMMANDS)


@pytest.mark.parametrize(
    "first",
    ["from alignkit import atlas as first", "import alignkit.atlas", "from alignkit import *"],
)
def test_lazy_public_names_resolve_like_eager_imports(first):
    # importing the submodule alignkit.atlas binds it on the package: alignkit.atlas must stay the function
    code = f"""
import sys
{first}
import alignkit
from alignkit.atlas import AtlasResult, atlas, k_from_rule, select_layers
from alignkit.metrics import describe, measure
from alignkit.neighbors import KNNGraph, knn_graph
from alignkit.stats import StreamingCKA, bootstrap_ci, permutation_test
assert alignkit.atlas is atlas and callable(alignkit.atlas)
assert alignkit.metrics is sys.modules["alignkit.metrics"] and alignkit.stats is sys.modules["alignkit.stats"]
for name, obj in [("AtlasResult", AtlasResult), ("k_from_rule", k_from_rule), ("select_layers", select_layers),
                  ("describe", describe), ("measure", measure), ("KNNGraph", KNNGraph), ("knn_graph", knn_graph),
                  ("StreamingCKA", StreamingCKA), ("bootstrap_ci", bootstrap_ci),
                  ("permutation_test", permutation_test)]:
    assert getattr(alignkit, name) is obj, name
namespace = {{}}
exec("from alignkit import *", namespace)
assert set(alignkit.__all__) <= set(namespace) and namespace["atlas"] is atlas
assert set(alignkit.__all__) <= set(dir(alignkit))
try:
    alignkit.no_such_name
except AttributeError:
    pass
else:
    raise AssertionError("alignkit.no_such_name resolved")
print("ok")
"""
    assert _python(code).strip() == "ok"


def _cli_imports(path: Path) -> set[str]:
    """Modules of alignkit.cli that ``path`` imports at module level."""
    found = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.module == "alignkit.cli":
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("alignkit.cli."):
            found.add(node.module.removeprefix("alignkit.cli."))
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("alignkit.cli.") for a in node.names if a.name.startswith("alignkit.cli."))
    return found


def test_cli_modules_form_no_import_cycle():
    graph = {p.stem: _cli_imports(p) for p in CLI_DIR.glob("*.py") if p.stem not in ("__init__", "__main__")}
    assert set(COMMANDS) <= set(graph)
    for name, deps in graph.items():
        assert "_app" not in deps, f"{name} imports the app: commands are registered only in _app"
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == "done":
            return
        assert state.get(node) != "active", "import cycle: " + " → ".join([*path, node])
        state[node] = "active"
        for dep in graph.get(node, ()):
            visit(dep, [*path, node])
        state[node] = "done"

    for node in graph:
        visit(node, [])
