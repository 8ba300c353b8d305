"""Streaming linear CKA (``alignkit.stats.StreamingCKA``) over 10⁷ rows, d=384 on both sides.

Batches are generated on the fly (seeded by batch index, correlated X and Y: two noisy views of
the same latent points, so CKA is far from 0) and fed to ``update``; nothing but the current batch
and the O(d²) moments is ever held. Reported: rows/s, total time (generation included and split
out) and peak RSS, which must stay within 1 GB including the batch itself.

Sanity check, in a separate process: the first 10⁵ rows streamed through a fresh ``StreamingCKA``
equal the one-shot feature-form ``alignkit.metrics.cka`` on the same rows (to 1e-9 in float64).
Full run: ``python bench/streaming_cka.py`` (add ``--precision float32`` for float32 products).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

NOISE = (0.5, 1.0)
RSS_LIMIT_MB = 1024.0
TOLERANCE = {"float64": 1e-9, "float32": 1e-5}


class BatchSource:
    """Batch i of the stream: (X_i, Y_i), float32 torch tensors, a pure function of (seed, i)."""

    def __init__(self, spec: dict) -> None:
        self.mix = C.LatentMixture(seed=spec["seed"])
        self.w = [self.mix.projection(spec["d"], v) for v in (0, 1)]
        self.batch = spec["batch"]

    def __call__(self, i: int, rows: int | None = None) -> tuple[Any, Any]:
        import torch

        z = self.mix.latent_chunk(i, self.batch)[:rows]
        x, y = (self.mix.view_chunk(z, w, noise, i, v) for v, (w, noise) in enumerate(zip(self.w, NOISE, strict=True)))
        return torch.from_numpy(x), torch.from_numpy(y)


def run_stream(spec: dict) -> dict:
    from alignkit.stats import StreamingCKA

    source = BatchSource(spec)
    sw = C.Stopwatch()

    def call() -> dict:
        s = StreamingCKA(debiased=True, precision=spec["precision"])
        for i, start, stop in C.chunk_bounds(spec["rows"], spec["batch"]):
            with sw("generate"):
                x, y = source(i, stop - start)
            with sw("update"):
                s.update(x, y)
            del x, y
        with sw("compute"):
            return {"rows_seen": s.n, "cka_debiased": s.compute(True), "cka_biased": s.compute(False)}

    out = C.measure(call, repeats=1)
    value = out.pop("value")
    return {**out, **value, "split_s": sw.laps}


def run_subset(spec: dict) -> dict:
    import torch

    from alignkit.metrics import cka
    from alignkit.stats import StreamingCKA

    source = BatchSource(spec)
    s = StreamingCKA(debiased=True, precision=spec["precision"])
    xs, ys = [], []
    for i, start, stop in C.chunk_bounds(spec["check_rows"], spec["batch"]):
        x, y = source(i, stop - start)
        s.update(x, y)
        xs.append(x)
        ys.append(y)
    X, Y = torch.cat(xs), torch.cat(ys)
    if spec["precision"] == "float64":  # the one-shot in float64 too: a float32 one-shot carries float32 products
        X, Y = X.double(), Y.double()
    out: dict[str, Any] = {"rows_seen": s.n}
    for name, debiased in (("debiased", True), ("biased", False)):
        streamed = s.compute(debiased)
        oneshot = cka(X, Y, debiased=debiased, form="feature")
        out |= {f"streamed_{name}": streamed, f"oneshot_{name}": oneshot, f"abs_diff_{name}": abs(streamed - oneshot)}
    return out


RUNNERS = {"stream": run_stream, "subset": run_subset}


def main() -> int:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--d", type=int, default=384)
    p.add_argument("--batch", type=int, default=65536)
    p.add_argument("--precision", choices=["float64", "float32"], default="float64")
    p.add_argument("--check-rows", type=int, default=100_000, help="rows of the one-shot sanity check")
    args = p.parse_args()
    if args.one:
        C.child_main(args.one, args.threads, RUNNERS)
        return 0
    if args.quick:
        args.rows, args.check_rows = 200_000, 50_000
    mix = C.LatentMixture(seed=args.seed)
    notes = {"data": mix.describe() + f"; X, Y two views, noise {NOISE}", "rss_limit_mb": RSS_LIMIT_MB}
    res = C.Results("streaming_cka", args, notes)
    base = {"d": args.d, "batch": args.batch, "precision": args.precision, "seed": args.seed}
    print(f"[streaming_cka] stream {args.rows} rows ...", file=sys.stderr, flush=True)
    stream = C.run_isolated(
        __file__, {"impl": "stream", "rows": args.rows, **base}, threads=args.threads, timeout=args.timeout
    )
    if C.ok(stream):
        stream["rows_per_s"] = args.rows / stream["seconds"]
        stream["update_rows_per_s"] = args.rows / stream["split_s"]["update"]
        stream["within_rss_limit"] = stream["rss_peak_mb"] <= RSS_LIMIT_MB
    res.add(stream)
    print(f"[streaming_cka] sanity check on {args.check_rows} rows ...", file=sys.stderr, flush=True)
    check = C.run_isolated(
        __file__, {"impl": "subset", "check_rows": args.check_rows, **base}, threads=args.threads, timeout=args.timeout
    )
    tol = TOLERANCE[args.precision]
    if C.ok(check):
        check["tolerance"] = tol
        check["agree"] = max(check["abs_diff_debiased"], check["abs_diff_biased"]) <= tol
    res.add(check)
    print(_report(stream, check, args))
    print(f"\nresults: {res.path}")
    if not (C.ok(stream) and C.ok(check)):
        print(f"FAILED: {stream.get('error') or check.get('error')}", file=sys.stderr)
        return 1
    if not check["agree"]:
        print(f"DISAGREEMENT: streamed vs one-shot differ by more than {tol:g}", file=sys.stderr)
        return 1
    return 0


def _report(stream: dict, check: dict, args: Any) -> str:
    rows = [
        {
            "rows": args.rows,
            "d": args.d,
            "batch": args.batch,
            "precision": args.precision,
            **{k: stream.get(k) for k in ("status", "seconds", "rows_per_s", "update_rows_per_s")},
            **{k: stream.get(k) for k in ("rss_peak_mb", "peak_extra_mb", "within_rss_limit", "cka_debiased")},
            "cka_biased": stream.get("cka_biased"),
        }
    ]
    table = C.markdown_table(
        rows,
        [
            ("rows", lambda r: r["rows"]),
            ("d", lambda r: r["d"]),
            ("batch", lambda r: r["batch"]),
            ("precision", lambda r: r["precision"]),
            ("total s", C.field("seconds")),
            ("rows/s", C.field("rows_per_s", ".4g")),
            ("rows/s (update only)", C.field("update_rows_per_s", ".4g")),
            ("peak RSS MB", C.field("rss_peak_mb", ".0f")),
            ("peak − base MB", C.field("peak_extra_mb", ".0f")),
            (f"≤ {RSS_LIMIT_MB:g} MB", C.field("within_rss_limit")),
            ("CKA debiased", C.field("cka_debiased", ".6f")),
            ("CKA biased", C.field("cka_biased", ".6f")),
        ],
    )
    lines = [table]
    if C.ok(stream):
        split = ", ".join(f"{k} {v:.1f} s" for k, v in stream["split_s"].items())
        lines.append(f"\ntime split: {split} (peak RSS includes the interpreter, torch and the batch)")
    if C.ok(check):
        lines.append(
            f"sanity, first {check['rows_seen']} rows: streamed vs one-shot feature form, "
            f"|Δ| debiased {check['abs_diff_debiased']:.1e}, biased {check['abs_diff_biased']:.1e} "
            f"(tolerance {check['tolerance']:g}) -> {'OK' if check['agree'] else 'MISMATCH'}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
