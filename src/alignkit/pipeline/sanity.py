"""The measure sanity benchmark end to end: a zoo of networks trained from different seeds, their activations, the
four tests of :mod:`alignkit.sanity`, Parquet tables and the report (``alignkit sanity``).

Folder layout (``out``): ``run.json`` (``kind: "sanity"``: settings, the models with their test accuracy, and the
time split between training, activation extraction and each test), the tables ``sanity_layers`` (per-measure
layer-identification accuracy), ``sanity_layer_trials``, ``sanity_output``, ``sanity_output_pairs``,
``sanity_augmentation`` (per measure), ``sanity_augmentation_cases`` (per model and layer),
``sanity_augmentation_scores`` (per noise level), ``sanity_capacity``, ``sanity_capacity_rows``,
and ``report.html`` with one table and one plot per test. Trained networks go to ``zoo_root`` (default
``out/zoo``) and are reused by later runs.
"""

from __future__ import annotations

import io
import json
import platform
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: The measures of ``--quick``: one per family, with the variants whose contrast Kornblith et al. report (PWCCA
#: and linear predictivity are left out: they cost as much as CCA and 10-fold ridge, ~40 % of a quick run).
QUICK_MEASURES = (
    "cka?debiased=false",
    "cka",
    "cka?kernel=rbf_median&threshold=0.5",
    "cca",
    "svcca?keep=10",
    "procrustes",
    "rsa",
    "mutual_knn?k=10",
)
#: Input noise (in units of the normalised pixels' standard deviation) for the augmentation test.
NOISE_LEVELS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
TABLES = {
    "sanity_layers": ("layers", "accuracy"),
    "sanity_layer_trials": ("layers", "trials"),
    "sanity_output": ("output", "correlations"),
    "sanity_output_pairs": ("output", "pairs"),
    "sanity_augmentation": ("augmentation", "by_measure"),
    "sanity_augmentation_cases": ("augmentation", "summary"),
    "sanity_augmentation_scores": ("augmentation", "scores"),
    "sanity_capacity": ("capacity", "summary"),
    "sanity_capacity_rows": ("capacity", "rows"),
}


def _write_table(path: Path, df: Any) -> None:
    from alignkit.io import atomic_write_bytes

    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


def _count(caught: list[warnings.WarningMessage]) -> dict[str, int]:
    """How many warnings of each category the tests raised (e.g. SmallSampleWarning: CCA with n < 10·d)."""
    counts: dict[str, int] = {}
    for w in caught:
        counts[w.category.__name__] = counts.get(w.category.__name__, 0) + 1
    return counts


def _noisy(x: Any, level: float, seed: int) -> Any:
    import torch

    gen = torch.Generator().manual_seed(seed)
    return x + level * torch.randn(x.shape, generator=gen, dtype=x.dtype)


def run_sanity(
    out: str | Path,
    *,
    arch: str = "mlp",
    n_models: int = 5,
    data_root: str | Path | None = None,
    zoo_root: str | Path | None = None,
    measures: Sequence[str] | None = None,
    n_items: int = 2000,
    noise_levels: Sequence[float] = NOISE_LEVELS,
    capacity_maps: Sequence[str] = ("procrustes", "linear", "mlp-64", "mlp-256", "mlp-1024"),
    quick: bool = False,
    seed: int = 0,
    progress: bool = True,
    data: Any = None,
    spec: dict[str, Any] | None = None,
    epochs: int | None = None,
) -> Path:
    """Train (or load) ``n_models`` networks of ``arch`` with seeds 0..n−1, run the four sanity tests on
    ``n_items`` test images and write the tables, ``run.json`` and ``report.html`` under ``out``; returns ``out``.

    ``quick``: 3 MLPs, :data:`QUICK_MEASURES`, 1,000 items, three capacity maps.
    The tests (:mod:`alignkit.sanity`): layer identification over every ordered model pair (Kornblith et al. 2019);
    output correlation on the last hidden layer (ReSi); augmentation (similarity of clean and noisy-input
    activations, every layer of the first model, or of the first two in the full run); capacity control (maps from
    model 0's last hidden layer and from an untrained network's to model 1's, after "The Non-Linear Representation
    Dilemma").

    ``data`` (an :class:`alignkit.zoo.ImageData`) replaces reading Fashion-MNIST from ``data_root``; ``spec`` and
    ``epochs`` replace the zoo's default architecture and training length (small runs, tests).
    """
    import torch

    from alignkit import sanity, zoo
    from alignkit._version import __version__
    from alignkit.io import atomic_write_text
    from alignkit.pipeline.report import write_report

    if quick:
        arch, n_models, n_items = "mlp", 3, min(n_items, 1000)
        measures = list(QUICK_MEASURES) if measures is None else measures
        capacity_maps = ("procrustes", "linear", "mlp-256")
    if n_models < 3:
        raise ValueError(
            f"n_models must be at least 3 (the output-correlation test correlates over pairs); got {n_models}"
        )
    if n_items < 100:
        raise ValueError(f"n_items must be at least 100 test images; got {n_items}")
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    data = zoo.fashion_mnist(data_root) if data is None else data
    spec = zoo.check_spec(spec) if spec is not None else zoo.default_spec(arch)
    models = zoo.train_zoo(spec, n_models, zoo_root or out / "zoo", data=data, epochs=epochs, progress=progress)
    timings["train_or_load"] = time.perf_counter() - t0

    x = data.test_x[:n_items]
    labels = data.test_y[:n_items].numpy()
    t0 = time.perf_counter()
    acts = {f"seed{m.seed}": zoo.activations(m.model, x) for m in models}
    logits = {f"seed{m.seed}": zoo.predict(m.model, x).numpy() for m in models}
    names = list(acts)
    layers = list(acts[names[0]])
    hidden = [name for name in layers if name != "logits"]
    aug_models = names[: 1 if quick else 2]
    noisy = [{m: zoo.activations(models[i].model, _noisy(x, lv, seed + 1 + k)) for i, m in enumerate(aug_models)}
             for k, lv in enumerate(noise_levels)]  # fmt: skip
    control = zoo.init_model(spec, seed=10_000 + seed)
    control_acts = zoo.activations(control, x, layers=[hidden[-1]])
    timings["activations"] = time.perf_counter() - t0

    results: dict[str, Any] = {}
    with warnings.catch_warnings(record=True) as caught:  # hundreds of small-n / degenerate-space warnings: counted
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        results["layers"] = sanity.layer_identification(list(acts.values()), measures, seed=seed, progress=progress)
        timings["layer_identification"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        results["output"] = sanity.output_correlation_test(
            {m: acts[m][hidden[-1]] for m in names}, logits, measures, labels=labels, seed=seed, progress=progress
        )
        timings["output_correlation"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        results["augmentation"] = sanity.augmentation_test(
            {m: acts[m] for m in aug_models}, noisy, list(noise_levels), measures, seed=seed, progress=progress
        )
        timings["augmentation"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        results["capacity"] = sanity.capacity_control(
            acts[names[0]][hidden[-1]],
            control_acts[hidden[-1]],
            acts[names[1]][hidden[-1]],
            maps=capacity_maps,
            seed=seed,
        )
        timings["capacity_control"] = time.perf_counter() - t0

    for table, (test, part) in TABLES.items():
        _write_table(out / f"{table}.parquet", results[test].tables()[part])
    run = {
        "kind": "sanity",
        "name": out.name,
        "alignkit_version": __version__,
        "started": started,
        "finished": time.time(),
        "wall_seconds": time.time() - started,
        "seed": seed,
        "settings": {
            "arch": spec["arch"],
            "spec": spec,
            "n_models": n_models,
            "n_items": int(x.shape[0]),
            "layers": layers,
            "noise_levels": list(noise_levels),
            "augmentation_models": aug_models,
            "capacity_layer": hidden[-1],
            "capacity_maps": list(capacity_maps),
            "quick": quick,
            "measures": [str(m) for m in results["layers"].accuracy["measure"]],
        },
        "models": [
            {"name": f"seed{m.seed}", "seed": m.seed, "test_accuracy": m.test_accuracy, "path": str(m.path)}
            for m in models
        ],
        "control": {"seed": 10_000 + seed, "test_accuracy": zoo.evaluate(control, x, labels)["accuracy"]},
        "timings": timings,
        "warnings": _count(caught),
        "hardware": {"cpu_count": __import__("os").cpu_count(), "torch_threads": torch.get_num_threads(),
                     "platform": platform.platform()},
    }  # fmt: skip
    atomic_write_text(out / "run.json", json.dumps(run, indent=2, default=str))
    write_report(out)
    return out


__all__ = ["NOISE_LEVELS", "QUICK_MEASURES", "TABLES", "run_sanity"]
