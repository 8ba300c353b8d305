"""What each job does: embed, atlas, select, fit, evaluate.

A job reads its inputs (the store, the outputs of the jobs it depends on), calls the library's pure
functions, and writes its outputs into its own folder ``jobs/<kind>/<key>/``; ``result.json`` is
written last and atomically, so a folder without it is unfinished and is redone on the next run.
Jobs run the same way in the driver process (local executor) or in a Ray worker.
"""

from __future__ import annotations

import io
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alignkit.io import atomic_write_bytes, atomic_write_text
from alignkit.pipeline.plan import RESULT_FILE, Job, class_indices
from alignkit.registry import Entry, Registry


@dataclass(frozen=True)
class Context:
    """Where a job reads and writes; plain data, so it travels to Ray workers."""

    run_dir: str
    progress: bool = False
    threads: int | None = None
    plugins: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------- I/O
def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows to a Parquet file, atomically."""
    import pandas as pd

    buf = io.BytesIO()
    pd.DataFrame(rows).to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


def read_rows(path: Path) -> list[dict[str, Any]]:
    import pandas as pd

    return pd.read_parquet(path).to_dict("records")


def job_result(job_folder: Path) -> dict[str, Any]:
    """The ``result.json`` of a finished job (raises naming the folder when missing or corrupt)."""
    path = job_folder / RESULT_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: the job has not finished (no result)") from None
    except ValueError as exc:
        raise ValueError(f"{path}: corrupt job result ({exc}); delete the folder to redo the job") from None


def _finish(folder: Path, result: dict[str, Any]) -> dict[str, Any]:
    atomic_write_text(folder / RESULT_FILE, json.dumps(result, indent=2, sort_keys=True, default=_jsonable) + "\n")
    return result


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


#: datasets already read in this process, by (spec, content fingerprint): a worker that runs many jobs
#: reads each dataset once, and a changed file (new fingerprint) is never served from here
_DATASETS: dict[tuple[str, str], Any] = {}


class _Inputs:
    """Reads the outputs of earlier jobs of the same run (datasets and embedded layers)."""

    def __init__(self, run_dir: Path, jobs: dict[str, dict[str, Any]], fingerprints: dict[str, str]) -> None:
        self.run_dir = run_dir
        self.jobs = jobs  # job id -> {"kind", "key"}
        self.fingerprints = fingerprints  # data spec -> fingerprint seen when the plan was made

    def result(self, job_id: str) -> dict[str, Any]:
        info = self.jobs[job_id]
        return job_result(self.run_dir / "jobs" / info["kind"] / info["key"])

    def dataset(self, spec: str) -> Any:
        """The dataset of ``spec``, checked to hold the content the plan was made for."""
        expected = self.fingerprints.get(spec, "")
        cached = _DATASETS.get((spec, expected))
        if cached is not None:
            return cached
        from alignkit.data.spec import dataset_from_spec

        ds = dataset_from_spec(spec)
        if expected and ds.fingerprint() != expected:
            raise RuntimeError(
                f"dataset {spec!r} changed since the run was planned (content fingerprint {ds.fingerprint()}, "
                f"planned {expected}); run again to plan with the new data"
            )
        if len(_DATASETS) > 32:
            _DATASETS.clear()
        _DATASETS[(spec, expected)] = ds
        return ds

    def layers(self, embed_id: str) -> list[str]:
        """The space's layers in the encoder's order (input side first)."""
        return list(self.result(embed_id)["layer_order"])

    def layer(self, embed_id: str, layer: str) -> np.ndarray:
        """One embedded layer, memory-mapped from the store (checked against what the embed job recorded)."""
        res = self.result(embed_id)
        if layer not in res["layers"]:
            raise ValueError(f"space {res['space']!r} has no layer {layer!r}; its layers: {list(res['layers'])}")
        entry = res["layers"][layer]
        path = Path(entry["file"])
        if not path.is_file() or path.stat().st_size != entry["size"]:
            raise FileNotFoundError(
                f"{path}: the embedding of space {res['space']!r}, layer {layer!r}, changed or vanished from the "
                "store since it was made; rerun with --restart (or delete the run's jobs/embed folder)"
            )
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        if list(arr.shape) != entry["shape"]:
            raise ValueError(f"{path}: shape {arr.shape}, the embed job recorded {entry['shape']}")
        return arr


# ---------------------------------------------------------------------------------------------- splits
@dataclass(frozen=True)
class Split:
    rows_a: np.ndarray  # paired rows: item i of the pair is rows_a[i] in A and rows_b[i] in B
    rows_b: np.ndarray
    test: np.ndarray  # indices into the pairs
    pool: np.ndarray  # training candidates (held-out classes removed)
    labels: np.ndarray | None  # labels of the pairs (from A, else B)
    class_names: list[str] | None


def paired_split(inputs: _Inputs, spec: dict[str, Any]) -> Split:
    """Pair A and B by their keys, hold ``test`` pairs out (seeded), drop held-out classes from the pool."""
    from alignkit.data.base import align_keys

    da, db = inputs.dataset(spec["data_a"]), inputs.dataset(spec["data_b"])
    ra, rb = align_keys(da, db, how="inner")
    src = da if da.labels is not None else db
    rows = ra if src is da else rb
    labels = None if src.labels is None else np.asarray(src.labels)[rows]
    names = None if src.class_names is None else list(src.class_names)
    if spec.get("split_by") == "a_item":
        test, pool = _word_split(da, ra, spec)
    else:
        perm = np.random.default_rng([int(spec["seed"]), 7919]).permutation(len(ra))
        test, pool = np.sort(perm[: spec["test"]]), perm[spec["test"] :]
    held = class_indices(spec.get("heldout_classes") or [], names, spec["experiment"])
    if held:
        if labels is None:
            raise ValueError(f"experiments.{spec['experiment']}.fit.heldout_classes: neither space's data has labels")
        pool = pool[~np.isin(labels[pool], held)]
    return Split(ra, rb, test, pool, labels, names)


def pair_words(dataset: Any, rows: np.ndarray) -> np.ndarray:
    """Codes of the items at ``rows`` (equal items, equal codes): the words of a dictionary's pairs."""
    items = dataset.items()
    _, codes = np.unique(np.asarray([items[int(r)] for r in rows], dtype=object).astype(str), return_inverse=True)
    return np.asarray(codes).ravel()


def _word_split(da: Any, ra: np.ndarray, spec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``test`` whole source words (every pair of each), seeded; the other pairs are the pool."""
    codes = pair_words(da, ra)
    order = np.random.default_rng([int(spec["seed"]), 7919]).permutation(int(codes.max()) + 1)
    held = np.isin(codes, order[: spec["test"]])
    return np.nonzero(held)[0], np.nonzero(~held)[0]


def training_rows(split: Split, n_train: int, fit_seed: int, run_seed: int, experiment: str) -> np.ndarray:
    """The first ``n_train`` of a seeded order of the pool: smaller sizes are subsets of larger ones."""
    if n_train > len(split.pool):
        raise ValueError(
            f"experiments.{experiment}.fit.sizes: {n_train} exceeds the {len(split.pool)} training pairs available"
        )
    order = np.random.default_rng([int(run_seed), int(fit_seed), 104729]).permutation(len(split.pool))
    return np.sort(split.pool[order[:n_train]])


def unpaired_sets(
    inputs: _Inputs, s: dict[str, Any], split: Split, layers: tuple[str, str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, Y, seed pairs) for an unsupervised fit of ``n_train`` items per side.

    The training draw (nested across sizes, as for paired fits) is shuffled with the fit seed; the first
    ``seed_pairs`` items are known pairs, appended after the unpaired rows of both sides. "shuffled": X and Y hold
    the next n items, Y's rows in another order; "disjoint": X the next n, Y the n after those.
    """
    n, k = int(s["n_train"]), int(s["seed_pairs"])
    disjoint = s["unpaired"] == "disjoint"
    draw = training_rows(split, (2 if disjoint else 1) * n + k, s["fit_seed"], s["seed"], s["experiment"])
    rng = np.random.default_rng([int(s["seed"]), int(s["fit_seed"]), 15485863])
    draw = rng.permutation(draw)
    known, rest = draw[:k], draw[k:]
    xa, yb = rest[:n], (rest[n : 2 * n] if disjoint else rng.permutation(rest[:n]))
    X = _side(inputs, s["embed_a"], layers[0], split.rows_a[np.concatenate([xa, known])])
    Y = _side(inputs, s["embed_b"], layers[1], split.rows_b[np.concatenate([yb, known])])
    seeds = np.stack([np.arange(n, n + k), np.arange(n, n + k)], axis=1)
    return X, Y, seeds


def _side(inputs: _Inputs, embed_id: str, layer: str, rows: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(inputs.layer(embed_id, layer)[rows], dtype=np.float32)


# ---------------------------------------------------------------------------------------------- kinds
def run_embed(job: Job, folder: Path, inputs: _Inputs, ctx: Context) -> dict[str, Any]:
    from alignkit.encoders import load_encoder
    from alignkit.store import EmbeddingStore

    s = job.spec
    dataset = inputs.dataset(s["data"])
    opts = dict(s["options"])
    if s.get("device") is not None:
        opts.setdefault("device", s["device"])
    encoder = load_encoder(s["encoder"], **opts)
    store = EmbeddingStore(s["store"])
    t0 = time.perf_counter()
    spaces = store.extract(encoder, dataset, s["layers"], progress=ctx.progress)
    layers = {
        name: {
            "file": sp.meta["store_file"],
            "shape": list(sp.shape),
            "size": Path(sp.meta["store_file"]).stat().st_size,
        }
        for name, sp in spaces.items()
    }
    return _finish(
        folder,
        {
            "space": s["space"],
            "data": s["data"],
            "encoder": s["encoder"],
            "encoder_fingerprint": encoder.fingerprint(),
            "dataset": dataset.name,
            "dataset_fingerprint": dataset.fingerprint(),
            "n": len(dataset),
            "store_run": next(iter(spaces.values())).meta["run"],
            "layers": layers,
            "layer_order": list(spaces),  # result.json sorts keys; this keeps the encoder's order
            "seconds": time.perf_counter() - t0,
        },
    )


def _spaces(inputs: _Inputs, embed_id: str, rows: np.ndarray) -> dict[str, np.ndarray]:
    return {name: _side(inputs, embed_id, name, rows) for name in inputs.layers(embed_id)}


#: Columns every atlas row has (NaN where the measure or the config gives none), so tables concatenate.
_ATLAS_NULL_COLUMNS = (
    *("null_mean", "null_std", "p_value", "p_value_fwer"),
    *("q_value_bh", "q_value_by", "ci_low", "ci_high"),
)


def run_atlas(job: Job, folder: Path, inputs: _Inputs, ctx: Context) -> dict[str, Any]:
    from alignkit.atlas import atlas

    s = job.spec
    split = paired_split(inputs, {**s, "test": 0})
    A, B = _spaces(inputs, s["embed_a"], split.rows_a), _spaces(inputs, s["embed_b"], split.rows_b)
    t0 = time.perf_counter()
    res = atlas(
        A,
        B,
        s["measure"],
        n_perm=s["n_perm"],
        seed=s["seed"],
        sample=s["sample"],
        n_boot=s.get("n_boot", 0),
        groups=split.labels if s.get("groups") == "labels" else None,
        group_mode=s.get("group_mode", "within"),
        progress=ctx.progress,
    )
    seconds = time.perf_counter() - t0
    n = min(len(split.rows_a), s["sample"] or len(split.rows_a))
    tags = {"experiment": s["experiment"], "space_a": s["a"], "space_b": s["b"], "measure": s["measure"]}
    idx_a = {k: i for i, k in enumerate(res.names_a)}
    idx_b = {k: i for i, k in enumerate(res.names_b)}
    rows = []
    for r in res.to_rows():
        row = {**tags, **{k: v for k, v in r.items() if k != "measure"}}
        row.update(index_a=idx_a[r["layer_a"]], index_b=idx_b[r["layer_b"]], n=n, n_perm=s["n_perm"])
        for col in _ATLAS_NULL_COLUMNS:
            row.setdefault(col, float("nan"))
        rows.append(row)
    summary = res.summary()
    summary.pop("measure", None)
    summary = {**tags, **summary, "n": n, "n_perm": s["n_perm"]}
    for col in (
        *("best_p_calibrated", "max_null_mean", "best_adjusted", "min_knn_recall", "best_q_bh", "best_q_by"),
        *("n_significant_bh", "n_significant_by", "best_ci_low", "best_ci_high", "final_ci_low", "final_ci_high"),
    ):
        summary.setdefault(col, float("nan"))
    write_rows(folder / "atlas.parquet", rows)
    write_rows(folder / "atlas_summary.parquet", [summary])
    if s.get("pool_sizes"):
        write_rows(folder / "pool_curve.parquet", _pool_curve(s, inputs, split, res, ctx, tags))
    return _finish(folder, {"summary": summary, "seconds": seconds})


def _pool_curve(
    s: dict[str, Any], inputs: _Inputs, split: Split, res: Any, ctx: Context, tags: dict[str, Any]
) -> list[dict[str, Any]]:
    """The last layers' score on nested random pools of every paired item (:func:`alignkit.curve`)."""
    from alignkit.curves import curve

    la, lb = res.names_a[-1], res.names_b[-1]
    X, Y = _side(inputs, s["embed_a"], la, split.rows_a), _side(inputs, s["embed_b"], lb, split.rows_b)
    cur = curve(
        s["measure"], X, Y, s["pool_sizes"], repeats=s["pool_repeats"], n_perm=min(s["n_perm"], 100), seed=s["seed"],
        progress=ctx.progress,
    )  # fmt: skip
    return [{**tags, **r, "measure": s["measure"], "layer_a": la, "layer_b": lb} for r in cur.to_rows()]


def run_select(job: Job, folder: Path, inputs: _Inputs, ctx: Context) -> dict[str, Any]:
    """STRUCTURE's layer selection on training pairs only (never on the held-out items)."""
    from alignkit.atlas import select_layers

    s = job.spec
    split = paired_split(inputs, s)
    pool = np.sort(split.pool)
    A = _spaces(inputs, s["embed_a"], split.rows_a[pool])
    B = _spaces(inputs, s["embed_b"], split.rows_b[pool])
    la, lb, res = select_layers(A, B, measure=s["measure"], k=s["k"], sample=s["sample"], seed=s["seed"])
    rows = [
        {"experiment": s["experiment"], "measure": s["measure"], **{k: v for k, v in r.items() if k != "measure"}}
        | {"chosen": r["layer_a"] == la and r["layer_b"] == lb}
        for r in res.to_rows()
    ]
    write_rows(folder / "layer_selection.parquet", rows)
    return _finish(
        folder,
        {"layer_a": la, "layer_b": lb, "score": float(res.best[2]), "n": int(min(len(pool), s["sample"] or len(pool)))},
    )


def resolve_layers(inputs: _Inputs, spec: dict[str, Any]) -> tuple[str, str]:
    layers = spec["layers"]
    if layers == "best":
        sel = inputs.result(spec["select"])
        return sel["layer_a"], sel["layer_b"]
    if layers == "last":
        return inputs.layers(spec["embed_a"])[-1], inputs.layers(spec["embed_b"])[-1]
    la, lb = layers
    for layer, eid, side in ((la, spec["embed_a"], spec["a"]), (lb, spec["embed_b"], spec["b"])):
        known = inputs.layers(eid)
        if layer not in known:
            where = f"experiments.{spec['experiment']}.fit.layers"
            raise ValueError(f"{where}: space {side!r} has no layer {layer!r}; its layers: {known}")
    return la, lb


def build_aligner(spec: dict[str, Any]) -> Any:
    """The estimator for a fit spec; a head's ``seed`` is the fit seed unless the config fixes it."""
    from alignkit.align import ALIGNERS, make_aligner

    accepted = ALIGNERS.get(spec["aligner"]).schema
    params = dict(spec["params"])
    if "seed" in accepted:
        params.setdefault("seed", spec["fit_seed"])
    if "progress" in accepted:
        params.setdefault("progress", False)
    return make_aligner(spec["aligner"], **params)


def align_views(datasets: list[Any]) -> list[np.ndarray]:
    """Rows of each dataset for the pairing keys all of them share, in the first dataset's order."""
    from alignkit.data.base import align_keys

    maps = []
    for d in datasets[1:]:
        ra, rb = align_keys(datasets[0], d, how="inner")
        maps.append(dict(zip(ra.tolist(), rb.tolist(), strict=True)))
    common = sorted(set.intersection(*(set(m) for m in maps))) if maps else list(range(len(datasets[0])))
    return [np.asarray(common, dtype=np.int64)] + [np.asarray([m[r] for r in common], dtype=np.int64) for m in maps]


@dataclass
class ViewSplit:
    rows: list[np.ndarray]  # item i is rows[v][i] in view v
    test: np.ndarray  # indices into the items
    pool: np.ndarray  # training candidates


def view_split(inputs: _Inputs, spec: dict[str, Any]) -> ViewSplit:
    """Items paired across every view; ``test`` held out with the same seeded draw as a pair's split."""
    rows = align_views([inputs.dataset(d) for d in spec["data"]])
    perm = np.random.default_rng([int(spec["seed"]), 7919]).permutation(len(rows[0]))
    return ViewSplit(rows, np.sort(perm[: spec["test"]]), perm[spec["test"] :])


def _view_layers(inputs: _Inputs, spec: dict[str, Any]) -> list[str]:
    if spec["layers"] == "last":
        return [inputs.layers(e)[-1] for e in spec["embeds"]]
    for layer, eid, view in zip(spec["layers"], spec["embeds"], spec["views"], strict=True):
        if layer not in inputs.layers(eid):
            raise ValueError(
                f"experiments.{spec['experiment']}.fit.layers: space {view!r} has no layer {layer!r}; "
                f"its layers: {inputs.layers(eid)}"
            )
    return list(spec["layers"])


def _run_fit_views(job: Job, folder: Path, inputs: _Inputs, ctx: Context) -> dict[str, Any]:
    s = job.spec
    split = view_split(inputs, s)
    layers = _view_layers(inputs, s)
    train = training_rows(split, s["n_train"], s["fit_seed"], s["seed"], s["experiment"])  # type: ignore[arg-type]
    views = [_side(inputs, e, la, r[train]) for e, la, r in zip(s["embeds"], layers, split.rows, strict=True)]
    model = build_aligner(s)
    t0 = time.perf_counter()
    model.fit(views)
    seconds = time.perf_counter() - t0
    target = folder / "aligner"
    if target.exists():
        shutil.rmtree(target)
    model.save(target)
    row = {
        "experiment": s["experiment"], "method": s["method"], "aligner": type(model).__name__,
        "n_train": s["n_train"], "seed": s["fit_seed"], "views": ",".join(s["views"]), "layers": ",".join(layers),
        "fit_seconds": seconds, "path": str(target.relative_to(Path(ctx.run_dir))),
    }  # fmt: skip
    write_rows(folder / "fits.parquet", [row])
    return _finish(folder, {"layers": layers, "seconds": seconds, "aligner": row["path"]})


def _run_evaluate_views(job: Job, folder: Path, inputs: _Inputs, ctx: Context) -> dict[str, Any]:
    from alignkit.align import ALIGNERS
    from alignkit.evaluate.multiview import multiview_retrieval

    s = job.spec
    fit = inputs.result(s["fit"])
    cls: Any = ALIGNERS.get(s["aligner"]).obj  # an n-way class: its own load()
    model = cls.load(Path(ctx.run_dir) / fit["aligner"])
    split = view_split(inputs, s)
    t0 = time.perf_counter()
    z = [
        np.asarray(model.transform(v, _side(inputs, e, la, r[split.test])))
        for v, (e, la, r) in enumerate(zip(s["embeds"], fit["layers"], split.rows, strict=True))
    ]
    r = s["retrieval"]
    tags = {"experiment": s["experiment"], "method": s["method"], "n_train": s["n_train"], "seed": s["fit_seed"]}
    rows = multiview_retrieval(
        z, ks=r["ks"], pair_scoring=r["scoring"], any_scoring=r["any_scoring"], csls_k=r["csls_k"],
        names=s["views"], task="retrieval", **tags,
    )  # fmt: skip
    write_rows(folder / "evaluations.parquet", rows)
    return _finish(folder, {"n_rows": len(rows), "seconds": time.perf_counter() - t0})


def run_fit(job: Job, folder: Path, inputs: _Inputs, ctx: Context) -> dict[str, Any]:
    if "views" in job.spec:
        return _run_fit_views(job, folder, inputs, ctx)
    s = job.spec
    split = paired_split(inputs, s)
    la, lb = resolve_layers(inputs, s)
    model = build_aligner(s)
    if s.get("pairs") == "none":
        X, Y, seeds = unpaired_sets(inputs, s, split, (la, lb))
        t0 = time.perf_counter()
        model.fit(X, Y, seed_pairs=seeds)
    else:
        train = training_rows(split, s["n_train"], s["fit_seed"], s["seed"], s["experiment"])
        X = _side(inputs, s["embed_a"], la, split.rows_a[train])
        Y = _side(inputs, s["embed_b"], lb, split.rows_b[train])
        t0 = time.perf_counter()
        model.fit(X, Y)
    seconds = time.perf_counter() - t0
    target = folder / "aligner"
    if target.exists():  # left by a killed attempt: no result.json was written, so nothing trusts it
        shutil.rmtree(target)
    model.save(target)
    row = {
        "experiment": s["experiment"],
        "method": s["method"],
        "aligner": type(model).__name__,
        "n_train": s["n_train"],
        "seed": s["fit_seed"],
        "layer_a": la,
        "layer_b": lb,
        "fit_seconds": seconds,
        "path": str(target.relative_to(Path(ctx.run_dir))),
    }
    for extra in ("n_epochs_", "best_epoch_"):
        if hasattr(model, extra):
            row[extra.rstrip("_")] = int(getattr(model, extra))
    if s.get("pairs") == "none":
        row.update(pairs="none", unpaired=s["unpaired"], seed_pairs=s["seed_pairs"])
        row.update(criterion=float(model.criterion_), restarts=json.dumps(model.restarts_))
    write_rows(folder / "fits.parquet", [row])
    return _finish(folder, {"layer_a": la, "layer_b": lb, "seconds": seconds, "aligner": row["path"]})


def run_evaluate(job: Job, folder: Path, inputs: _Inputs, ctx: Context) -> dict[str, Any]:
    from alignkit.align.base import Aligner
    from alignkit.evaluate import retrieval, translation, zero_shot

    if "views" in job.spec:
        return _run_evaluate_views(job, folder, inputs, ctx)
    s = job.spec
    fit = inputs.result(s["fit"])
    model = Aligner.load(Path(ctx.run_dir) / fit["aligner"])
    la, lb = fit["layer_a"], fit["layer_b"]
    split = paired_split(inputs, s)
    test = split.test
    zx = np.asarray(model.transform_x(_side(inputs, s["embed_a"], la, split.rows_a[test])))
    tags = {"experiment": s["experiment"], "method": s["method"], "n_train": s["n_train"], "seed": s["fit_seed"]}
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    names = {"q_to_g": f"{s['a']}->{s['b']}", "g_to_q": f"{s['b']}->{s['a']}"}
    if s["retrieval"]:
        r = s["retrieval"]
        zy = np.asarray(model.transform_y(_side(inputs, s["embed_b"], lb, split.rows_b[test])))
        for scoring in r["scoring"]:
            for row in retrieval(zx, zy, ks=r["ks"], scoring=scoring, csls_k=r["csls_k"]):
                row = {**tags, "task": "retrieval", **row, "direction": names[row["direction"]]}
                rows.append(row)
    if s["zero_shot"]:
        if split.labels is None:
            raise ValueError(f"experiments.{s['experiment']}.evaluate.zero_shot: the data has no labels")
        prompts_ds = inputs.dataset(_prompts_data(inputs, s["embed_prompts"]))
        P = np.ascontiguousarray(inputs.layer(s["embed_prompts"], lb), dtype=np.float32)
        zp = np.asarray(model.transform_y(P))
        held = class_indices(s.get("heldout_classes") or [], split.class_names, s["experiment"])
        order = np.argsort(np.asarray(prompts_ds.labels), kind="stable")
        n_cls = len(set(np.asarray(prompts_ds.labels).tolist()))
        for row in zero_shot(
            zx,
            zp[order],
            split.labels[test],
            templates_per_class=len(order) // n_cls,
            heldout_classes=held or None,
        ):
            row = {**tags, "task": "zero_shot", "direction": f"{s['a']}->{s['b']}", "scoring": "nn", **row}
            if "class" in row and split.class_names is not None:
                row["class"] = split.class_names[int(row["class"])]
            rows.append(row)
    if s.get("bli"):
        rows += _bli_rows(inputs, s, model, split, (la, lb), {**tags, "task": "bli", "direction": names["q_to_g"]})
    if s.get("translation"):
        t = s["translation"]
        pred = np.asarray(model.translate(_side(inputs, s["embed_a"], la, split.rows_a[test])))
        target = _side(inputs, s["embed_b"], lb, split.rows_b[test])
        n_cand = min(int(t["n_candidates"]), len(test))
        for row in translation(pred, target, n_candidates=n_cand, ks=t["ks"], seed=s["fit_seed"]):
            rows.append({**tags, "task": "translation", "direction": names["q_to_g"], "scoring": "nn", **row})
    for row in rows:
        row["layer_a"], row["layer_b"] = la, lb
    write_rows(folder / "evaluations.parquet", rows)
    if s.get("diagnose"):
        xa = _side(inputs, s["embed_a"], la, split.rows_a[test])
        xb = _side(inputs, s["embed_b"], lb, split.rows_b[test])
        zy_all = np.asarray(model.transform_y(xb))
        labels = None if split.labels is None else split.labels[test]
        shared = inputs.result(s["embed_a"])["encoder"] == inputs.result(s["embed_b"])["encoder"]
        drows = aligned_diagnostics(s["diagnose"], (xa, xb), (zx, zy_all), labels, shared)
        drows = [{**tags, **r, "layer_a": la, "layer_b": lb, "n": len(test)} for r in drows]
        write_rows(folder / "diagnostics.parquet", drows)
    return _finish(folder, {"n_rows": len(rows), "seconds": time.perf_counter() - t0})


def _bli_rows(
    inputs: _Inputs, s: dict[str, Any], model: Any, split: Split, layers: tuple[str, str], tags: dict[str, Any]
) -> list[dict[str, Any]]:
    """BLI of the held-out source words against every distinct B item of the pairs (see ``BliEval``)."""
    from alignkit.evaluate import bli

    b = s["bli"]
    tgt_codes = pair_words(inputs.dataset(s["data_b"]), split.rows_b)
    src_codes = pair_words(inputs.dataset(s["data_a"]), split.rows_a)
    vocab_codes, first = np.unique(tgt_codes, return_index=True)
    vocab_of = {int(c): i for i, c in enumerate(vocab_codes)}
    words, word_rows = np.unique(src_codes[split.test], return_index=True)
    word_of = {int(c): i for i, c in enumerate(words)}
    gold: dict[int, set[int]] = {i: set() for i in range(len(words))}
    for p in split.test:
        gold[word_of[int(src_codes[p])]].add(vocab_of[int(tgt_codes[p])])
    zs = np.asarray(model.transform_x(_side(inputs, s["embed_a"], layers[0], split.rows_a[split.test[word_rows]])))
    zt = np.asarray(model.transform_y(_side(inputs, s["embed_b"], layers[1], split.rows_b[first])))
    rows = []
    for scoring in b["scoring"]:
        rows += [{**tags, **r} for r in bli(zs, zt, gold, ks=b["ks"], scoring=scoring, csls_k=b["csls_k"])]
    return rows


_CORE = ("value", "ci_low", "ci_high", "level", "degenerate")


def diagnostic_row(result: dict[str, Any]) -> dict[str, Any]:
    """A diagnostic's tidy row with the fixed columns first and its own details as one JSON column (details differ
    between diagnostics, so spreading them would give a table with clashing column types)."""
    core = {k: result[k] for k in _CORE if k in result}
    details = {k: v for k, v in result.items() if k not in _CORE}
    core["details"] = json.dumps(details, sort_keys=True, default=_jsonable)
    return core


def run_diagnose(job: Job, folder: Path, inputs: _Inputs, ctx: Context) -> dict[str, Any]:
    """One diagnostic over every layer of one space (a layer profile); labels from the space's data."""
    from alignkit.diagnostics import get, profile

    s = job.spec
    ds = inputs.dataset(s["data"])
    n = len(ds)
    rows_idx = np.arange(n)
    if s["sample"] and s["sample"] < n:
        rows_idx = np.sort(np.random.default_rng([int(s["seed"]), 6007]).permutation(n)[: s["sample"]])
    info = get(s["diagnostic"])
    labels = None
    if ds.labels is not None and info.accepts_labels:
        labels = np.asarray(ds.labels)[rows_idx]
    layers = {name: _side(inputs, s["embed"], name, rows_idx) for name in inputs.layers(s["embed"])}
    t0 = time.perf_counter()
    prof = profile(s["diagnostic"], layers, labels=labels, n_boot=s["n_boot"], seed=s["seed"], progress=ctx.progress)
    seconds = time.perf_counter() - t0
    rows = []
    for i, r in enumerate(prof.to_rows()):
        rest = {k: v for k, v in r.items() if k not in ("diagnostic", "layer")}
        rows.append(
            {"space": s["space"], "diagnostic": prof.diagnostic, "layer": r["layer"], "index": i, "n": len(rows_idx)}
            | diagnostic_row(rest)
        )
    write_rows(folder / "diagnostics.parquet", rows)
    return _finish(folder, {"n_rows": len(rows), "seconds": seconds})


def aligned_diagnostics(
    names: list[str],
    raw: tuple[np.ndarray, np.ndarray],
    mapped: tuple[np.ndarray, np.ndarray],
    labels: Any,
    shared: bool = True,
) -> list[dict[str, Any]]:
    """Diagnostics of held-out items before (raw spaces) and after (mapped) alignment: a one-space diagnostic on
    each side, a pair diagnostic on the pair — before alignment only when the raw spaces share coordinates
    (``shared``: one encoder embedded both, e.g. a multilingual model on two languages; two encoders' raw
    coordinates are unrelated even at the same width, so a gap or a paired cosine between them means nothing)."""
    from alignkit.diagnostics import as_row, diagnose, get

    rows = []
    for name in names:
        info = get(name)
        lab = labels if info.accepts_labels else None
        for stage, (x, y) in (("before", raw), ("after", mapped)):
            cases: list[tuple[str, tuple[np.ndarray, ...]]]
            if len(info.inputs) == 1:
                cases = [("a", (x,)), ("b", (y,))]
            elif x.shape[1] == y.shape[1] and (shared or stage == "after"):
                cases = [("pair", (x, y))]
            else:
                cases = []  # a pair diagnostic needs one coordinate system
            for side, arrays in cases:
                res = as_row(diagnose(name, *arrays, labels=lab))
                rows.append({"diagnostic": name, "stage": stage, "side": side} | diagnostic_row(res))
    return rows


def _prompts_data(inputs: _Inputs, embed_id: str) -> str:
    return inputs.result(embed_id)["data"]


Runner = Callable[[Job, Path, _Inputs, Context], dict[str, Any]]

#: Job kinds by name: each runs in a folder of its own and returns its result (see :func:`execute`).
JOB_KINDS: Registry[Entry[Runner]] = Registry("job kind")
for _name, _runner, _what in (
    ("embed", run_embed, "embed one dataset with one encoder into the store (every layer)"),
    ("atlas", run_atlas, "layer x layer scores of one measure, with a max-statistic null"),
    ("select", run_select, "STRUCTURE layer selection on training pairs"),
    ("fit", run_fit, "fit one aligner at one size and seed"),
    ("evaluate", run_evaluate, "evaluate one fitted aligner on held-out items"),
    ("diagnose", run_diagnose, "one diagnostic over every layer of one space"),
):
    JOB_KINDS.add(Entry(_name, _runner, _what))


def execute(job: Job, ctx: Context, jobs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Run one job (in this process) and return its result; ``jobs`` maps every job id to its kind and key."""
    import torch

    if ctx.plugins:  # a fresh worker process has not imported them yet
        from alignkit.pipeline.config import load_plugins

        load_plugins(list(ctx.plugins))
    if ctx.threads:
        torch.set_num_threads(max(1, int(ctx.threads)))
    run_dir = Path(ctx.run_dir)
    folder = job.folder(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    inputs = _Inputs(run_dir, jobs, job.spec.get("fingerprints", {}))
    t0 = time.perf_counter()
    result = JOB_KINDS.get(job.kind).obj(job, folder, inputs, ctx)
    return {"id": job.id, "seconds": time.perf_counter() - t0, **{k: v for k, v in result.items() if k == "summary"}}
