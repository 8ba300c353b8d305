"""``alignkit metrics``: the measure registry as a table or JSON."""

from __future__ import annotations

import math
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from alignkit.cli._console import out_console, print_json

INVARIANCE_CODES = {
    "orthogonal": "O",
    "isotropic_scale": "S",
    "translation": "T",
    "invertible_linear": "L",
    "permutation": "P",
}


def _fmt_range(r: list[float]) -> str:
    def one(x: float) -> str:
        if math.isinf(x):
            return "∞" if x > 0 else "−∞"
        return "π/2" if abs(x - math.pi / 2) < 1e-12 else f"{x:g}"

    lo, hi = r
    return f"{'(' if math.isinf(lo) else '['}{one(lo)}, {one(hi)}{')' if math.isinf(hi) else ']'}"


def _new_table(title: str | None, caption: str | None = None) -> Table:
    return Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        caption=caption,
        caption_justify="left",
    )


def metrics_cmd(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the registry as JSON (infinite bounds → null)")
    ] = False,
) -> None:
    """List every registered measure with its family, range, direction, symmetry, invariances and cost.

    **Examples**

      $ alignkit metrics

      $ alignkit metrics --json
    """
    from alignkit.metrics import describe

    entries = describe()
    if as_json:
        print_json(entries)
        return
    out = out_console()
    wide = out.width >= 140  # cost strings are long: a narrow terminal gets them in a second table
    table = _new_table(
        "alignkit measures",
        "better: ↑ higher is better, ↓ lower is better.  sym: same score for (A, B) and (B, A).  "
        "invariant to: O orthogonal maps, S isotropic "
        "scaling, T translation, L invertible linear maps, P permuting features.",
    )
    for col, kw in (
        ("name", {"style": "cyan", "no_wrap": True}),
        ("family", {"no_wrap": True}),
        ("range", {"no_wrap": True}),
        ("better", {"justify": "center", "no_wrap": True}),
        ("sym", {"justify": "center", "no_wrap": True}),
        ("invariant to", {"no_wrap": True}),
    ):
        table.add_column(col, **kw)
    if wide:
        table.add_column("cost")
    costs = _new_table(None)
    costs.add_column("name", style="cyan", no_wrap=True)
    costs.add_column("cost of one evaluation")
    for e in entries:
        cells = [
            e["name"],
            e["family"],
            _fmt_range(e["range"]),
            "↑" if e["higher_is_better"] else "↓",
            "yes" if e["symmetric"] else "no",
            " ".join(INVARIANCE_CODES.get(i, i) for i in e["invariances"]) or "—",
        ]
        table.add_row(*cells, *([e["cost"]] if wide else []))
        costs.add_row(e["name"], e["cost"])
    out.print(table)
    if not wide:
        out.print(costs)
