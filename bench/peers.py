"""Closed-form measures against the plain numpy formula: ``alignkit.measure`` vs a few lines of numpy.

For each measure with a straightforward formula, time ``alignkit.measure(name, X, Y)`` (validation and the
degenerate-space check included), the registered function ``alignkit.metrics.<name>`` (below n·d = 10⁷), the
degenerate-space check alone (work the plain formula does not do: the "−check" ratio leaves it out) and the plain
numpy implementation below, on the same float32 inputs (``_common.LatentMixture``), best of ``--repeats``, in one
process. Values must agree where the definitions agree (asserted; tolerances per measure, see PLAIN); where they
differ by more, both are compared with the plain formula on float64 copies, and only alignkit being off fails (a
float32 plain formula is then marked, e.g. Procrustes at n = 10,000, d = 384: 1.6e-5 off, alignkit 6e-11).

plain formulas (float32 centring and products, as a numpy user writes them; float64 decompositions):
  procrustes        ‖X_cᵀY_c‖_* / (‖X_c‖_F‖Y_c‖_F)                              (Schönemann 1966; Williams 2021)
  shape α=1         arccos(procrustes);  shape α=0: arccos(mean ρ) (equal full-rank widths)
  cka biased        ‖X_cᵀY_c‖²/(‖X_cᵀX_c‖‖Y_cᵀY_c‖)                              (Kornblith 2019, feature form)
  cka debiased/hsic unbiased HSIC from X_cᵀY_c and the row norms                (Song 2012, feature form)
  cca               ρ = svdvals(W_xᵀ C_xy W_y), W = V Λ^{-1/2} from eigh(C)       (Hotelling 1936)
  svcca             the same on the top-k eigen-directions of each C              (Raghu 2017)
  pwcca             Σα_iρ_i/Σα_i, α_i = Σ_j |⟨h_i, x_j⟩|                           (Morcos 2018)
  mutual_knn        dense cosine similarity, argpartition top-k, overlap          (Huh 2024, PRH); float32
                    near-ties may pick another neighbour (tolerance 1e-3: one neighbour in 1,000 rows)
The CCA family (cca, svcca, pwcca, shape α=0) by default computes from float64 cross-products so that float32 and
float64 copies of the same data give the same value (≤ 1e-6; a float32 formula moves by ~1e-4): its plain formula
is the same few lines on float64 copies. Its ``exact=False`` rows ("fast") use float32 products like CKA and are
compared with the float32 plain formula.
``linear_predictivity`` is left out: its k-fold GCV ridge has no few-line plain form.

Memory: ``tracemalloc`` peak of each call (numpy allocations; torch's are not seen, so alignkit's torch
temporaries are under-counted — the cross-products run in numpy, so most of its memory is seen).

    .venv/bin/python bench/peers.py            # n ∈ {500, 2000, 10000}, d ∈ {64, 384}, best of 3
    .venv/bin/python bench/peers.py --full     # also n = 100000 and d = 1024
    .venv/bin/python bench/peers.py --quick          # n ≤ 2000; exit 1 if a measure > 1.5× the fastest at n=2000, d=384
    .venv/bin/python bench/peers.py --device cuda    # the GPU table (a GPU needed)
"""

from __future__ import annotations

import math
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

GATE_N = 2000
GATE_D = 384
GATE_RATIO = 1.5
LARGE = 10**7  # n·d from which the registered function is not timed separately


def _c(X: np.ndarray) -> np.ndarray:
    return X - X.mean(axis=0)


def plain_procrustes(X: np.ndarray, Y: np.ndarray) -> float:
    Xc, Yc = _c(X), _c(Y)
    return float(np.linalg.svd(Xc.T @ Yc, compute_uv=False).sum() / (np.linalg.norm(Xc) * np.linalg.norm(Yc)))


def _inv_sqrt_basis(C: np.ndarray, k: int | None = None) -> np.ndarray:
    lam, V = np.linalg.eigh(C.astype(np.float64))
    lam, V = lam[::-1][:k], V[:, ::-1][:, :k]
    return V / np.sqrt(lam)


def plain_rho(X: np.ndarray, Y: np.ndarray, kx: int | None = None, ky: int | None = None) -> np.ndarray:
    Xc, Yc = _c(X), _c(Y)
    Wx, Wy = _inv_sqrt_basis(Xc.T @ Xc, kx), _inv_sqrt_basis(Yc.T @ Yc, ky)
    return np.clip(np.linalg.svd(Wx.T @ (Xc.T @ Yc).astype(np.float64) @ Wy, compute_uv=False), 0, 1)


def plain_svcca(X: np.ndarray, Y: np.ndarray, keep: float | int) -> float:
    def k_of(Z: np.ndarray) -> int:
        if isinstance(keep, int):
            return keep
        lam = np.linalg.eigvalsh((_c(Z).T @ _c(Z)).astype(np.float64))[::-1]
        return int(np.argmax(np.cumsum(lam) / lam.sum() >= keep - 1e-12)) + 1

    return float(plain_rho(X, Y, k_of(X), k_of(Y)).mean())


def plain_pwcca(X: np.ndarray, Y: np.ndarray) -> float:
    Xc, Yc = _c(X), _c(Y)
    Wx, Wy = _inv_sqrt_basis(Xc.T @ Xc), _inv_sqrt_basis(Yc.T @ Yc)
    A, rho, _ = np.linalg.svd(Wx.T @ (Xc.T @ Yc).astype(np.float64) @ Wy, full_matrices=False)
    H = Xc @ (Wx @ A).astype(np.float32)
    H /= np.linalg.norm(H, axis=0)
    alpha = np.abs(Xc.T @ H).sum(axis=0)
    return float((alpha * rho).sum() / alpha.sum())


def plain_hsic_terms(X: np.ndarray, Y: np.ndarray, debiased: bool) -> tuple[float, float, float]:
    Xc, Yc = _c(X), _c(Y)
    n = len(X)
    rx, ry = (Xc * Xc).sum(1, dtype=np.float64), (Yc * Yc).sum(1, dtype=np.float64)

    def h(A: np.ndarray, B: np.ndarray, ra: np.ndarray, rb: np.ndarray) -> float:
        s2 = float(np.sum((A.T @ B).astype(np.float64) ** 2))
        if not debiased:
            return s2 / (n - 1) ** 2
        p = float(ra @ rb)
        return (s2 - p + ra.sum() * rb.sum() / ((n - 1) * (n - 2)) - 2 * p / (n - 2)) / (n * (n - 3))

    return h(Xc, Yc, rx, ry), h(Xc, Xc, rx, rx), h(Yc, Yc, ry, ry)


def plain_cka(X: np.ndarray, Y: np.ndarray, debiased: bool) -> float:
    xy, xx, yy = plain_hsic_terms(X, Y, debiased)
    return xy / math.sqrt(xx * yy)


def plain_mutual_knn(X: np.ndarray, Y: np.ndarray, k: int = 10) -> float:
    def knn(Z: np.ndarray) -> np.ndarray:
        Zn = Z / np.linalg.norm(Z, axis=1, keepdims=True)
        S = Zn @ Zn.T
        np.fill_diagonal(S, -np.inf)
        return np.argpartition(-S, k, axis=1)[:, :k]

    a, b = knn(X), knn(Y)
    return float(np.mean([len(np.intersect1d(a[i], b[i], assume_unique=True)) / k for i in range(len(a))]))


def _f64(f: Callable[[np.ndarray, np.ndarray], float]) -> Callable[[np.ndarray, np.ndarray], float]:
    """The plain formula on float64 copies: the straightforward dtype-independent form (the CCA family's default)."""
    return lambda X, Y: f(X.astype(np.float64), Y.astype(np.float64))


#: (label, measure id, parameters, plain function, |Δ| tolerance, largest n). The CCA family's default (exact=True)
#: is dtype-independent (float64 products), so its plain formula runs in float64 too; ``exact=False`` (float32
#: products) is compared with the float32 plain formula.
PLAIN: list[tuple[str, str, dict[str, Any], Callable[[np.ndarray, np.ndarray], float], float, int]] = [
    ("procrustes", "procrustes", {}, plain_procrustes, 1e-5, 10**6),
    ("shape α=1", "shape_distance", {"alpha": 1.0}, lambda X, Y: math.acos(plain_procrustes(X, Y)), 1e-5, 10**6),
    ("shape α=0", "shape_distance", {"alpha": 0.0}, _f64(lambda X, Y: math.acos(plain_rho(X, Y).mean())), 1e-6, 10**6),
    ("cka biased", "cka", {"debiased": False}, lambda X, Y: plain_cka(X, Y, False), 1e-5, 10**6),
    ("cka debiased", "cka", {"debiased": True}, lambda X, Y: plain_cka(X, Y, True), 1e-5, 10**6),
    ("hsic (rel.)", "hsic", {}, lambda X, Y: plain_hsic_terms(X, Y, True)[0], 1e-5, 10**6),
    ("cca", "cca", {}, _f64(lambda X, Y: float(plain_rho(X, Y).mean())), 1e-6, 10**6),
    ("cca fast", "cca", {"exact": False}, lambda X, Y: float(plain_rho(X, Y).mean()), 1e-3, 10**6),
    ("svcca keep=10", "svcca", {"keep": 10}, _f64(lambda X, Y: plain_svcca(X, Y, 10)), 1e-6, 10**6),
    ("svcca 10 fast", "svcca", {"keep": 10, "exact": False}, lambda X, Y: plain_svcca(X, Y, 10), 1e-4, 10**6),
    ("svcca keep=0.99", "svcca", {"keep": 0.99}, _f64(lambda X, Y: plain_svcca(X, Y, 0.99)), 1e-6, 10**6),
    ("svcca .99 fast", "svcca", {"keep": 0.99, "exact": False}, lambda X, Y: plain_svcca(X, Y, 0.99), 1e-3, 10**6),
    ("pwcca", "pwcca", {}, _f64(plain_pwcca), 1e-6, 10**6),
    ("pwcca fast", "pwcca", {"exact": False}, plain_pwcca, 1e-3, 10**6),
    ("mutual_knn k=10", "mutual_knn", {"k": 10}, plain_mutual_knn, 1e-3, 10_000),
]


#: A contender whose traced first call takes longer than this many seconds is timed by that call alone (large
#: sizes: tracemalloc's overhead is negligible there and a second call would double the run).
SLOW_CALL_S = 5.0


def interleaved(calls: dict[str, Callable[[], float]], repeats: int) -> dict[str, tuple[float, float, float]]:
    """(best seconds, value, tracemalloc peak MB of one call) of several calls, their repeats interleaved (a, b, c,
    a, b, c, ...) so that a change of load during the run hits every contender alike; best of ``repeats``, then one
    traced call each for memory.

    The first call of each contender is a traced warm-up (first-call costs such as imports are not what we compare);
    a contender whose warm-up takes over :data:`SLOW_CALL_S` keeps that call's time and peak and is not repeated."""
    best = {k: math.inf for k in calls}
    value = {k: float("nan") for k in calls}
    peak: dict[str, float] = {}
    for k, f in calls.items():
        tracemalloc.start()
        t0 = time.perf_counter()
        value[k] = f()
        elapsed = time.perf_counter() - t0
        first_peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        if elapsed > SLOW_CALL_S:
            best[k], peak[k] = elapsed, first_peak
    fast = {k: f for k, f in calls.items() if k not in peak}
    for _ in range(repeats):
        for k, f in fast.items():
            t0 = time.perf_counter()
            value[k] = f()
            best[k] = min(best[k], time.perf_counter() - t0)
    for k, f in fast.items():
        tracemalloc.start()
        f()
        peak[k] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return {k: (best[k], value[k], peak[k]) for k in calls}


def pypi_peers() -> dict[str, list[Any]]:
    """Peers from PyPI that are installed (``make bench-peers``), by canonical measure id; {} without them."""
    try:
        from _peers_pypi import peers
    except ImportError:
        return {}
    from alignkit.metrics import measure_spec

    return {measure_spec(key).id: list(found) for key, found in peers().items()}


def run_one(n: int, d: int, repeats: int, seed: int, peers: dict[str, list[Any]] | None = None) -> list[dict[str, Any]]:
    """Every measure of :data:`PLAIN` at (n, d): alignkit vs the plain formula and the installed PyPI peers. The ratio
    is to the fastest alternative whose value agrees (peers with another definition are timed, not compared)."""
    import alignkit
    import alignkit.metrics as M
    from alignkit.metrics._registry import space_checks, split

    X, Y = C.LatentMixture(seed=seed).views(n, [d, d], (0.5, 1.0))
    rows = []
    for label, name, params, plain, tol, n_max in PLAIN:
        if n > n_max or (name in ("cca", "pwcca", "shape_distance") and n < 10 * d and params.get("alpha") != 1.0):
            continue  # dense kNN beyond memory; CCA-type plain forms assume n ≫ d (full rank)
        mid = M.measure_spec(name, **params).id
        found = [p for p in (peers or {}).get(mid, []) if n <= (getattr(p, "max_n", None) or 10**9)]
        info, own = M.get(name), split(M.measure_spec(name, **params))[1]
        calls: dict[str, Callable[[], float]] = {
            "alignkit": lambda: alignkit.measure(name, X, Y, **params),  # noqa: B023
            "check": lambda: float(len(space_checks(X, Y, info, own))),  # noqa: B023
            "plain": lambda: plain(X, Y),  # noqa: B023
            **{f"peer:{p.name}": (lambda p=p: p.call(X, Y)) for p in found},
        }
        if n * d < LARGE:  # the function is measure()'s code path: at large sizes it would only double the run
            calls["function"] = lambda: getattr(M, name)(X, Y, **params)  # noqa: B023
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = interleaved(calls, repeats)
        t_m, v_m, mem_m = got["alignkit"]
        t_p, v_p, mem_p = got["plain"]
        unit = abs(v_p) if name == "hsic" else 1.0
        delta = abs(v_m - v_p) / unit
        ok, plain_ok, truth = delta <= tol, delta <= tol, None
        if not ok:  # which one is off: both against the same formula on float64 copies
            truth = plain(X.astype(np.float64), Y.astype(np.float64))
            ok, plain_ok = abs(v_m - truth) / unit <= tol, abs(v_p - truth) / unit <= tol
        alternatives = {"plain": (t_p, bool(plain_ok))}
        peer_rows = []
        for p in found:
            t_q, v_q, mem_q = got[f"peer:{p.name}"]
            scale = abs(v_q) if name == "hsic" else 1.0  # HSIC's units depend on the data: a relative tolerance
            agree = None if p.tol is None else bool(abs(v_m - v_q) / scale <= p.tol)
            alternatives[p.name] = (t_q, bool(agree))
            peer_rows.append(
                {"peer": p.name, "version": p.version, "s": t_q, "value": v_q, "mb": mem_q, "agree": agree,
                 "note": p.note}
            )  # fmt: skip
        correct = {k: t for k, (t, ok) in alternatives.items() if ok}
        fastest = min(correct, key=correct.__getitem__) if correct else "plain"
        rows.append(
            dict(
                n=n,
                d=d,
                measure=label,
                id=mid,
                params=params,
                alignkit_s=t_m,
                function_s=got["function"][0] if "function" in got else None,
                check_s=got["check"][0],
                plain_s=t_p,
                ratio_plain=t_m / t_p,
                fastest=fastest,
                fastest_s=correct.get(fastest, t_p),
                ratio=t_m / correct.get(fastest, t_p),
                ratio_without_check=(t_m - got["check"][0]) / correct.get(fastest, t_p),
                alignkit_mb=mem_m,
                plain_mb=mem_p,
                value=v_m,
                plain_value=v_p,
                delta=delta,
                float64_value=truth,
                agree=bool(ok),
                plain_agrees=bool(plain_ok),
                tol=tol,
                peers=peer_rows,
            )
        )
        r = rows[-1]
        print(f"{n:>7} {d:>5} {label:<16} {t_m:9.4f} {r['check_s']:9.4f} {t_p:9.4f} {r['ratio']:6.2f} "
              f"{r['ratio_without_check']:6.2f} {fastest[:12]:>12}  {mem_m:7.1f} {mem_p:7.1f}  Δ={delta:.1e}"
              f"{'' if r['agree'] else '  DISAGREE'}"
              f"{'' if r['plain_agrees'] else f'  (plain formula off the float64 value by {abs(v_p - truth):.1e})'}",
              flush=True)  # fmt: skip
        for q in peer_rows:
            verdict = "agrees" if q["agree"] else ("another definition" if q["agree"] is None else "DISAGREES")
            print(f"{'':>14} peer {q['peer']:<20} {q['s']:9.4f} s  {q['value']:.6f}  {verdict}", flush=True)
    return rows


def run_cuda(n: int, d: int, repeats: int, seed: int) -> list[dict[str, Any]]:
    """The same measures on CUDA tensors: alignkit.measure vs the GPU matmul roofline of the dominant product
    (``XᵀY``, n·d·d multiply-adds, timed with torch in the inputs' dtype), synchronised around every call."""
    import torch

    import alignkit
    import alignkit.metrics as M

    X, Y = (torch.from_numpy(v).cuda() for v in C.LatentMixture(seed=seed).views(n, [d, d], (0.5, 1.0)))

    def sync(f: Callable[[], Any]) -> Callable[[], float]:
        def call() -> float:
            out = f()
            torch.cuda.synchronize()
            return float(out) if not isinstance(out, torch.Tensor) else float(out.sum())

        return call

    rows = []
    for label, name, params, _plain, _tol, n_max in PLAIN:
        if n > n_max:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = interleaved(
                {
                    "alignkit": sync(lambda: alignkit.measure(name, X, Y, **params)),  # noqa: B023
                    "roofline": sync(lambda: X.T @ Y),
                },
                repeats,
            )
        t_m, t_r = got["alignkit"][0], got["roofline"][0]
        mid = M.measure_spec(name, **params).id
        rows.append(dict(n=n, d=d, device="cuda", measure=label, id=mid, alignkit_s=t_m, roofline_s=t_r,
                         ratio_roofline=t_m / t_r, value=got["alignkit"][1]))  # fmt: skip
        print(f"{n:>7} {d:>5} {label:<16} cuda {t_m:9.5f} s  roofline {t_r:9.5f} s  {t_m / t_r:7.1f}×", flush=True)
    return rows


def main() -> int:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="also n = 100000 and d = 1024")
    p.add_argument("--n", type=int, nargs="+", help="these n only (instead of the default or --full list)")
    p.add_argument("--d", type=int, nargs="+", help="these d only (instead of the default or --full list)")
    p.add_argument(
        "--gate",
        action="store_true",
        help=f"exit 1 if a measure is slower than {GATE_RATIO}× the fastest correct alternative at n = {GATE_N}, "
        f"d = {GATE_D} (--quick, which `make bench` runs, implies it; d = 64 is recorded, not gated: there alignkit's "
        "fixed per-call cost of ~0.4 ms — validation, the degenerate-space check — is most of a 0.6 ms formula)",
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cuda: the GPU table (needs a GPU)")
    p.add_argument("--no-peers", action="store_true", help="leave the installed PyPI peers out (they are slow)")
    args = p.parse_args()
    C.set_threads(args.threads)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("--device cuda: no CUDA device here; nothing measured", file=sys.stderr)
            return 2
        results = C.Results("peers_cuda", args, {"device": torch.cuda.get_device_name()})
        for n in [2000, 10_000, 100_000]:
            for d in [64, 384, 1024]:
                for r in run_cuda(n, d, args.repeats, args.seed):
                    results.add(r)
        print(f"wrote {results.path}")
        return 0
    ns = args.n or ([500, 2000] if args.quick else [500, 2000, 10_000] + ([100_000] if args.full else []))
    ds = args.d or ([64, 384] + ([1024] if args.full and not args.quick else []))
    repeats = 3 if args.quick else args.repeats  # interleaved best-of-3 even when quick: the gate reads these
    peers = {} if args.no_peers else pypi_peers()
    if peers:
        print("peers installed:", ", ".join(sorted({q.name for v in peers.values() for q in v})))
    print(f"{'n':>7} {'d':>5} {'measure':<16} {'measure s':>9} {'check s':>9} {'plain s':>9} {'ratio':>6} "
          f"{'−check':>6} {'fastest':>12}  {'ak MB':>7} {'np MB':>7}")  # fmt: skip
    results = C.Results("peers", args, {"gate": f"alignkit.measure ≤ {GATE_RATIO}× plain at n={GATE_N}, d={GATE_D}"})
    rows = [results.add(r) for n in ns for d in ds for r in run_one(n, d, repeats, args.seed, peers)]
    out = results.path
    bad = [r for r in rows if not r["agree"]]
    slow = [r for r in rows if r["n"] == GATE_N and r["d"] == GATE_D and r["ratio"] > GATE_RATIO]
    if slow:  # a noisy machine: measure the (n, d) again with more repeats before calling it a regression
        again = {r["measure"]: r for r in run_one(GATE_N, GATE_D, 7, args.seed, peers)}
        slow = [again.get(r["measure"], r) for r in slow if again.get(r["measure"], r)["ratio"] > GATE_RATIO]
    for r in bad:
        print(
            f"values disagree: {r['measure']} n={r['n']} d={r['d']}: Δ={r['delta']:.2e} > {r['tol']}", file=sys.stderr
        )
    for r in slow:
        print(f"gate: {r['measure']} at n={r['n']}, d={r['d']} is {r['ratio']:.2f}× the plain formula "
              f"(> {GATE_RATIO}×)", file=sys.stderr)  # fmt: skip
    print(f"wrote {out}; gate (n={GATE_N}, d={GATE_D}, ≤ {GATE_RATIO}× plain): {'FAILED' if slow else 'passed'}")
    return 1 if bad or ((args.gate or args.quick) and slow) else 0


if __name__ == "__main__":
    sys.exit(main())
