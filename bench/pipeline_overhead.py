"""Pipeline overhead: the bundled demo config through ``alignkit.pipeline.run`` against a plain script
that calls the same library functions directly (same embeddings, atlases, fits and evaluations).

Both sides start with the embeddings already in the store (a first pass fills it), so the comparison
is the orchestration: planning, job folders, Parquet rows, saving and re-loading each aligner,
gathering tables and run.json. The report is timed separately (it is output, not overhead).

    .venv/bin/python bench/pipeline_overhead.py [--repeats 2] [--config PATH]
    .venv/bin/python bench/pipeline_overhead.py --quick   # 400 verses per language through MiniLM-L6, seconds
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import Results, base_parser, bible_subset, set_threads
from alignkit.pipeline import bundled_config, load_config, run
from alignkit.pipeline.config import RunConfig


def direct(cfg: RunConfig) -> int:
    """The same work as the run, written as a user would without the pipeline. Returns rows computed."""
    from alignkit.atlas import atlas, select_layers
    from alignkit.data.base import align_keys
    from alignkit.data.spec import dataset_from_spec
    from alignkit.encoders import load_encoder
    from alignkit.evaluate import retrieval, zero_shot
    from alignkit.pipeline.jobs import build_aligner
    from alignkit.store import EmbeddingStore

    store = EmbeddingStore(cfg.cache)
    data: dict[str, Any] = {}
    spaces: dict[str, dict[str, np.ndarray]] = {}
    for name, sp in cfg.spaces.items():
        data[name] = dataset_from_spec(sp.data)
        enc = load_encoder(sp.encoder, **({"device": cfg.device} if cfg.device else {}), **sp.options)
        spaces[name] = {k: np.asarray(v) for k, v in store.extract(enc, data[name], sp.layers, progress=False).items()}
    n_rows = 0
    for exp in cfg.experiments.values():
        ra, rb = align_keys(data[exp.a], data[exp.b], how="inner")
        A = {k: np.ascontiguousarray(v[ra]) for k, v in spaces[exp.a].items()}
        B = {k: np.ascontiguousarray(v[rb]) for k, v in spaces[exp.b].items()}
        if exp.atlas:
            for m in exp.atlas.measures:
                n_rows += len(atlas(A, B, m, n_perm=exp.atlas.n_perm, seed=cfg.seed).to_rows())
        if not exp.fit:
            continue
        fit = exp.fit
        perm = np.random.default_rng([cfg.seed, 7919]).permutation(len(ra))
        test, pool = np.sort(perm[: fit.test]), perm[fit.test :]
        if fit.layers == "best":  # STRUCTURE's selection on the training pool, as the run does
            rows = np.sort(pool)
            la, lb, _ = select_layers(
                {k: v[rows] for k, v in A.items()}, {k: v[rows] for k, v in B.items()}, measure=fit.select_measure,
                k=fit.select_k, sample=fit.select_sample, seed=cfg.seed,
            )  # fmt: skip
        else:
            la, lb = (list(A)[-1], list(B)[-1]) if fit.layers == "last" else tuple(fit.layers)
        labels = data[exp.a].labels
        for acfg in fit.aligners.values():
            for size in fit.sizes:
                for seed in fit.seeds:
                    order = np.random.default_rng([cfg.seed, seed, 104729]).permutation(len(pool))
                    train = np.sort(pool[order[:size]])
                    spec = {"aligner": acfg.type, "params": acfg.params, "fit_seed": seed}
                    model = build_aligner(spec).fit(A[la][train], B[lb][train])
                    zx = np.asarray(model.transform_x(A[la][test]))
                    ev = exp.evaluate
                    if ev and ev.retrieval:
                        zy = np.asarray(model.transform_y(B[lb][test]))
                        for scoring in ev.retrieval.scoring:
                            n_rows += len(retrieval(zx, zy, ks=ev.retrieval.ks, scoring=scoring))
                    if ev and ev.zero_shot:
                        P = spaces[ev.zero_shot.prompts][lb]
                        zp = np.asarray(model.transform_y(P))
                        n_cls = len(set(np.asarray(data[ev.zero_shot.prompts].labels).tolist()))
                        rows = zero_shot(zx, zp, np.asarray(labels)[ra][test], templates_per_class=len(P) // n_cls)
                        n_rows += len(rows)
    return n_rows


def quick_config(folder: Path) -> dict[str, Any]:
    """``--quick``: 400 verses per language through MiniLM-L6 (embedded into ``folder``, not the user's cache), one
    experiment with an atlas (10 permutations), STRUCTURE's selection, two aligners × two sizes, retrieval."""
    data = bible_subset(folder / "data", 400)
    return {
        "name": "overhead-quick",
        "cache": str(folder / "cache"),
        "spaces": {name: {"data": spec, "encoder": "offline:minilm-l6"} for name, spec in data.items()},
        "experiments": {
            "bible": {
                "a": "en",
                "b": "es",
                "atlas": {"measures": ["mutual_knn?k=10", "cka"], "n_perm": 10},
                "fit": {
                    "layers": "best",
                    "test": 100,
                    "sizes": [100, 300],
                    "seeds": [0],
                    "aligners": {
                        "procrustes": {"type": "procrustes", "normalize": True, "center": True},
                        "linear-infonce": {"type": "head", "head": "linear", "loss": "infonce", "d_out": 64,
                                           "epochs": 3, "batch_size": 64},
                    },
                },
                "evaluate": {"retrieval": {"ks": [1, 5], "scoring": ["nn", "csls"]}},
            }
        },
    }  # fmt: skip


def main() -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=bundled_config("demo"))
    args = p.parse_args()
    set_threads(args.threads)
    if args.quick:
        args.repeats = 1
    results = Results("pipeline_overhead", args)
    out = Path(tempfile.mkdtemp(prefix="alignkit-bench-"))
    try:
        base = load_config(quick_config(out) if args.quick else args.config)
        cfg = base.model_copy(update={"output": str(out), "report": False})
        run(cfg)  # fills the store; not timed
        t_pipe, t_direct, t_report = [], [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            run(cfg, resume=False)
            t_pipe.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            direct(cfg)
            t_direct.append(time.perf_counter() - t0)
            from alignkit.pipeline.report import write_report

            t0 = time.perf_counter()
            write_report(cfg.run_dir())
            t_report.append(time.perf_counter() - t0)
        best_p, best_d = min(t_pipe), min(t_direct)
        print(f"pipeline {best_p:.1f} s, direct {best_d:.1f} s, overhead {100 * (best_p / best_d - 1):+.1f} %")
        print(f"report {min(t_report):.1f} s; all pipeline {t_pipe}, direct {t_direct}")
        results.add(
            {
                "config": "quick" if args.quick else str(args.config),
                "pipeline_s": best_p,
                "direct_s": best_d,
                "overhead_pct": 100 * (best_p / best_d - 1),
                "report_s": min(t_report),
                "all_pipeline_s": t_pipe,
                "all_direct_s": t_direct,
            },
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
