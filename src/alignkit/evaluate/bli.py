"""Bilingual lexicon induction P@k with NN and CSLS retrieval, and coverage (docs/methods.md §5.3)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from alignkit._common import unit_rows
from alignkit._validation import ArrayLike, as_matrix, check_choice, check_ks, check_same_dim
from alignkit.degenerate import warn_degenerate
from alignkit.evaluate.retrieval import SCORINGS, csls_radius, gold_ranks, pad_gold
from alignkit.evaluate.rows import Row, make_row


def bli(
    src_emb: ArrayLike,
    tgt_emb: ArrayLike,
    gold: Mapping[int, Iterable[int]],
    *,
    ks: Sequence[int] = (1, 5, 10),
    scoring: str | Sequence[str] = ("nn", "csls"),
    csls_k: int = 10,
    n_src_vocab: int | None = None,
    n_oov: int = 0,
    **tags: Any,
) -> list[Row]:
    """Word translation P@k: source word i (a row of the mapped ``src_emb``) retrieves among all rows of
    ``tgt_emb``; it is correct at k if any of its gold translations ``gold[i]`` is in the top k. Ties are not
    hits: a word whose best gold translation trails g words and ties with t others counts
    ``clip((k − g)/(t + 1), 0, 1)``, the expectation under random tie-breaking (:mod:`alignkit.ranking`).

    CSLS: ``2cos(Wx, y) − r_T(Wx) − r_S(y)``, r_T over the target vocabulary, r_S over the source
    vocabulary (the first ``n_src_vocab`` rows of ``src_emb``; all rows by default), K = ``csls_k``
    (Conneau, Lample, Ranzato, Denoyer & Jégou, "Word translation without parallel data", ICLR 2018).

    Coverage (as vecmap's evaluation reports it; Artetxe, Labaka & Agirre, "A robust self-learning method
    for fully unsupervised cross-lingual mappings of word embeddings", ACL 2018): the test words are the
    keys of ``gold`` plus ``n_oov`` words the caller could not map to an embedding. A key is out of
    vocabulary if its index is ``>= n_src_vocab`` or its gold set is empty (no translation in the target
    vocabulary). Rows:
    ``coverage`` = covered / test words, and ``P@k`` twice per scoring: ``subset="covered"`` (accuracy
    over covered words) and ``subset="strict"`` (OOV counted wrong). Every row records
    ``n_retrieval_vocab`` (target rows) and ``n_src_vocab``, since CSLS depends on both.
    """
    scorings = [scoring] if isinstance(scoring, str) else list(scoring)
    if not scorings:
        raise ValueError("scoring must name at least one of 'nn', 'csls'")
    for s in scorings:
        check_choice(s, SCORINGS, "scoring")
    src = as_matrix(src_emb, "src_emb")
    tgt = as_matrix(tgt_emb, "tgt_emb").to(src.device)
    warn_degenerate("bli", src_emb=src, tgt_emb=tgt)
    check_same_dim(src, tgt, ("src_emb", "tgt_emb"))
    n_s, n_t = src.shape[0], tgt.shape[0]
    if n_src_vocab is None:
        n_src_vocab = n_s
    if isinstance(n_src_vocab, bool) or not isinstance(n_src_vocab, (int, np.integer)) or not 1 <= n_src_vocab <= n_s:
        raise ValueError(f"n_src_vocab must be an integer in [1, {n_s}] (rows of src_emb); got {n_src_vocab!r}")
    if isinstance(n_oov, bool) or not isinstance(n_oov, (int, np.integer)) or n_oov < 0:
        raise ValueError(f"n_oov must be a non-negative integer; got {n_oov!r}")
    if not isinstance(gold, Mapping):
        raise TypeError(f"gold must be a dict {{source index: set of target indices}}; got {type(gold).__name__}")
    ks = check_ks(ks, n_t, "target vocabulary")
    covered: list[int] = []
    targets: list[list[int]] = []
    for key, tg in gold.items():
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or not 0 <= key < n_s:
            raise ValueError(f"gold key {key!r} is not a row of src_emb (0 <= key < {n_s})")
        tset = sorted({int(t) for t in tg})
        if tset and (tset[0] < 0 or tset[-1] >= n_t):
            raise ValueError(f"gold[{key}] has a target index outside [0, {n_t}): {tset}")
        if key < n_src_vocab and tset:
            covered.append(int(key))
            targets.append(tset)
    n_test = len(gold) + int(n_oov)
    if n_test == 0:
        raise ValueError("gold is empty and n_oov is 0: nothing to evaluate")
    n_cov = len(covered)
    base = {"n_test_words": n_test, "n_covered": n_cov, "n_retrieval_vocab": n_t, "n_src_vocab": int(n_src_vocab)}
    rows = [make_row("coverage", n_cov / n_test, tags, **base)]
    if n_cov == 0:
        raise ValueError("no test word is covered (all OOV): P@k is undefined on covered words")
    S = unit_rows(src.double())
    T = unit_rows(tgt.double())
    idx = torch.as_tensor(covered, dtype=torch.long, device=S.device)
    Q = S[idx]
    gold_t = pad_gold(targets, S.device)
    for sc in scorings:
        extra: dict[str, Any] = {}
        r_t = r_s = None
        if sc == "csls":
            r_t = csls_radius(Q, T, csls_k)
            r_s = csls_radius(T, S[:n_src_vocab], csls_k)
            extra["csls_k"] = int(csls_k)
        ranks = gold_ranks(Q, T, gold_t, r_queries=r_t, r_gallery=r_s)
        for k in ks:
            hits = ranks.expected_hits(k)
            for subset, denom in (("covered", n_cov), ("strict", n_test)):
                rows.append(make_row(f"P@{k}", hits / denom, tags, scoring=sc, subset=subset, **base, **extra))
    return rows
