"""Reading what a run left in its folder: ``run.json`` and the Parquet tables, any of which may be
missing, empty or unreadable (the report then says so instead of failing)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

#: The Parquet tables the report reads (``<name>.parquet`` in the run folder).
TABLES = (
    *("atlas", "atlas_summary", "pool_curve", "layer_selection"),
    *("fits", "evaluations", "diagnostics", "aligned_diagnostics"),
    *("sanity_layers", "sanity_layer_trials", "sanity_output", "sanity_output_pairs", "sanity_augmentation"),
    *("sanity_augmentation_cases", "sanity_augmentation_scores", "sanity_capacity", "sanity_capacity_rows"),
)


@dataclass
class RunData:
    """A run folder's ``run.json`` (``{}`` when missing or broken) and its non-empty tables."""

    run_dir: Path
    run: dict[str, Any] = field(default_factory=dict)
    run_error: str | None = None
    tables: dict[str, pd.DataFrame | None] = field(default_factory=dict)
    table_errors: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.run.get("name") or self.run_dir.name)

    @property
    def jobs(self) -> list[dict[str, Any]]:
        return [j for j in self.run.get("jobs") or [] if isinstance(j, dict)]


def load_run(run_dir: str | Path) -> RunData:
    """Read ``run.json`` and every table of :data:`TABLES`; problems are recorded, not raised."""
    data = RunData(Path(run_dir))
    path = data.run_dir / "run.json"
    try:
        data.run = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data.run, dict):
            raise ValueError("run.json does not hold an object")
    except FileNotFoundError:
        data.run, data.run_error = {}, "run.json is missing"
    except (OSError, ValueError) as exc:
        data.run, data.run_error = {}, f"run.json could not be read: {exc}"
    for name in TABLES:
        data.tables[name] = _read_table(data, name)
    return data


def _read_table(data: RunData, name: str) -> pd.DataFrame | None:
    path = data.run_dir / f"{name}.parquet"
    if not path.exists():
        return None
    import pandas as pd

    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # a corrupt table must not take the whole report down
        data.table_errors[name] = f"{path.name} could not be read: {type(exc).__name__}: {exc}"
        return None
    return df if len(df) else None


def clean(v: Any) -> Any:
    """None for missing values (None, NaN, pandas NA), plain Python scalars otherwise."""
    if v is None:
        return None
    try:
        import pandas as pd

        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(v, "item"):
        try:
            return v.item()
        except (ValueError, AttributeError):
            pass
    return v


def finite(v: Any) -> bool:
    """``v`` is a finite number (after :func:`clean`)."""
    v = clean(v)
    return isinstance(v, (int, float)) and math.isfinite(v)


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of ``df`` as dicts of clean Python values."""
    return [{k: clean(v) for k, v in r.items()} for r in df.to_dict("records")]


def eval_records(data: RunData) -> list[dict[str, Any]]:
    """The evaluation rows, with the identifying columns as strings and ``n_train`` as an int."""
    df = data.tables["evaluations"]
    if df is None or "metric" not in df.columns or "value" not in df.columns:
        return []
    recs = records(df)
    for r in recs:
        for k in ("experiment", "method", "task", "direction", "scoring", "metric"):
            if r.get(k) is not None:
                r[k] = str(r[k])
        if finite(r.get("n_train")):
            r["n_train"] = int(r["n_train"])
    return recs


def summarize(recs: list[dict[str, Any]], by: tuple[str, ...]) -> list[dict[str, Any]]:
    """Mean and Student-t interval over seeds per group (:func:`alignkit.evaluate.rows.summarize`)."""
    from alignkit.evaluate.rows import summarize as summarize_rows

    rows = [r for r in recs if finite(r.get("value"))]
    return summarize_rows(rows, by=by) if rows else []
