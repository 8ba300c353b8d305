"""Ray executor against the local one on the same machine: atlases of three encoders on the same items.

1,000 bundled Fashion-MNIST images through MobileNetV2 (every block) and their class captions through
MiniLM-L6 and multilingual-e5-small (every layer): three atlases (image × MiniLM, image × e5,
MiniLM × e5), each with mutual kNN and debiased CKA and a 100-permutation max-statistic null. The
embeddings are cached first (not timed); each timed run redoes every atlas job (``resume=False``).
Ray is timed twice: starting its own local cluster inside the run, and on a cluster already started.

    .venv/bin/python bench/ray_vs_local.py [--repeats 1]
    .venv/bin/python bench/ray_vs_local.py --quick   # 200 verses, two text encoders, 10 permutations
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from _common import Results, base_parser, bible_subset, set_threads
from alignkit.pipeline import load_config, run


def config(out: Path, n_perm: int) -> dict:
    measures = {"measures": ["mutual_knn?k=10", "cka"], "n_perm": n_perm}
    return {
        "name": "three-encoders",
        "output": str(out),
        "report": False,
        "spaces": {
            "image": {
                "data": "sample:fashion-mnist",
                "encoder": "offline:mobilenet-v2",
                "options": {"input_size": 112},
            },
            "minilm": {"data": "captions:sample:fashion-mnist", "encoder": "offline:minilm-l6"},
            "e5": {"data": "captions:sample:fashion-mnist", "encoder": "offline:e5-small"},
        },
        "experiments": {
            "image-minilm": {"a": "image", "b": "minilm", "atlas": measures},
            "image-e5": {"a": "image", "b": "e5", "atlas": measures},
            "minilm-e5": {"a": "minilm", "b": "e5", "atlas": measures},
        },
    }


def quick_config(out: Path, n_perm: int) -> dict:
    """``--quick``: 200 verses per language through MiniLM-L6 (English, Spanish) and multilingual-e5-small
    (Spanish), three atlases of the same two measures, embedded into ``out`` (not the user's cache)."""
    data = bible_subset(out / "data", 200)
    measures = {"measures": ["mutual_knn?k=10", "cka"], "n_perm": n_perm}
    return {
        "name": "three-encoders-quick",
        "output": str(out),
        "cache": str(out / "cache"),
        "report": False,
        "spaces": {
            "en": {"data": data["en"], "encoder": "offline:minilm-l6"},
            "es": {"data": data["es"], "encoder": "offline:minilm-l6"},
            "es-e5": {"data": data["es"], "encoder": "offline:e5-small"},
        },
        "experiments": {
            "en-es": {"a": "en", "b": "es", "atlas": measures},
            "en-e5": {"a": "en", "b": "es-e5", "atlas": measures},
            "es-e5": {"a": "es", "b": "es-e5", "atlas": measures},
        },
    }


def tables(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "atlas.parquet")


def main() -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--perm", type=int, default=100)
    args = p.parse_args()
    set_threads(args.threads)
    if args.quick:
        args.perm, args.repeats = 10, 1
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    results = Results("ray_vs_local", args)
    out = Path(tempfile.mkdtemp(prefix="alignkit-ray-bench-"))
    try:
        cfg = load_config(quick_config(out, args.perm) if args.quick else config(out, args.perm))
        run(cfg)  # embeddings into the store; not timed
        times: dict[str, list[float]] = {"local": [], "ray (starts a local cluster)": [], "ray (cluster up)": []}
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            local = run(cfg, resume=False)
            times["local"].append(time.perf_counter() - t0)
            reference = tables(local.run_dir)
            t0 = time.perf_counter()
            run(cfg, resume=False, executor="ray")
            times["ray (starts a local cluster)"].append(time.perf_counter() - t0)
            pd.testing.assert_frame_equal(reference, tables(local.run_dir))
            import ray

            ray.init(include_dashboard=False, log_to_driver=False, num_cpus=args.threads)
            try:
                t0 = time.perf_counter()
                run(cfg, resume=False, executor="ray")
                times["ray (cluster up)"].append(time.perf_counter() - t0)
            finally:
                ray.shutdown()
            pd.testing.assert_frame_equal(reference, tables(local.run_dir))
        for name, ts in times.items():
            print(f"{name:30s} best {min(ts):6.1f} s  (all {[round(t, 1) for t in ts]})")
            results.add({"executor": name, "seconds": min(ts), "all_seconds": ts, "atlas_jobs": 6})
        print("tables identical across executors: yes")
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
