"""Sparse recurrent layers as graphs: the spectral gap against the Ramanujan bound, the graph
properties of a hidden-to-hidden mask, and a random forest that predicts a network's accuracy
from those properties.

Two neighbouring studies read a pruned RNN through its masks' graphs:

- Kalra, Biswas, Mitra & Basu, "Graph Expansion in Pruned Recurrent Neural Network Layers
  Preserve Performance" (arXiv 2403.11100, ICLR 2024 Tiny Papers): each weight matrix is a
  bipartite graph between its input and output units; a positive spectral gap (the graph is
  Ramanujan-like, an expander) goes with preserved accuracy. :func:`spectral_gap`.
- Darji, "Investigating Sparsity in Recurrent Neural Networks" (arXiv 2407.20601): the
  hidden-to-hidden mask is a graph on the hidden units; masks drawn from random graphs, their
  graph properties, and a random forest regressor of accuracy from the properties (R² 0.81 for
  GRU; node count and betweenness centrality the most important). :func:`graph_properties`,
  :func:`predict_from_properties`.

The studies themselves are in :mod:`lshkit.studies`; the search and the predictor shoot-out use
the gap and the properties here as predictors of any candidate.

Every function takes a plain mask (a 2-D bool/0-1 tensor or array, or a weight matrix whose
non-zeros are the edges) or a dict of them named as the parameters they mask (what
``lshkit.dst.DynamicSparsity.masks`` holds), so any lshkit model's masks can be scored.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .checks import check_positive_int

__all__ = ["as_mask", "spectral_gap", "mask_spectral_gaps", "gap_summary", "hidden_adjacency", "graph_properties",
           "mask_graph_features", "gap_score", "predict_from_properties", "out_of_fold", "PROPERTY_FEATURES"]


def as_mask(mask) -> np.ndarray:
    """A 2-D bool array from a mask or weight matrix (tensor or array): True where non-zero."""
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be a 2-D matrix [outputs, inputs]; got shape {mask.shape}")
    return mask != 0


def _top_singular_values(m: np.ndarray, k: int = 2) -> np.ndarray:
    """The k largest singular values of a 0/1 matrix (dense SVD, or ARPACK where it is large)."""
    m = m.astype(np.float64)
    if min(m.shape) <= 600 or min(m.shape) <= k + 1:
        s = np.linalg.svd(m, compute_uv=False)
    else:
        from scipy.sparse import csr_matrix
        from scipy.sparse.linalg import svds
        s = svds(csr_matrix(m), k=k, return_singular_vectors=False, random_state=0)
    s = np.sort(s)[::-1]
    return np.pad(s, (0, max(0, k - len(s))))[:k]


def spectral_gap(mask) -> dict:
    """Spectral gap of a layer's bipartite graph with respect to the Ramanujan bound.

    A weight matrix ``W [m, n]`` (m output units, n input units; for a gate-stacked LSTM/GRU
    matrix the m = 4H or 3H pre-activation units) is the bipartite graph with adjacency
    ``A = [[0, M], [M^T, 0]]``, ``M = (W != 0)``. The eigenvalues of A are ``±σ_i(M)``, the
    singular values of M, so the largest, trivial pair is ``±σ_1`` and the largest
    non-trivial eigenvalue magnitude is ``σ_2(M)``.

    A ``(d_L, d_R)``-biregular bipartite graph is Ramanujan when every non-trivial eigenvalue
    satisfies ``|λ| <= √(d_L − 1) + √(d_R − 1)``, the bipartite form of the Ramanujan bound
    that Kalra et al. (arXiv 2403.11100) measure pruned RNN/LSTM layers against; for such a
    graph ``σ_1 = √(d_L d_R)``, and random biregular graphs come within ε of the bound (Brito,
    Dumitriu & Harris, "Spectral gap in random bipartite biregular graphs and applications",
    Combinatorics, Probability and Computing 2022). A pruned layer is irregular; following the
    average-degree variant the pruning-at-initialisation literature uses for such layers
    (Hoang, Liu, Marculescu & Wang, "Revisiting pruning at initialization through the lens of
    Ramanujan graph", ICLR 2023), we put the layer's average degree on each side in place of
    ``d_L`` and ``d_R``::

        d_L = |E| / m   (mean degree of the output units, all m of them)
        d_R = |E| / n   (mean degree of the input units, all n of them)
        bound = √(max(d_L − 1, 0)) + √(max(d_R − 1, 0))
        gap   = bound − σ_2(M)

    ``gap > 0``: the layer meets the (average-degree) Ramanujan bound with room, an expander;
    ``gap < 0``: it does not. Units cut off entirely count in the averages: a pruned-away unit
    is still part of the layer. A disconnected graph has a repeated trivial eigenvalue
    (``σ_2 = σ_1`` for two equal components), hence a negative gap for degrees >= 3. A layer
    with no edge has no spectrum to speak of: gap NaN.

    Returns ``dict(rows, cols, edges, density, d_left, d_right, sigma1, sigma2, bound, gap,
    ramanujan)``.
    """
    m = as_mask(mask)
    rows, cols = m.shape
    edges = int(m.sum())
    d_left, d_right = edges / rows, edges / cols
    bound = math.sqrt(max(d_left - 1.0, 0.0)) + math.sqrt(max(d_right - 1.0, 0.0))
    s1, s2 = (float(x) for x in _top_singular_values(m, 2)) if edges else (0.0, 0.0)
    gap = bound - s2 if edges else float("nan")
    return {"rows": rows, "cols": cols, "edges": edges, "density": edges / (rows * cols), "d_left": d_left,
            "d_right": d_right, "sigma1": s1, "sigma2": s2, "bound": bound, "gap": gap,
            "ramanujan": bool(edges and gap >= 0)}


def _named_masks(masks) -> dict:
    if hasattr(masks, "masks") and isinstance(masks.masks, dict):  # a DynamicSparsity
        masks = masks.masks
    if not isinstance(masks, dict) or not masks:
        raise ValueError("masks must be a non-empty dict name -> 2-D mask (e.g. DynamicSparsity.masks)")
    return masks


def mask_spectral_gaps(masks) -> pd.DataFrame:
    """:func:`spectral_gap` of every 2-D mask in ``masks`` (a dict name -> mask, or a
    ``DynamicSparsity``), one row each, named by ``layer``."""
    return pd.DataFrame([{"layer": name, **spectral_gap(m)} for name, m in _named_masks(masks).items()
                         if getattr(m, "ndim", np.ndim(m)) == 2])


def gap_summary(masks) -> dict:
    """Min and mean per-layer spectral gap of a model's masks, and how many layers are
    Ramanujan-like (the shoot-out's per-candidate predictors)."""
    gaps = mask_spectral_gaps(masks)
    return {"gap_min": float(gaps.gap.min()), "gap_mean": float(gaps.gap.mean()),
            "ramanujan_layers": int(gaps.ramanujan.sum()), "layers": len(gaps)}


def gap_score(gap: float) -> float:
    """A spectral gap as a removal score, lower kept as every ranking of the search: the gap
    negated (a larger gap is arXiv 2403.11100's sign of preserved accuracy). A layer without
    an edge has no gap (NaN); such a candidate scores +inf and is removed first."""
    return -gap if math.isfinite(gap) else math.inf


# -- hidden-to-hidden masks as graphs -----------------------------------------------------


def hidden_adjacency(mask) -> np.ndarray:
    """The graph on the hidden units of a hidden-to-hidden mask ``[g·H, H]`` (g = 1 RNN,
    3 GRU, 4 LSTM gate blocks stacked as torch does): unit j feeds unit i when any gate of i
    reads j. Returned undirected (j–i when either feeds the other) as a symmetric bool
    ``[H, H]`` without self-loops, the simple graph the graph properties are defined on."""
    m = as_mask(mask)
    rows, hidden = m.shape
    if rows % hidden:
        raise ValueError(f"a hidden-to-hidden mask has g·H rows for H columns; got shape {m.shape}")
    directed = m.reshape(rows // hidden, hidden, hidden).any(axis=0)
    undirected = directed | directed.T
    np.fill_diagonal(undirected, False)
    return undirected


#: The graph properties :func:`graph_properties` returns, the random forest's features.
PROPERTY_FEATURES = ("nodes", "edges", "density", "mean_degree", "max_degree", "degree_std", "components",
                     "largest_component", "avg_clustering", "transitivity", "avg_path_length", "diameter",
                     "global_efficiency", "mean_betweenness", "max_betweenness", "mean_closeness",
                     "assortativity", "spectral_radius")


def graph_properties(mask, *, max_sources: int = 300, seed: int = 0) -> dict:
    """Graph properties of a hidden-to-hidden mask (those the Reber study names, arXiv
    2407.20601, and the usual companions), on the undirected simple graph of :func:`hidden_adjacency`
    restricted to its *nodes*: the hidden units with at least one recurrent connection.

    nodes, edges, density (edges over node pairs), mean/max/std of the degree, components,
    largest_component (its share of the nodes), avg_clustering (mean local clustering
    coefficient, 0 for degree < 2), transitivity (3 × triangles / connected triples),
    avg_path_length and diameter (within the largest component), global_efficiency (mean
    1/distance over all ordered node pairs, 0 when unreachable), mean/max betweenness
    centrality (normalised), mean_closeness (Wasserman–Faust, for disconnected graphs),
    assortativity (degree assortativity, 0 where undefined, e.g. a regular graph),
    spectral_radius (largest adjacency eigenvalue); also ``units`` (H) and ``self_loops``.

    Triangles and clustering come from ``A³`` (vectorised); paths from breadth-first search
    (``scipy.sparse.csgraph``) from every node, or from ``max_sources`` sampled nodes on larger
    graphs; betweenness by Brandes' algorithm in matrix form from the same sources (exact, or
    Brandes & Pich's pivot estimate when sampled), so a 1500-unit layer takes seconds.
    A mask with no recurrent edge gives zeros (and ``nodes`` 0).
    """
    check_positive_int("max_sources", max_sources)
    m = as_mask(mask)
    if m.shape[0] % m.shape[1] == 0:
        hidden = m.shape[1]
        self_loops = int(m.reshape(-1, hidden, hidden).any(axis=0).diagonal().sum())
    else:
        raise ValueError(f"a hidden-to-hidden mask has g·H rows for H columns; got shape {m.shape}")
    full = hidden_adjacency(m)
    keep = full.any(axis=1)
    A = full[np.ix_(keep, keep)].astype(np.float64)
    n = int(keep.sum())
    out = dict.fromkeys(PROPERTY_FEATURES, 0.0)
    out.update(units=hidden, self_loops=self_loops)
    if n == 0:
        return out
    deg = A.sum(axis=1)
    edges = int(deg.sum() // 2)
    A2 = A @ A
    closed = (A2 * A).sum(axis=1)  # (A³)_ii: twice the triangles at i
    pairs = deg * (deg - 1)
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components, shortest_path

    comps, labels = connected_components(csr_matrix(A), directed=False)
    sizes = np.bincount(labels)
    rng = np.random.default_rng(seed)
    sources = np.arange(n) if n <= max_sources else np.sort(rng.choice(n, max_sources, replace=False))
    dist = shortest_path(csr_matrix(A), method="D", unweighted=True, indices=sources)
    finite = np.isfinite(dist) & (dist > 0)
    big = np.argmax(sizes)
    in_big = labels[sources] == big
    big_d = dist[in_big][:, labels == big]
    big_d = big_d[big_d > 0]
    betweenness = _betweenness(A, dist, sources)
    # Wasserman–Faust closeness: (r/(n-1)) · (r / Σd) over the r nodes a node reaches.
    reach = finite.sum(axis=1)
    total = np.where(finite, dist, 0).sum(axis=1)
    closeness = np.where(total > 0, (reach / max(n - 1, 1)) * reach / np.maximum(total, 1), 0.0)
    # Degree assortativity: Pearson correlation of the degrees at the two ends of every edge
    # (each edge both ways), as networkx's degree_assortativity_coefficient for simple graphs.
    i, j = np.nonzero(A)
    x, y = deg[i], deg[j]
    assort = float(np.corrcoef(x, y)[0, 1]) if len(i) > 2 and x.std() > 0 and y.std() > 0 else float("nan")
    out.update(
        nodes=n, edges=edges, density=2 * edges / (n * (n - 1)) if n > 1 else 0.0,
        mean_degree=float(deg.mean()), max_degree=float(deg.max()), degree_std=float(deg.std()),
        components=int(comps), largest_component=float(sizes.max() / n),
        avg_clustering=float(np.where(pairs > 0, closed / np.maximum(pairs, 1), 0.0).mean()),
        transitivity=float(closed.sum() / pairs.sum()) if pairs.sum() > 0 else 0.0,
        avg_path_length=float(big_d.mean()) if big_d.size else 0.0,
        diameter=float(big_d.max()) if big_d.size else 0.0,
        global_efficiency=float(np.where(finite, 1 / np.where(finite, dist, 1), 0).sum() / (len(sources) * max(n - 1, 1))),
        mean_betweenness=float(betweenness.mean()), max_betweenness=float(betweenness.max()),
        mean_closeness=float(closeness.mean()),
        assortativity=0.0 if not np.isfinite(assort) else float(assort),
        spectral_radius=float(np.linalg.eigvalsh(A)[-1]))
    return out


def _betweenness(A: np.ndarray, dist: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Normalised betweenness centrality of an undirected unweighted graph by Brandes'
    algorithm, all ``sources`` at once: path counts forward level by level, dependencies
    backward (``dist`` [S, n]: BFS distances from the sources). Equals networkx's
    ``betweenness_centrality`` (normalized, endpoints excluded) when every node is a source,
    and its pivot estimate (scaled by n / S) otherwise."""
    n = A.shape[0]
    S = len(sources)
    D = np.where(np.isfinite(dist), dist, -1).astype(np.int64)
    depth = int(D.max())
    sigma = np.zeros((S, n))
    sigma[np.arange(S), sources] = 1.0
    for d in range(1, depth + 1):
        sigma += np.where(D == d, (sigma * (D == d - 1)) @ A, 0.0)
    delta = np.zeros((S, n))
    safe = np.where(sigma > 0, sigma, 1.0)
    for d in range(depth - 1, 0, -1):
        t = np.where(D == d + 1, (1.0 + delta) / safe, 0.0)
        delta += np.where(D == d, sigma * (t @ A), 0.0)
    raw = delta.sum(axis=0) * (n / S)  # ordered pairs: each unordered pair counted twice
    return raw / ((n - 1) * (n - 2)) if n > 2 else np.zeros(n)


def mask_graph_features(masks, *, max_sources: int = 300, seed: int = 0) -> dict:
    """:func:`graph_properties` of every hidden-to-hidden mask (names containing
    ``weight_hh``, as torch and ``lshkit.models`` name them) in ``masks`` (dict or
    ``DynamicSparsity``), flattened as ``<layer>.<property>``, plus the whole model's density
    and its spectral-gap summary: one feature row per candidate for a predictor."""
    masks = _named_masks(masks)
    out = {}
    for name, m in masks.items():
        if "weight_hh" in name:
            out.update({f"{name}.{k}": v for k, v in graph_properties(m, max_sources=max_sources, seed=seed).items()})
    if not out:
        raise ValueError(f"no hidden-to-hidden mask (a name containing 'weight_hh') among {sorted(masks)}")
    out["density"] = sum(int(as_mask(m).sum()) for m in masks.values()) / sum(as_mask(m).size for m in masks.values())
    out.update(gap_summary(masks))
    return out


# -- the performance predictor --------------------------------------------------------------


def out_of_fold(frame: pd.DataFrame, target: str, features=PROPERTY_FEATURES, *, folds: int = 5,
                trees: int = 300, seed: int = 0):
    """Random-forest predictions of ``target`` from ``features`` in which every row is predicted by
    a forest fitted on the other folds (``folds``-fold cross-validation, shuffled with ``seed``), so
    no row's prediction has seen it. Returns ``(predictions, unfitted forest)``."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.model_selection import KFold, cross_val_predict

    features = list(features)
    missing = sorted(set(features + [target]) - set(frame.columns))
    if missing:
        raise ValueError(f"columns {missing} are not in the frame; it has {sorted(frame.columns)}")
    check_positive_int("folds", folds)
    if len(frame) < 2 * folds:
        raise ValueError(f"{len(frame)} rows are too few for {folds}-fold cross-validation (need {2 * folds})")
    X, y = frame[features].to_numpy(float), frame[target].to_numpy(float)
    forest = RandomForestRegressor(n_estimators=trees, random_state=seed, n_jobs=1)
    return cross_val_predict(forest, X, y, cv=KFold(folds, shuffle=True, random_state=seed)), forest


def predict_from_properties(frame: pd.DataFrame, target: str, features=PROPERTY_FEATURES, *, folds: int = 5,
                            trees: int = 300, boot: int = 2000, seed: int = 0) -> tuple[dict, pd.DataFrame]:
    """A random forest regressor of ``target`` from graph ``features`` (as arXiv 2407.20601).

    The R² is out of sample (:func:`out_of_fold`), and the R² of those pooled
    predictions gets a 95% bootstrap interval over rows (``boot`` resamples). Importances are
    the forest's impurity-based ones (mean decrease in squared error) from a fit on all rows,
    with the spread over the trees. Returns ``(summary dict, importances frame)``."""
    features = list(features)
    predicted, forest = out_of_fold(frame, target, features, folds=folds, trees=trees, seed=seed)
    X, y = frame[features].to_numpy(float), frame[target].to_numpy(float)
    r2 = r2_low = r2_high = float("nan")  # a constant target has no variance to explain
    if y.var() > 0:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, len(y), size=(boot, len(y)))
        yb, pb = y[idx], predicted[idx]
        ss_tot = ((yb - yb.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
        r2_boot = 1 - ((yb - pb) ** 2).sum(axis=1) / np.where(ss_tot > 0, ss_tot, np.nan)
        r2 = float(1 - ((y - predicted) ** 2).sum() / ((y - y.mean()) ** 2).sum())
        r2_low, r2_high = (float(x) for x in np.nanpercentile(r2_boot, [2.5, 97.5]))
    forest.fit(X, y)
    per_tree = np.array([t.feature_importances_ for t in forest.estimators_])
    importances = pd.DataFrame({"feature": features, "importance": forest.feature_importances_,
                                "std_over_trees": per_tree.std(axis=0)}).sort_values("importance", ascending=False)
    summary = {"r2": r2, "r2_low": r2_low, "r2_high": r2_high, "rows": len(y), "folds": folds,
               "target_std": float(y.std())}
    return summary, importances.reset_index(drop=True)
