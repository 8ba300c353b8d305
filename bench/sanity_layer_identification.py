"""Layer identification (Kornblith et al. 2019) over a model zoo: the default measure list, per-measure cost, and
the shared-preparation route against the plain per-cell loop.

ours    ``alignkit.sanity.layer_identification(models)`` with the default measure list (every registered measure
        and its variants); its accuracy table records each measure's seconds and route (one atlas per model
        against the models it is compared with: each layer prepared at most N times, each needed pair scored once
        per direction).
plain   what a user writes without it, for a few measures: ``alignkit.measure(id, A_i[l], A_j[m])`` for every
        ordered pair of models and every layer pair (and the reverse for an asymmetric measure), then the argmax;
        timed on ``--cells`` calls and scaled to all of them (``--quick`` runs it to the end and checks that the
        accuracies agree with ours).

Data: N models × L layers of n items, d features: layer l of model m = ReLU(Z_l·P_ml) + noise with a latent
Z_l (n × 64, one per layer, shared by the models) and a model-specific projection P_ml (64 × d), so layers are
identifiable, as across seeds of one architecture. Full run: ``python bench/sanity_layer_identification.py``
(5 × 4 × 2,000 × 512; tens of minutes on 2 cores, most of it in linear_predictivity, rsa and the k = 50 kNN
measures).
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

PLAIN = ("cka", "cka?kernel=rbf_median&threshold=0.4", "mutual_knn?k=10", "procrustes")


def zoo(n: int, d: int, n_models: int, n_layers: int, seed: int) -> list[dict[str, np.ndarray]]:
    g = np.random.default_rng(seed)
    Z = [g.standard_normal((n, 64)) for _ in range(n_layers)]
    return [
        {
            f"layer{l}": (
                np.maximum(Z[l] @ g.standard_normal((64, d)) / 8.0, 0.0) + 0.3 * g.standard_normal((n, d))
            ).astype(np.float32)
            for l in range(n_layers)
        }
        for _ in range(n_models)
    ]


def plain_accuracy(measure: str, models: list[dict[str, np.ndarray]]) -> float:
    """The per-cell loop to the end (accuracy only; ``--quick``, to check ours against it)."""
    import alignkit
    from alignkit.metrics import get

    info = get(measure)
    sign = 1.0 if info.higher_is_better else -1.0
    layers = list(models[0])
    hits = trials = 0
    for i, a in enumerate(models):
        for j, b in enumerate(models):
            if i == j:
                continue
            for l, name in enumerate(layers):
                row = []
                for other in layers:
                    s = alignkit.measure(measure, a[name], b[other])
                    if not info.symmetric:
                        s = (s + alignkit.measure(measure, b[other], a[name])) / 2
                    row.append(sign * s)
                hits += int(np.argmax(row) == l)
                trials += 1
    return hits / trials


def plain_seconds(measure: str, models: list[dict[str, np.ndarray]], cells: int) -> float:
    """The per-cell loop's cost: ``cells`` calls timed, scaled to the N(N−1)L² calls it makes (twice that for an
    asymmetric measure), as bench/atlas.py extrapolates the PRH-style loop."""
    import alignkit
    from alignkit.metrics import get

    layers = list(models[0])
    calls = len(models) * (len(models) - 1) * len(layers) ** 2 * (1 if get(measure).symmetric else 2)
    alignkit.measure(measure, models[0][layers[0]], models[1][layers[0]])  # warm-up
    start = time.perf_counter()
    for c in range(cells):
        alignkit.measure(measure, models[0][layers[c % len(layers)]], models[1][layers[(c + 1) % len(layers)]])
    return (time.perf_counter() - start) / cells * calls


def main() -> int:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--d", type=int, default=512)
    p.add_argument("--models", type=int, default=5)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--measures", help="comma-separated measure ids (default: the default list)")
    p.add_argument("--plain", default=",".join(PLAIN), help="comma-separated measures timed with the plain loop")
    p.add_argument("--cells", type=int, default=4, help="plain loop: calls timed (then scaled to all of them)")
    p.add_argument("--no-plain", action="store_true", help="skip the plain per-cell loop")
    args = p.parse_args()
    C.set_threads(args.threads)
    measures = args.measures.split(",") if args.measures else None
    if args.quick:
        args.n, args.d, args.models, args.layers = 200, 32, 3, 3
        measures = measures or ["cka", "mutual_knn?k=10", "procrustes", "cknna?k=5", "rsa"]
    import pandas as pd

    from alignkit.sanity import default_measures, layer_identification

    models = zoo(args.n, args.d, args.models, args.layers, args.seed)
    notes = {"data": f"{args.models} models × {args.layers} layers, n = {args.n}, d = {args.d}; ReLU of per-layer "
             "latents (64-d) through model-specific projections, plus noise"}  # fmt: skip
    res = C.Results("sanity_layer_identification", args, notes)
    frames = []
    start = time.perf_counter()
    for measure in measures or default_measures():  # one call per measure: each row is written as it finishes
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # small-n CCA warnings and the like, once per pair
            one = layer_identification(models, [measure])
        frames.append(one.accuracy)
        row = one.accuracy.iloc[0].to_dict()
        res.add({"impl": "ours", **{k: row[k] for k in ("measure", "accuracy", "status", "route", "time_s")}})
        print(f"{measure:40s} {row['accuracy']:.3f} {row['route']:5s} {row['time_s']:8.1f} s {row['reason'][:60]}",
              flush=True)  # fmt: skip
    total = time.perf_counter() - start
    acc = pd.concat(frames, ignore_index=True)
    res.add({"impl": "ours", "measure": "(all)", "time_s": total, "status": "ok"})
    print(f"layer_identification: {len(acc)} measures in {total:.1f} s")
    columns = [("measure", C.field("measure")), ("accuracy", C.field("accuracy", ".3f")), ("route", C.field("route")),
               ("s", C.field("time_s", ".1f")), ("reason", lambda r: r["reason"][:60])]  # fmt: skip
    print(C.markdown_table(acc.to_dict("records"), columns))
    if args.no_plain:
        return 0
    ours = acc.set_index("measure")
    rows = []
    for measure in args.plain.split(",") if not args.quick else ("cka", "procrustes"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seconds = plain_seconds(measure, models, args.cells)
            if args.quick:
                assert abs(plain_accuracy(measure, models) - float(ours.loc[measure, "accuracy"])) < 1e-9, measure
        if measure in ours.index:
            t_ours = float(ours.loc[measure, "time_s"])
        else:
            t_ours = float(layer_identification(models, [measure]).accuracy.iloc[0]["time_s"])
        row = {"impl": "plain", "measure": measure, "time_s": seconds, "ours_s": t_ours,
               "ratio": C.ratio(seconds, t_ours), "status": "ok"}  # fmt: skip
        rows.append(res.add(row))
    columns = [("measure", C.field("measure")), ("plain s", C.field("time_s", ".1f")),
               ("ours s", C.field("ours_s", ".1f")), ("plain/ours", C.field("ratio", ".2f"))]  # fmt: skip
    print(C.markdown_table(rows, columns))
    print(f"written to {res.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
