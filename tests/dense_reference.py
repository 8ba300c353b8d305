"""Straightforward dense float64 implementations used as independent references in the tests.

They follow the textbook / reference-code definitions literally (full n×n matrices, explicit
centering matrix H, full argsort, dense masks), which is what the library must avoid at scale.
"""

from __future__ import annotations

import numpy as np


def normalize(X: np.ndarray) -> np.ndarray:
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def knn_dense(X: np.ndarray, k: int, metric: str = "cosine") -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if metric == "cosine":
        X = normalize(X)
    if metric == "euclidean":
        S = -((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    else:
        S = X @ X.T
    np.fill_diagonal(S, -np.inf)
    return np.argsort(-S, axis=1, kind="stable")[:, :k]


def mask(idx: np.ndarray) -> np.ndarray:
    n = idx.shape[0]
    M = np.zeros((n, n))
    np.put_along_axis(M, idx, 1.0, axis=1)
    return M


def mutual_knn_dense(X, Y, k):
    A, B = mask(knn_dense(X, k)), mask(knn_dense(Y, k))
    return float((A * B).sum() / (A.shape[0] * k))


def jaccard_knn_dense(X, Y, k):
    a, b = knn_dense(X, k), knn_dense(Y, k)
    vals = [len(set(r) & set(s)) / len(set(r) | set(s)) for r, s in zip(a, b, strict=True)]
    return float(np.mean(vals))


def cycle_knn_dense(X, Y, k):
    a, b = knn_dense(X, k), knn_dense(Y, k)
    hits = [i in set(a[b[i]].ravel()) for i in range(a.shape[0])]
    return float(np.mean(hits))


def lcs(s, t):
    D = [[0] * (len(t) + 1) for _ in range(len(s) + 1)]
    for i in range(len(s)):
        for j in range(len(t)):
            D[i + 1][j + 1] = D[i][j] + 1 if s[i] == t[j] else max(D[i][j + 1], D[i + 1][j])
    return D[-1][-1]


def edit(s, t):
    D = [[i + j if i * j == 0 else 0 for j in range(len(t) + 1)] for i in range(len(s) + 1)]
    for i in range(1, len(s) + 1):
        for j in range(1, len(t) + 1):
            D[i][j] = min(D[i - 1][j] + 1, D[i][j - 1] + 1, D[i - 1][j - 1] + (s[i - 1] != t[j - 1]))
    return D[-1][-1]


def lcs_knn_dense(X, Y, k):
    a, b = knn_dense(X, k), knn_dense(Y, k)
    return float(np.mean([lcs(list(r), list(s)) / k for r, s in zip(a, b, strict=True)]))


def edit_knn_dense(X, Y, k):
    a, b = knn_dense(X, k), knn_dense(Y, k)
    return float(1 - np.mean([edit(list(r), list(s)) / k for r, s in zip(a, b, strict=True)]))


def hsic_unbiased_dense(K, L):
    """Song et al. 2012, with the O(n³) product written out (as PRH does)."""
    n = K.shape[0]
    Kt, Lt = K.copy(), L.copy()
    np.fill_diagonal(Kt, 0)
    np.fill_diagonal(Lt, 0)
    val = (Kt * Lt.T).sum() + Kt.sum() * Lt.sum() / ((n - 1) * (n - 2)) - 2 * (Kt @ Lt).sum() / (n - 2)
    return float(val / (n * (n - 3)))


def hsic_biased_dense(K, L):
    n = K.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    return float(np.trace(K @ H @ L @ H) / (n - 1) ** 2)


def gram_dense(X, kernel="linear", threshold=1.0, sigma=1.0):
    X = np.asarray(X, dtype=np.float64)
    G = X @ X.T
    if kernel == "linear":
        return G
    D2 = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    if kernel == "rbf_median":
        return np.exp(-D2 / (2 * threshold**2 * np.median(D2)))
    return np.exp(-D2 / (2 * sigma**2))


def cka_dense(X, Y, kernel="linear", debiased=False):
    K, L = gram_dense(X, kernel), gram_dense(Y, kernel)
    h = hsic_unbiased_dense if debiased else hsic_biased_dense
    return h(K, L) / np.sqrt(h(K, K) * h(L, L))


def cknna_dense(X, Y, k, eps=1e-6):
    """PRH's ``cknna(unbiased=True)`` written densely on L2-normalised features."""
    Xn, Yn = normalize(np.asarray(X, float)), normalize(np.asarray(Y, float))
    K, L = Xn @ Xn.T, Yn @ Yn.T

    def sim(K, L):
        Kh, Lh = K.copy(), L.copy()
        np.fill_diagonal(Kh, -np.inf)
        np.fill_diagonal(Lh, -np.inf)
        mk = mask(np.argsort(-Kh, axis=1, kind="stable")[:, :k])
        ml = mask(np.argsort(-Lh, axis=1, kind="stable")[:, :k])
        M = mk * ml
        return hsic_unbiased_dense(M * K, M * L)

    return sim(K, L) / (np.sqrt(sim(K, K) * sim(L, L)) + eps)


def shared_latent(rng, n=300, d_latent=8, dx=20, dy=24, noise=0.5):
    """Two spaces that are noisy linear views of one latent: clearly but not perfectly aligned."""
    Z = rng.standard_normal((n, d_latent))
    X = Z @ rng.standard_normal((d_latent, dx)) + noise * rng.standard_normal((n, dx))
    Y = Z @ rng.standard_normal((d_latent, dy)) + noise * rng.standard_normal((n, dy))
    return X, Y
