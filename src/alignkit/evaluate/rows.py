"""Tidy result rows: one dict per number, plus summaries over seeds.

Every evaluation returns ``list[dict]``; each row has ``metric`` and ``value`` and whatever identifies
the setting (``direction``, ``scoring``, sizes, and the caller's ``**tags`` such as ``method``,
``n_train``, ``seed``). Rows go straight into :func:`to_pandas` or :func:`summarize`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from alignkit._common import optional_import

Row = dict[str, Any]


def make_row(metric: str, value: float, tags: dict[str, Any], **fields: Any) -> Row:
    """One row: ``metric``, ``value``, the protocol's own fields, then the caller's tags.

    A tag may not overwrite a field the protocol sets (that would silently mislabel the number).
    """
    clash = sorted(set(tags) & ({"metric", "value"} | set(fields)))
    if clash:
        raise ValueError(f"tags {clash} are set by the evaluation itself; rename them")
    return {"metric": metric, "value": float(value), **fields, **tags}


def summarize(rows: Iterable[Row], by: Sequence[str] = ("method",), *, confidence: float = 0.95) -> list[Row]:
    """Mean, sample std and a t confidence interval of ``value`` per group.

    Rows are grouped by ``metric`` plus the keys in ``by`` (missing keys group as None); typically the
    rows of one group differ only by ``seed``. With n values, mean m and sample std s (ddof = 1)::

        CI = m ± t_{(1+confidence)/2, n−1} · s / √n

    (Student t interval). With n = 1 the std and the interval are NaN (undefined, not zero).
    Groups come out in first-seen order, each as ``{**keys, "n", "mean", "std", "ci_low", "ci_high",
    "ci_halfwidth"}``.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    if isinstance(by, str):
        by = [by]
    keys = ["metric", *[k for k in by if k != "metric"]]
    groups: dict[tuple, list[float]] = {}
    for row in rows:
        if "metric" not in row or "value" not in row:
            raise ValueError(f"every row needs 'metric' and 'value'; got keys {sorted(row)}")
        groups.setdefault(tuple(row.get(k) for k in keys), []).append(float(row["value"]))
    from scipy.stats import t as student_t

    out: list[Row] = []
    for key, vals in groups.items():
        n = len(vals)
        mean = math.fsum(vals) / n
        if n > 1:
            std = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (n - 1))
            half = float(student_t.ppf(0.5 + confidence / 2.0, n - 1)) * std / math.sqrt(n)
        else:
            std = half = math.nan
        out.append(
            {
                **dict(zip(keys, key, strict=True)),
                "n": n,
                "mean": mean,
                "std": std,
                "ci_low": mean - half,
                "ci_high": mean + half,
                "ci_halfwidth": half,
            }
        )
    return out


def to_pandas(rows: Iterable[Row]) -> Any:
    """The rows as a pandas DataFrame (needs the optional ``pandas`` extra)."""
    pd = optional_import("pandas", "pandas", what="to_pandas")
    return pd.DataFrame(list(rows))
