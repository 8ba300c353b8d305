"""Why the unsupervised aligners fail on Bible verses: the three checks behind examples/README.md's explanations.

Same data as ``unsupervised_bible.py`` (English MiniLM ↔ Spanish e5, the pool after the 1,000 test verses):

- ``anchors``: does mini-vec2vec's anchor step have something to match? k-means (20 clusters) on 4,000 English
  and, separately, on their 4,000 Spanish partners; with the true pairs known, the share of an English
  cluster's verses in its majority Spanish cluster (purity), and the share of the 20 centroids the QAP
  matches to that majority cluster (chance 1/20). Ten runs.
- ``rotation``: mini-vec2vec and MUSE on the English embeddings against a random rotation of themselves (an
  exact isometry, rows shuffled), R@1 on the 1,000 test verses: is the method sound where the spaces match?
  ``--muse-epochs`` / ``--muse-epoch-size`` set MUSE's adversarial budget.
- ``vec2vec``: a vec2vec fit (seed 0, one restart) on the shuffled set, saved to ``--model`` (reused when it
  exists), against supervised centred Procrustes on 1,000 pool pairs and a random rotation, on the test verses:
  R@1; Spearman between the queries' pairwise similarities and those of the verses their translations land on
  (does the map keep the geometry?); the share of distinct nearest targets (do translations crowd?).

    python examples/unsupervised_checks.py anchors
    python examples/unsupervised_checks.py rotation --muse-epochs 6 --muse-epoch-size 4000
    python examples/unsupervised_checks.py vec2vec --model /tmp/v2v_bible_s0
    python examples/unsupervised_checks.py words                # after words_en_fr.py has fitted vecmap
    python examples/unsupervised_checks.py agreement --methods vecmap mini vec2vec
    python examples/unsupervised_checks.py duplicates           # after words_en_fr.py has embedded the words

- ``agreement``: the verdict's restart-agreement step on the shuffled set: vecmap (3 restarts, no pairs),
  mini-vec2vec (3 restarts, 50 seed pairs) and vec2vec (2 restarts, no pairs), each fitted once; every restart's
  own checks, its agreement with the others, and the kept map's R@1 on the 1,000 test verses.
- ``duplicates``: why the first words run's vecmap and MUSE passed the verdict at P@1 0.000: vecmap (2 restarts) on
  distinct words, and on the same words with each repetition kept as a near-copy (held-out rows then have copies
  among the training rows).
- ``words``: the spread check on FreeDict words, from the finished ``words_en_fr.py`` run (``--run``, its run
  folder): the share of distinct nearest French words of every distinct English word under the run's unsupervised
  vecmap, a random rotation, and supervised centred Procrustes on the dictionary's first 5,000 pairs, with the
  P@1 of each over all the words.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

import unsupervised_bible as ub
from _data import data_path
from alignkit.align import Procrustes
from alignkit.align.mini_vec2vec import MiniVec2Vec, kmeans, match_centroids
from alignkit.align.muse import MUSE
from alignkit.align.vec2vec import Vec2Vec, distinct_targets
from alignkit.align.vecmap_unsupervised import VecMapUnsupervised


def unit(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def r_at_1(zx: np.ndarray, zy: np.ndarray) -> float:
    return float(np.mean((unit(zx) @ unit(zy).T).argmax(axis=1) == np.arange(len(zx))))


def anchors(xp: np.ndarray, yp: np.ndarray, runs: int = 10) -> None:
    x = torch.as_tensor(unit(xp[:4000] - xp[:4000].mean(0)))
    y = torch.as_tensor(unit(yp[:4000] - yp[:4000].mean(0)))
    rng, g = np.random.default_rng(0), torch.Generator().manual_seed(0)
    purity, agree = [], []
    for _ in range(runs):
        ca, cb = kmeans(x, 20, g), kmeans(y, 20, g)
        la, lb = torch.cdist(x, ca).argmin(1).numpy(), torch.cdist(y, cb).argmin(1).numpy()
        table = np.zeros((20, 20))
        np.add.at(table, (la, lb), 1)  # English cluster × Spanish cluster of the same verses
        purity.append(table.max(axis=1).sum() / table.sum())
        agree.append(float(np.mean(match_centroids(ca, cb, 30, rng) == table.argmax(axis=1))))
    print(f"purity {np.min(purity):.2f}-{np.max(purity):.2f}; QAP matches the majority cluster "
          f"{np.min(agree):.2f}-{np.max(agree):.2f} (chance 0.05)")  # fmt: skip


def rotation(xp: np.ndarray, xt: np.ndarray, args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((xp.shape[1], xp.shape[1])))
    X, perm = xp[:4000], rng.permutation(4000)
    for name, est in (
        ("mini-vec2vec", MiniVec2Vec(n_restarts=1, seed=0)),
        (f"muse {args.muse_epochs}x{args.muse_epoch_size}",
         MUSE(n_restarts=1, seed=0, n_epochs=args.muse_epochs, epoch_size=args.muse_epoch_size)),
    ):  # fmt: skip
        est.fit(X, (X @ q)[perm])
        r = est.restarts_[0]
        print(f"{name}: R@1 {r_at_1(est.transform_x(xt), est.transform_y(xt @ q)):.3f}, converged {r['converged']}")


def geometry(name: str, zx: np.ndarray, zy: np.ndarray, xt: np.ndarray, yt: np.ndarray) -> None:
    from scipy.stats import spearmanr

    S = unit(zx) @ unit(zy).T
    target = S.argmax(axis=1)
    xs, ys = unit(xt - xt.mean(0)), unit(yt - yt.mean(0))
    iu = np.triu_indices(len(xt), 1)
    rho = spearmanr((xs @ xs.T)[iu], (ys[target] @ ys[target].T)[iu])[0]
    spread = distinct_targets(torch.as_tensor(zx), torch.as_tensor(zy))
    print(f"{name}: R@1 {r_at_1(zx, zy):.3f}, Spearman(query similarities, target similarities) {rho:.2f}, "
          f"distinct nearest targets {spread:.2f}")  # fmt: skip


def vec2vec(xp: np.ndarray, yp: np.ndarray, xt: np.ndarray, yt: np.ndarray, model: Path) -> None:
    if model.exists():
        est = Vec2Vec.load(model)
    else:
        X, Y, _ = ub.training_sets("shuffled", 4000, 0, xp, yp, 0)
        est = Vec2Vec(n_restarts=1, seed=0).fit(X, Y)
        est.save(model)
    r = est.restarts_[0]
    print(f"vec2vec restart: converged {r['converged']}, lift {r['csls_lift']:.2f}, reasons {r['reasons']}")
    geometry("vec2vec", np.asarray(est.transform_x(xt)), np.asarray(est.transform_y(yt)), xt, yt)
    P = Procrustes(normalize=True, center=True).fit(xp[:1000], yp[:1000])
    geometry("procrustes, 1,000 pairs", np.asarray(P.transform_x(xt)), np.asarray(P.transform_y(yt)), xt, yt)
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((xt.shape[1], yt.shape[1])))
    geometry("random rotation", unit(xt - xt.mean(0)) @ q, unit(yt - yt.mean(0)), xt, yt)


def agreement(xp: np.ndarray, yp: np.ndarray, xt: np.ndarray, yt: np.ndarray, methods: list[str]) -> None:
    """Each method fitted once with several restarts on the shuffled set: every restart's own checks, its
    agreement with the others (the verdict's second step) and the kept map's R@1 on the test verses."""
    for method in methods:
        seeds = 50 if method == "mini" else 0
        X, Y, pairs = ub.training_sets("shuffled", 4000, seeds, xp, yp, 0)
        est = {
            "vecmap": lambda: VecMapUnsupervised(n_restarts=3, seed=0, patience=10),
            "mini": lambda: MiniVec2Vec(n_restarts=3, seed=0),
            "vec2vec": lambda: Vec2Vec(n_restarts=2, seed=0),
        }[method]()
        est.fit(X, Y, seed_pairs=pairs)
        print(f"{method} ({seeds} seed pairs), kept restart {est.best_restart_}: "
              f"R@1 {r_at_1(est.transform_x(xt), est.transform_y(yt)):.3f}")  # fmt: skip
        for r in est.restarts_:
            last = (r["reasons"] or ["-"])[-1]
            print(f"  restart {r['restart']}: converged {r['converged']}, gain {r['gain']:.3f}, lift "
                  f"{r['csls_lift']:.3f}, agreement {r['agreement']}, last reason {last}")  # fmt: skip


def word_spaces(run: Path) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """The words run's embeddings (one row per dictionary pair) and the English and French word of each pair."""
    import csv
    import gzip
    import json

    spaces = {}
    for result in (run / "jobs" / "embed").glob("*/result.json"):
        r = json.loads(result.read_text())
        spaces[r["space"]] = np.load(r["layers"]["final"]["file"]).astype(np.float64)
        source = r["data"].split("#")[0]
    with gzip.open(source, "rt", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return spaces, [r["en"] for r in rows], [r["fr"] for r in rows]


def duplicates(run: Path) -> None:
    """vecmap (two restarts, seed 0, patience 10) on the words of pairs 1,500-6,500, French rows shuffled: once on
    the distinct words, once with every repeated word kept as a near-copy (1e-9 jitter, so the exact-duplicate
    drop keeps it): held-out words then have copies among the training rows."""
    spaces, _, _ = word_spaces(run)
    X, Y = spaces["en"][1500:6500], spaces["fr"][1500:6500][np.random.default_rng(0).permutation(5000)]
    jitter = np.random.default_rng(1)
    for name, (a, b) in {
        "distinct words": (X, Y),
        "repeated words as near-copies": (X + 1e-9 * jitter.standard_normal(X.shape),
                                          Y + 1e-9 * jitter.standard_normal(Y.shape)),
    }.items():  # fmt: skip
        est = VecMapUnsupervised(n_restarts=2, seed=0, patience=10).fit(a, b)
        print(f"{name}: {est.n_distinct_x_} x {est.n_distinct_y_} rows fitted")
        for r in est.restarts_:
            print(f"  restart {r['restart']}: converged {r['converged']}, gain {r['gain']:.3f}, CSLS lift "
                  f"{r['csls_lift']:.3f}, agreement {r['agreement']}, reasons {r['reasons']}")  # fmt: skip


def words(run: Path) -> None:
    import pandas as pd

    from alignkit.align.unsupervised import random_map

    spaces, en, fr = word_spaces(run)
    first_en = np.array(sorted({w: i for i, w in reversed(list(enumerate(en)))}.values()))
    first_fr = np.array(sorted({w: i for i, w in reversed(list(enumerate(fr)))}.values()))
    X, Y = spaces["en"][first_en], spaces["fr"][first_fr]
    gold: dict[str, set[str]] = {}
    for a, b in zip(en, fr, strict=True):
        gold.setdefault(a, set()).add(b)

    def report(name: str, zx: np.ndarray, zy: np.ndarray) -> None:
        target = (unit(zx) @ unit(zy).T).argmax(axis=1)
        p1 = np.mean([fr[first_fr[j]] in gold[en[i]] for i, j in zip(first_en, target, strict=True)])
        spread = distinct_targets(torch.as_tensor(zx), torch.as_tensor(zy))
        print(f"{name}: P@1 {p1:.3f} over {len(first_en):,} English words, distinct nearest targets {spread:.2f}")

    for fp in (run / "jobs" / "fit").glob("*/fits.parquet"):
        f = pd.read_parquet(fp)
        if f["method"].iloc[0] == "vecmap":
            est = VecMapUnsupervised.load(run / str(f["path"].iloc[0]))
            report("unsupervised vecmap", np.asarray(est.transform_x(X)), np.asarray(est.transform_y(Y)))
    q = random_map(X.shape[1], Y.shape[1], torch.Generator().manual_seed(0)).numpy()
    report("random rotation", unit(X - X.mean(0)) @ q, unit(Y - Y.mean(0)))
    P = Procrustes(normalize=True, center=True).fit(spaces["en"][:5000], spaces["fr"][:5000])
    report("procrustes, first 5,000 pairs", np.asarray(P.transform_x(X)), np.asarray(P.transform_y(Y)))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("check", choices=("anchors", "rotation", "vec2vec", "words", "agreement", "duplicates"))
    p.add_argument("--methods", nargs="+", default=["vecmap", "mini", "vec2vec"], help="for the agreement check")
    p.add_argument("--muse-epochs", type=int, default=5)
    p.add_argument("--muse-epoch-size", type=int, default=5000)
    p.add_argument("--model", type=Path, default=Path("/tmp/v2v_bible_s0"), help="vec2vec model folder")
    p.add_argument("--run", type=Path, default=Path(tempfile.gettempdir()) / "alignkit-exp-runs" / "words-en-fr")
    args, rest = p.parse_known_args(argv)
    if args.check in ("words", "duplicates"):
        (words if args.check == "words" else duplicates)(args.run)
        return
    bargs = ub.parse_args(rest)
    bargs.data = data_path(bargs, ub.VERSES, override=bargs.data, what="the parallel Bible verses")
    torch.set_num_threads(bargs.threads)
    warnings.simplefilter("ignore")  # the verdicts are printed
    import crosslingual

    emb = crosslingual.embed(bargs)
    n = bargs.n_test
    xt, yt = emb["en_minilm"][:n].astype(np.float64), emb["es_e5"][:n].astype(np.float64)
    xp, yp = emb["en_minilm"][n:].astype(np.float64), emb["es_e5"][n:].astype(np.float64)
    if args.check == "anchors":
        anchors(xp, yp)
    elif args.check == "rotation":
        rotation(xp, xt, args)
    elif args.check == "agreement":
        agreement(xp, yp, xt, yt, args.methods)
    else:
        vec2vec(xp, yp, xt, yt, args.model)


if __name__ == "__main__":
    sys.exit(main())
