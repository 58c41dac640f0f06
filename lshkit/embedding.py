"""The LS space: embed Lyapunov spectra and rank candidates by their distance to the reference.

Paper §3.2 and Appendix B: the reference LS ``Λ̂`` and every candidate's LS history
``Λ^i = {Λ^i_j}`` (one row per epoch so far) are embedded together,

    [v̂, v^i_0, ..., v^i_-1] = embedding([Λ̂, Λ^i]),    s_i = distance(v̂, v^i_-1),

and candidates are ranked by ``s_i`` (nearest first). The paper's choice is a 2-D PCA with
the L2 distance; Appendix B (Table B2) also uses t-SNE and the raw LS with L2 and cosine.

Which LS is ``Λ̂``, "the LS of the reference network", the paper does not say; Appendix B's text
speaks of "the embedded LS of reference and candidate at the current epoch", and the authors'
released code compares each candidate with the dense model's LS *at the same epoch*. Both
readings (:data:`REFERENCES`) are a choice of the ``reference`` passed in:

- ``"final"``: one vector [N], the dense model's LS at its last epoch; every candidate's history
  is embedded with it.
- ``"same_epoch"``: the dense model's LS at every epoch, [epochs, N]; a candidate at epoch e is
  embedded with the dense history up to e, ``[Λ̂_0, …, Λ̂_e, Λ^i_0, …, Λ^i_e]``, so the
  reference enters the fit exactly as the candidate does, and row j of the candidate is compared
  with the embedded ``Λ̂_j``. With ``fit="joint"`` the dense history up to the latest epoch any
  candidate has reached enters the one fit. With ``embedding="raw"`` this is the authors' code:
  the plain distance between ``Λ^i_e`` and ``Λ̂_e``.

Typical use::

    space = ls_space(reference, histories, embedding="pca")   # reference [N], histories {id: [E, N]}
    order = rank_candidates(space.distances("l2"))            # nearest first
    space.points[cid]                                         # embedded rows, for Fig. 1B / Fig. 2
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from lshkit.checks import check_int
from lshkit.env import small_matrix_blas
from lshkit.vocab import DISTANCES, EMBEDDINGS, FITS, REFERENCES



def check_references(references) -> list[str]:
    """``references`` as a list of readings (:data:`REFERENCES`), at least one: an error naming a
    bad one and the valid ones."""
    references = [references] if isinstance(references, str) else list(references)
    if not references:
        raise ValueError(f"references must name at least one reading; valid: {list(REFERENCES)}")
    for reference in references:
        _check_choice("reference", reference, REFERENCES)
    return references


def _check_choice(kind: str, value, valid) -> None:
    if kind == "embedding" and value == "same_epoch":
        raise ValueError("embedding 'same_epoch' is now embedding='raw' with reference='same_epoch' "
                         "(the reference is its own option; valid embeddings: "
                         f"{', '.join(map(repr, valid))})")
    if value not in valid:
        raise ValueError(f"unknown {kind} {value!r}; valid: {', '.join(map(repr, valid))}")


def tsne_perplexity(n_points: int) -> float:
    """t-SNE perplexity used for ``n_points``: ``min(30, (n_points - 1) / 3)``.

    scikit-learn's default 30 needs more than 30 points and t-SNE needs perplexity below the
    number of points; a pool of a few candidates over a few epochs has far fewer, so the
    perplexity shrinks with the point count (each point then has about a third of the
    others as effective neighbours).
    """
    if n_points < 2:
        raise ValueError(f"t-SNE needs at least 2 points, got {n_points}")
    return min(30.0, (n_points - 1) / 3)


class LSEmbedding(TransformerMixin, BaseEstimator):
    """scikit-learn estimator embedding LS vectors (rows of ``X`` [n_points, N]) into the LS space.

    method:
      - ``"pca"``: PCA to ``n_components`` (the paper: 2). Full SVD, so deterministic; the
        arbitrary sign of each component flips coordinates but leaves every distance unchanged.
        Fitted on fewer points than ``n_components`` (or on N < ``n_components``), the
        components beyond those the data spans are returned as zeros, so coordinates always
        have ``n_components`` columns and distances are those of the spanned subspace.
      - ``"tsne"``: t-SNE to ``n_components`` with perplexity :func:`tsne_perplexity` and PCA
        initialisation. t-SNE has no map for new points: ``transform`` only returns the
        fitted points, so the points to compare must all be in the fitted set. Use
        ``fit_transform`` on the stacked matrix, or :func:`ls_space`, which stacks for you.
      - ``"raw"``: the LS vector itself (``n_components`` is ignored).

    ``random_state`` seeds t-SNE; PCA and raw are deterministic without it.
    """

    def __init__(self, method: str = "pca", n_components: int = 2, random_state: int = 0):
        self.method = method
        self.n_components = n_components
        self.random_state = random_state

    def _validate(self, X) -> np.ndarray:
        _check_choice("embedding method", self.method, EMBEDDINGS)
        check_int("n_components", self.n_components, low=1)
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] == 0:
            raise ValueError(f"X must be a non-empty [n_points, N] matrix, got shape {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("X holds NaN or inf; ls_space leaves such rows out of the fit")
        return X

    def fit(self, X, y=None):
        self.fit_transform(X)
        return self

    def fit_transform(self, X, y=None) -> np.ndarray:
        X = self._validate(X)
        self.n_features_in_ = X.shape[1]
        if self.method == "raw":
            self.embedding_ = X.copy()
        elif self.method == "pca":
            if X.shape[0] < 2:
                raise ValueError("PCA needs at least 2 points")
            k = min(self.n_components, *X.shape)
            self.pca_ = PCA(n_components=k, svd_solver="full").fit(X)
            self.embedding_ = self._pad(self.pca_.transform(X))
        else:
            self.embedding_ = self._tsne(X)
        self.fitted_X_ = X
        return self.embedding_

    def transform(self, X) -> np.ndarray:
        if not hasattr(self, "embedding_"):
            raise ValueError("LSEmbedding is not fitted yet; call fit or fit_transform first")
        X = self._validate(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} LS exponents, fitted on {self.n_features_in_}")
        if self.method == "raw":
            return X.copy()
        if self.method == "pca":
            return self._pad(self.pca_.transform(X))
        if X.shape == self.fitted_X_.shape and np.array_equal(X, self.fitted_X_):
            return self.embedding_.copy()
        raise ValueError(
            "t-SNE cannot embed new points: fit_transform the stacked matrix of every point to "
            "compare (ls_space(...) does this)"
        )

    def _pad(self, Z: np.ndarray) -> np.ndarray:
        out = np.zeros((Z.shape[0], self.n_components))
        out[:, : Z.shape[1]] = Z
        return out

    def _tsne(self, X: np.ndarray) -> np.ndarray:
        if X.shape[0] < 2:
            return np.zeros((X.shape[0], self.n_components))
        # Exact gradients: an LS space holds a few hundred points at most, where exact is faster
        # than Barnes-Hut (401 points x 3000 exponents on 2 cores: 8.6 s vs 40 s) and has no
        # limit of 3 output dimensions.
        tsne = TSNE(
            n_components=self.n_components,
            perplexity=tsne_perplexity(X.shape[0]),
            init="pca",
            method="exact",
            random_state=self.random_state,
        )
        return tsne.fit_transform(X)


def point_distance(p, q, kind: str = "l2") -> float:
    """Distance between two embedded points (Appendix B).

    ``l2``: ``|p - q|``. ``cos``: ``1 - p·q / (|p| |q|)``, the standard cosine distance; the
    paper's printed formula has ``|p| + |q|`` in the denominator, a typo (it would not be
    scale-free nor bounded). A zero vector has no direction: its cosine distance is taken as
    1 (orthogonal). In the PCA space the origin is the mean of the fitted points, so ``cos``
    there measures angles around that mean.
    """
    _check_choice("distance", kind, DISTANCES)
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if kind == "l2":
        return float(np.linalg.norm(p - q))
    norms = np.linalg.norm(p) * np.linalg.norm(q)
    if norms == 0.0:
        return 1.0
    return float(1.0 - np.dot(p, q) / norms)


@dataclass
class LSSpace:
    """Embedded LS of the reference and of every candidate's history.

    ``reference``: [R, d], the embedded reference; R = 1 for the final reading, and for the
    same-epoch reading row j is the dense LS at epoch j. ``points``: candidate id -> [epochs, d],
    one row per history row; rows left out of the fit (non-finite LS) are NaN. With one fit per
    candidate, ``references`` holds each candidate's own embedded reference rows. ``distances``
    compares each candidate's current (last) row with the reference (the row of the same epoch
    for the same-epoch reading); a candidate whose current row is NaN is at distance +inf.
    """

    embedding: str
    reference: np.ndarray
    points: dict[Hashable, np.ndarray]
    references: dict[Hashable, np.ndarray] | None = None  # per-candidate fits: each one's reference

    def reference_point(self, cid: Hashable, row: int | None = None) -> np.ndarray:
        """The reference point that row ``row`` (default: the current, last one) of candidate
        ``cid`` is compared with."""
        reference = self.reference if self.references is None else self.references[cid]
        if len(reference) == 1:
            return reference[0]
        return reference[len(self.points[cid]) - 1 if row is None else row]

    def distances(self, distance: str = "l2") -> dict[Hashable, float]:
        _check_choice("distance", distance, DISTANCES)
        out = {}
        for cid, rows in self.points.items():
            current = rows[-1]
            if np.isfinite(current).all():
                out[cid] = point_distance(current, self.reference_point(cid), distance)
            else:
                out[cid] = math.inf
        return out


def _as_ls(cid, value, n_exponents: int) -> np.ndarray:
    rows = np.asarray(value, dtype=np.float64)
    if rows.ndim == 1:
        rows = rows[None, :]
    if rows.ndim != 2 or rows.shape[0] == 0:
        raise ValueError(
            f"history of candidate {cid!r} must be [epochs, N] with at least one epoch, "
            f"got shape {np.shape(value)}"
        )
    if rows.shape[1] != n_exponents:
        raise ValueError(
            f"candidate {cid!r} has LS vectors of length {rows.shape[1]}, "
            f"the reference has {n_exponents}"
        )
    return rows


def ls_space(
    reference,
    histories: Mapping[Hashable, object],
    *,
    embedding: str = "pca",
    n_components: int = 2,
    random_state: int = 0,
    fit: str = "joint",
) -> LSSpace:
    """Embed ``[reference; history rows]`` (Appendix B equation): with ``fit="candidate"`` one
    embedding per candidate over the reference and that candidate's history (the paper's
    equation; then ``references`` holds each candidate's reference points and coordinates of
    different candidates are not comparable), with ``fit="joint"`` one over the reference and
    every history together.

    reference: the dense LS, [N] (the final reading) or [epochs, N] (the same-epoch reading, row
    j taken at the same epoch as row j of every history; which of its rows enter a fit: the
    module docstring). histories: candidate id -> LS history [epochs_so_far, N], the last row
    being the current epoch. Non-finite history rows are left out of the fit (their points are
    NaN), and so are all rows of a candidate whose current LS is non-finite, so one diverged
    candidate never moves anyone else's coordinates.
    """
    _check_choice("embedding", embedding, EMBEDDINGS)
    _check_choice("fit", fit, FITS)
    ref = np.asarray(reference, dtype=np.float64)
    per_epoch = ref.ndim == 2
    ref = np.atleast_2d(ref)
    if ref.ndim != 2 or ref.shape[1] == 0:
        raise ValueError(f"reference must be [N] or [epochs, N], got shape {np.shape(reference)}")
    if not np.isfinite(ref).all():
        raise ValueError("the reference LS holds NaN or inf; nothing can be ranked against it")
    n_exponents = ref.shape[1]
    rows = {cid: _as_ls(cid, h, n_exponents) for cid, h in histories.items()}
    if per_epoch:
        for cid, h in rows.items():
            if len(h) > len(ref):
                raise ValueError(
                    f"candidate {cid!r} is at epoch {len(h) - 1} but the per-epoch reference "
                    f"only reaches epoch {len(ref) - 1}"
                )
    if embedding == "raw":  # fitted to nothing: the LS vectors themselves
        points = {cid: np.where(np.isfinite(h).all(axis=1, keepdims=True), h, np.nan)
                  for cid, h in rows.items()}
        return LSSpace(embedding, ref.copy(), points)

    def reference_rows(histories):  # the dense rows that enter a fit over these histories
        return ref[: max(len(h) for h in histories)] if per_epoch else ref

    # Rows of a candidate whose current LS is non-finite are all dropped: its history would
    # otherwise still shape the axes everyone else is ranked on.
    keep = {
        cid: np.isfinite(h).all(axis=1) & bool(np.isfinite(h[-1]).all()) for cid, h in rows.items()
    }
    with small_matrix_blas():
        if fit == "candidate":
            fits = {cid: _fit(reference_rows([h]), {cid: h}, {cid: keep[cid]}, embedding, n_components,
                              random_state)
                    for cid, h in rows.items()}
            return LSSpace(embedding, np.full((1, n_components), np.nan),
                           {cid: f[1][cid] for cid, f in fits.items()}, {cid: f[0] for cid, f in fits.items()})
        reference_points, points = _fit(reference_rows(rows.values()) if rows else ref, rows, keep, embedding,
                                        n_components, random_state)
    return LSSpace(embedding, reference_points, points)


def _fit(ref, rows, keep, embedding, n_components, random_state):
    """One embedding fitted on ``[ref; the kept rows of every history in rows]``: the reference's
    points [len(ref), d] and every history's points."""
    stacked = np.concatenate([ref] + [h[keep[cid]] for cid, h in rows.items()])
    if len(stacked) == len(ref):  # no finite candidate: nothing to rank, everyone is at +inf
        coords = np.zeros((len(ref), n_components))
    else:
        est = LSEmbedding(embedding, n_components=n_components, random_state=random_state)
        coords = est.fit_transform(stacked)
    points, start = {}, len(ref)
    for cid, h in rows.items():
        out = np.full((len(h), coords.shape[1]), np.nan)
        n_kept = int(keep[cid].sum())
        out[keep[cid]] = coords[start : start + n_kept]
        start += n_kept
        points[cid] = out
    return coords[: len(ref)].copy(), points


def ls_distances(
    reference,
    histories: Mapping[Hashable, object],
    *,
    embedding: str = "pca",
    distance: str = "l2",
    random_state: int = 0,
    fit: str = "joint",
) -> dict[Hashable, float]:
    """Each candidate's distance between its current embedded LS and the embedded reference.

    ``embedding`` in {"pca", "tsne", "raw"}, ``distance`` in {"l2", "cos"}; see
    :func:`ls_space` for the inputs (the reference's shape chooses the reading). Non-finite current LS: distance +inf.
    """
    _check_choice("distance", distance, DISTANCES)
    space = ls_space(reference, histories, embedding=embedding, random_state=random_state, fit=fit)
    return space.distances(distance)


def rank_candidates(distances: Mapping[Hashable, float]) -> list[Hashable]:
    """Candidate ids nearest first; NaN counts as +inf; ties broken by id (deterministic)."""
    def key(cid):
        d = float(distances[cid])
        return (math.inf if math.isnan(d) else d, cid)

    return sorted(distances, key=key)
