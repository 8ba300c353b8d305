"""A synthetic ``results/<run>/`` folder with realistic numbers, for the report tests.

:func:`make_run_dir` writes ``run.json`` and the four Parquet tables a declarative run produces:
an atlas of 7 × 13 layers with two metrics and permutation nulls, a retrieval experiment
(3 methods × 2 sizes × 3 seeds, both directions, NN and CSLS scoring) and a zero-shot experiment
with 10 classes (two of them held out of training).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

LAYERS_A = ["embeddings", *[f"layer.{i}" for i in range(1, 7)]]  # 7: MiniLM-like
LAYERS_B = ["patch_embed", *[f"blocks.{i}" for i in range(12)]]  # 13: ViT-B-like
METHODS = ("procrustes", "ridge", "mlp_contrastive")
SIZES = (1000, 5000)
SEEDS = (0, 1, 2)
DIRECTIONS = ("en->es", "es->en")
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
HELDOUT = ("frog", "truck")
N_PERM = 100


def atlas_tables(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, summary = [], []
    na, nb = len(LAYERS_A), len(LAYERS_B)
    ia, ib = np.meshgrid(np.arange(na), np.arange(nb), indexing="ij")
    for metric, peak, base, null_level in (("mutual_knn", 0.31, 0.04, 0.035), ("cka", 0.72, 0.25, 0.235)):
        bump = np.exp(-(((ia - 5) / 2.2) ** 2) - ((ib - 9) / 4.0) ** 2)
        scores = base + (peak - base) * bump + rng.normal(0, 0.004, (na, nb))
        null_mean = null_level + rng.normal(0, 0.002, (na, nb))
        null_std = np.full((na, nb), 0.006)
        max_null = null_level + 0.02
        # FWER p: tiny where the score beats the max null clearly, large near chance.
        z = (scores - max_null) / 0.01
        p_fwer = np.clip(1.0 / (1.0 + np.exp(3.0 * z)), 1 / (N_PERM + 1), 1.0)
        p_fwer = np.round(p_fwer * (N_PERM + 1)) / (N_PERM + 1)
        p_fwer = np.maximum(p_fwer, 1 / (N_PERM + 1))
        p_cell = np.maximum(p_fwer / 4, 1 / (N_PERM + 1))
        for i, a in enumerate(LAYERS_A):
            for j, b in enumerate(LAYERS_B):
                rows.append(
                    {
                        "experiment": "minilm_vs_vit",
                        "space_a": "minilm",
                        "space_b": "vit_b16",
                        "measure": metric,
                        "layer_a": a,
                        "layer_b": b,
                        "index_a": i,
                        "index_b": j,
                        "score": float(scores[i, j]),
                        "null_mean": float(null_mean[i, j]),
                        "null_std": float(null_std[i, j]),
                        "p_value": float(p_cell[i, j]),
                        "p_value_fwer": float(p_fwer[i, j]),
                        "n": 2000,
                        "n_perm": N_PERM,
                    }
                )
        bi, bj = np.unravel_index(int(np.argmax(scores)), scores.shape)
        best = float(scores[bi, bj])
        summary.append(
            {
                "experiment": "minilm_vs_vit",
                "space_a": "minilm",
                "space_b": "vit_b16",
                "measure": metric,
                "best_a": LAYERS_A[bi],
                "best_b": LAYERS_B[bj],
                "best_score": best,
                "best_p_calibrated": 1 / (N_PERM + 1),
                "max_null_mean": max_null,
                "best_adjusted": (best - max_null) / (1 - max_null),
                "n": 2000,
                "n_perm": N_PERM,
            }
        )
    return pd.DataFrame(rows), pd.DataFrame(summary)


def _clip01(x: float) -> float:
    return float(min(1.0, max(0.0, x)))


def eval_and_fit_tables(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    evals, fits = [], []
    strength = {"procrustes": 0.0, "ridge": -0.05, "mlp_contrastive": 0.06}
    for exp in ("en_es_retrieval", "cifar10_zero_shot"):
        for method in METHODS:
            for n_train in SIZES:
                for seed in SEEDS:
                    size_gain = 0.12 * np.log10(n_train / 1000)
                    fits.append(
                        {
                            "experiment": exp,
                            "method": method,
                            "aligner": {"procrustes": "Procrustes", "ridge": "Ridge", "mlp_contrastive": "MLPHead"}[
                                method
                            ],
                            "n_train": n_train,
                            "seed": seed,
                            "layer_a": "layer.5",
                            "layer_b": "blocks.8",
                            "fit_seconds": float(
                                (0.05 if method != "mlp_contrastive" else 4.0) * n_train / 1000 * (1 + 0.1 * seed)
                            ),
                            "path": f"aligners/{exp}/{method}/n{n_train}_s{seed}.safetensors",
                        }
                    )
                    base = dict(experiment=exp, method=method, n_train=n_train, seed=seed)
                    if exp == "en_es_retrieval":
                        for direction in DIRECTIONS:
                            for scoring, bonus in (("nn", 0.0), ("csls", 0.04)):
                                r1 = _clip01(0.38 + strength[method] + size_gain + bonus + rng.normal(0, 0.015))
                                vals = {
                                    "R@1": r1,
                                    "R@5": _clip01(r1 + 0.22 + rng.normal(0, 0.01)),
                                    "R@10": _clip01(r1 + 0.30 + rng.normal(0, 0.01)),
                                    "mrr": _clip01(r1 + 0.09 + rng.normal(0, 0.01)),
                                    "median_rank": float(max(1, round(9 - 14 * (r1 - 0.3) + rng.normal(0, 0.5)))),
                                }
                                for metric, value in vals.items():
                                    evals.append(
                                        {
                                            **base,
                                            "task": "retrieval",
                                            "direction": direction,
                                            "scoring": scoring,
                                            "metric": metric,
                                            "value": value,
                                            "class": None,
                                        }
                                    )
                    else:
                        top1 = _clip01(0.55 + strength[method] + size_gain + rng.normal(0, 0.02))
                        vals = {
                            "top1": top1,
                            "top5": _clip01(top1 + 0.3 + rng.normal(0, 0.01)),
                            "mean_class_top1": _clip01(top1 - 0.01 + rng.normal(0, 0.01)),
                            "heldout_top1_among_all": _clip01(top1 - 0.25 + rng.normal(0, 0.02)),
                            "heldout_top1_among_heldout": _clip01(top1 + 0.2 + rng.normal(0, 0.02)),
                        }
                        for metric, value in vals.items():
                            evals.append(
                                {
                                    **base,
                                    "task": "zero_shot",
                                    "direction": None,
                                    "scoring": None,
                                    "metric": metric,
                                    "value": value,
                                    "class": None,
                                }
                            )
                        for k, cls in enumerate(CLASSES):
                            offset = (0.2 - 0.045 * k) - (0.2 if cls in HELDOUT else 0.0)
                            evals.append(
                                {
                                    **base,
                                    "task": "zero_shot",
                                    "direction": None,
                                    "scoring": None,
                                    "metric": "class_top1",
                                    "value": _clip01(top1 + offset + rng.normal(0, 0.03)),
                                    "class": cls,
                                    "heldout": cls in HELDOUT,
                                }
                            )
    return pd.DataFrame(evals), pd.DataFrame(fits)


def run_json(name: str = "demo-run") -> dict:
    jobs = [{"id": "embed:minilm", "kind": "embed", "status": "cached", "seconds": 0.02}]
    jobs.append({"id": "embed:vit_b16", "kind": "embed", "status": "done", "seconds": 83.4})
    jobs.append({"id": "atlas:minilm_vs_vit", "kind": "atlas", "status": "done", "seconds": 41.7})
    for exp in ("en_es_retrieval", "cifar10_zero_shot"):
        for method in METHODS:
            jobs.append({"id": f"fit:{exp}:{method}", "kind": "fit", "status": "done", "seconds": 12.5})
            jobs.append({"id": f"evaluate:{exp}:{method}", "kind": "evaluate", "status": "done", "seconds": 3.1})
    jobs.append({"id": "report", "kind": "report", "status": "done", "seconds": 1.2})
    return {
        "name": name,
        "config": {"name": name, "seed": 0, "experiments": {"minilm_vs_vit": {"kind": "atlas", "n_perm": N_PERM}}},
        "alignkit_version": "0.1.0",
        "versions": {"python": "3.11.9", "numpy": "2.1.3", "torch": "2.5.1", "pandas": "2.2.3", "faiss": "1.9.0"},
        "hardware": {"cpu_count": 16, "platform": "Linux-6.1-x86_64", "torch_threads": 8, "cuda": None},
        "seed": 0,
        "started": "2025-05-04T10:15:02+00:00",
        "finished": "2025-05-04T10:21:40+00:00",
        "wall_seconds": 398.2,
        "jobs": jobs,
    }


def make_run_dir(
    root: str | Path,
    *,
    name: str = "demo-run",
    atlas: bool = True,
    evaluations: bool = True,
    fits: bool = True,
    diagnostics: bool = False,
    seed: int = 0,
) -> Path:
    """Write a synthetic run folder ``root/run`` (``name`` goes into run.json) and return its path.
    Tables switched off are not written at all."""
    rng = np.random.default_rng(seed)
    run_dir = Path(root) / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.json").write_text(json.dumps(run_json(name), indent=2), encoding="utf-8")
    cells, summary = atlas_tables(rng)
    evals, fit_rows = eval_and_fit_tables(rng)
    if atlas:
        cells.to_parquet(run_dir / "atlas.parquet", index=False)
        summary.to_parquet(run_dir / "atlas_summary.parquet", index=False)
    if evaluations:
        evals.to_parquet(run_dir / "evaluations.parquet", index=False)
    if fits:
        fit_rows.to_parquet(run_dir / "fits.parquet", index=False)
    if atlas:
        selection_table(rng).to_parquet(run_dir / "layer_selection.parquet", index=False)
    if diagnostics:
        profile, aligned = diagnostics_tables(rng)
        profile.to_parquet(run_dir / "diagnostics.parquet", index=False)
        aligned.to_parquet(run_dir / "aligned_diagnostics.parquet", index=False)
    return run_dir


def diagnostics_tables(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A layer profile (Thornton with intervals, Fisher J with a ridge on the last layer) of space ``vit``, and
    held-out diagnostics before/after two aligners, with NoC level counts after Procrustes."""
    profile = []
    for i, layer in enumerate(["blocks.0", "blocks.4", "blocks.8"]):
        v = 0.4 + 0.15 * i
        profile.append({"space": "vit", "diagnostic": "thornton", "layer": layer, "index": i, "n": 1000, "value": v,
                        "ci_low": v - 0.02, "ci_high": v + 0.02, "level": 0.95, "degenerate": False,
                        "details": json.dumps({"chance": 0.1})})  # fmt: skip
        profile.append({"space": "vit", "diagnostic": "fisher_ratio", "layer": layer, "index": i, "n": 1000,
                        "value": 2.0 + i + (500.0 if i == 2 else 0.0), "ci_low": np.nan, "ci_high": np.nan,
                        "level": np.nan, "degenerate": False,
                        "details": json.dumps({"regularised": i == 2, "reg": 0.001 if i == 2 else 0.0})})  # fmt: skip
    aligned = []
    for method in ("procrustes", "ridge"):
        for seed in range(3):
            base = {"experiment": "en_es_retrieval", "method": method, "n_train": 5000, "seed": seed, "n": 500}
            for stage in ("before", "after"):
                u = -0.5 if stage == "before" else -3.0 + 0.1 * rng.random()
                aligned.append({**base, "diagnostic": "uniformity", "stage": stage, "side": "a", "value": u,
                                "details": "{}"})  # fmt: skip
            aligned.append({**base, "diagnostic": "modality_gap", "stage": "after", "side": "pair",
                            "value": 0.05 + 0.01 * rng.random(), "details": "{}"})  # fmt: skip
            counts = [1, 3, 10, 40, 120, 200, 100, 26]
            aligned.append({**base, "diagnostic": "alignment_levels", "stage": "after", "side": "pair",
                            "value": 26 / 500, "details": json.dumps({"counts": counts})})  # fmt: skip
    return pd.DataFrame(profile), pd.DataFrame(aligned)


def selection_table(rng: np.random.Generator) -> pd.DataFrame:
    """STRUCTURE's selection atlas of one experiment: 4 × 3 layer pairs in layer order, one chosen."""
    rows = [
        {"experiment": "zs", "measure": "mutual_knn", "layer_a": f"block_{i}", "layer_b": f"layer_{j}",
         "score": float(0.05 + 0.01 * i + 0.001 * j + 0.0001 * rng.random())}
        for i in range(4) for j in range(3)
    ]  # fmt: skip
    rows[7]["score"] = 0.5  # block_2 × layer_1 beats the last pair block_3 × layer_2
    for r in rows:
        r["chosen"] = r["score"] == 0.5
    return pd.DataFrame(rows)
