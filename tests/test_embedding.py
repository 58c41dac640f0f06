"""The LS space (paper §3.2, Appendix B): every embedding x distance ranks constructed cases."""

import math

import numpy as np
import pytest
import torch
from sklearn.base import clone

from lshkit.embedding import (
    LSEmbedding,
    LSSpace,
    ls_distances,
    ls_space,
    point_distance,
    rank_candidates,
    tsne_perplexity,
)

N = 30


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _plane(seed=0):
    """An orthonormal pair spanning a 2-D plane of the N-D LS space, and a point maker."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(N, 2)))

    def at(degrees, radius):
        t = math.radians(degrees)
        return radius * (math.cos(t) * q[:, 0] + math.sin(t) * q[:, 1])

    return at


def line_case():
    """Candidates on a line away from the reference: current offsets 0.5, 1, 2, 4, 8, first-epoch
    offsets in the reverse order, so comparing the wrong row reverses the ranking."""
    rng = np.random.default_rng(0)
    ref = rng.normal(size=N)
    u = rng.normal(size=N)
    u /= np.linalg.norm(u)
    offsets = [0.5, 1, 2, 4, 8]
    histories = {
        f"c{i}": np.stack([ref + offsets[4 - i] * u, ref + d * u]) + 0.01 * rng.normal(size=(2, N))
        for i, d in enumerate(offsets)
    }
    return ref, histories, ["c0", "c1", "c2", "c3", "c4"]


# (angle in degrees, radius): cosine order a..e, L2 order e..a (far but aligned vs near but turned).
FAN = {"a": (15, 8.0), "b": (50, 4.0), "c": (90, 2.0), "d": (130, 1.2), "e": (170, 0.6)}


def fan_case():
    """Candidates in a plane through the origin; the first row mirrors the current one, which
    keeps the fitted mean near the origin (PCA's origin) and punishes comparing the wrong row."""
    at = _plane()
    ref = at(0, 1.0)
    histories = {k: np.stack([-at(deg, r), at(deg, r)]) for k, (deg, r) in FAN.items()}
    return ref, histories


def ring_case():
    """Tight clusters on a ring around the origin at growing angles from the reference."""
    at = _plane()
    rng = np.random.default_rng(0)
    ref = at(0, 1.0)
    ring = {"a": 25, "b": -60, "c": 100, "d": -140, "e": 175}
    histories = {k: np.stack([at(deg + 4 * (j - 2), 1.0) for j in range(3)])
                 + 0.003 * rng.normal(size=(3, N)) for k, deg in ring.items()}
    return ref, histories, ["a", "b", "c", "d", "e"]


# t-SNE keeps neighbourhoods, not far distances: for it only the nearest three are asserted
# in the L2 cases (the far ones may swap), the full order in the angular one.
CASES = [
    ("pca", "l2", "line", 5), ("raw", "l2", "line", 5), ("tsne", "l2", "line", 3),
    ("pca", "l2", "fan", 5), ("raw", "l2", "fan", 5), ("tsne", "l2", "ring", 3),
    ("pca", "cos", "fan", 5), ("raw", "cos", "fan", 5), ("tsne", "cos", "ring", 5),
]


@pytest.mark.parametrize("embedding,dist,case,n_checked", CASES)
def test_every_embedding_and_distance_ranks_constructed_case(embedding, dist, case, n_checked):
    if case == "line":
        ref, histories, expected = line_case()
    elif case == "ring":
        ref, histories, expected = ring_case()
    else:
        ref, histories = fan_case()
        expected = ["a", "b", "c", "d", "e"] if dist == "cos" else ["e", "d", "c", "b", "a"]
    order = rank_candidates(ls_distances(ref, histories, embedding=embedding, distance=dist))
    assert order[:n_checked] == expected[:n_checked]
    assert sorted(order) == sorted(expected)


def test_pca_distances_equal_direct_svd_projection():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=N)
    histories = {i: rng.normal(size=(i + 1, N)) for i in range(6)}
    space = ls_space(ref, histories, embedding="pca")
    X = np.concatenate([ref[None]] + list(histories.values()))
    mean = X.mean(axis=0)
    _, _, vt = np.linalg.svd(X - mean, full_matrices=False)
    project = lambda v: (v - mean) @ vt[:2].T  # noqa: E731
    r = project(ref)
    for cid, h in histories.items():
        c = project(h[-1])
        # PCA's component signs are arbitrary; distances must not see them.
        assert space.distances("l2")[cid] == pytest.approx(np.linalg.norm(c - r), rel=1e-9)
        cos = 1 - c @ r / (np.linalg.norm(c) * np.linalg.norm(r))
        assert space.distances("cos")[cid] == pytest.approx(cos, rel=1e-9, abs=1e-12)
        assert np.allclose(np.abs(space.points[cid]), np.abs(project(h)))


def test_cosine_is_the_standard_formula_not_the_printed_typo():
    p, q = np.array([3.0, 4.0]), np.array([4.0, 3.0])
    assert point_distance(p, q, "cos") == pytest.approx(1 - 24 / 25)
    assert point_distance(p, 10 * q, "cos") == pytest.approx(1 - 24 / 25)  # scale-free
    assert point_distance(p, -p, "cos") == pytest.approx(2.0)
    assert point_distance(p, q, "l2") == pytest.approx(math.sqrt(2))
    assert point_distance(p, np.zeros(2), "cos") == 1.0


def test_same_epoch_reference_compares_rows_of_the_same_epoch():
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(4, N))  # the dense run's LS after each of 4 epochs
    histories = {"early": rng.normal(size=(2, N)), "late": rng.normal(size=(4, N))}
    d = ls_distances(ref, histories, embedding="raw")  # the authors' code: plain L2 at the same epoch
    assert d["early"] == pytest.approx(np.linalg.norm(histories["early"][1] - ref[1]))
    assert d["late"] == pytest.approx(np.linalg.norm(histories["late"][3] - ref[3]))
    c = ls_distances(ref, histories, embedding="raw", distance="cos")
    h = histories["early"][1]
    assert c["early"] == pytest.approx(1 - h @ ref[1] / (np.linalg.norm(h) * np.linalg.norm(ref[1])))
    with pytest.raises(ValueError, match="at epoch 4 but the per-epoch reference only reaches epoch 3"):
        ls_distances(ref, {"x": rng.normal(size=(5, N))}, embedding="raw")
    with pytest.raises(ValueError, match="embedding 'same_epoch' is now embedding='raw' with reference='same_epoch'"):
        ls_distances(ref, histories, embedding="same_epoch")


def test_same_epoch_pca_fits_the_dense_history_up_to_the_candidates_epoch():
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(4, N))
    history = rng.normal(size=(3, N))  # a candidate at epoch 2
    space = ls_space(ref, {"c": history}, embedding="pca", fit="candidate")
    # The fit is [dense epochs 0..2; candidate epochs 0..2], as if both were candidates.
    alone = LSEmbedding("pca").fit_transform(np.concatenate([ref[:3], history]))
    assert space.references["c"] == pytest.approx(alone[:3])
    assert space.points["c"] == pytest.approx(alone[3:])
    assert space.distances()["c"] == pytest.approx(np.linalg.norm(alone[5] - alone[2]))
    assert space.reference_point("c", 0) == pytest.approx(alone[0])
    # One joint fit holds the dense history up to the latest epoch any candidate reached.
    joint = ls_space(ref, {"c": history, "d": history[:1]}, embedding="pca", fit="joint")
    assert len(joint.reference) == 3
    assert joint.distances()["d"] == pytest.approx(np.linalg.norm(joint.points["d"][0] - joint.reference[0]))


@pytest.mark.parametrize("embedding", ["pca", "raw"])
def test_the_two_readings_can_rank_two_candidates_oppositely(embedding):
    """The dense LS drifts from epoch 1 to its final epoch. Candidate "near_now" follows the dense
    model at epoch 1; "near_final" already sits where the dense model ends (as heavily pruned
    candidates that contract early do): each reading puts a different one first."""
    rng = np.random.default_rng(4)
    start, drift = rng.normal(size=N), rng.normal(size=N)
    dense = np.stack([start, start + drift, start + 2 * drift, start + 6 * drift])  # epochs 0..3
    near_now = np.stack([start + 0.1 * rng.normal(size=N), dense[1] + 0.1 * rng.normal(size=N)])
    near_final = np.stack([start + 0.1 * rng.normal(size=N), dense[3] + 0.3 * rng.normal(size=N)])
    histories = {"near_now": near_now, "near_final": near_final}
    same = ls_distances(dense, histories, embedding=embedding)
    final = ls_distances(dense[-1], histories, embedding=embedding)
    assert rank_candidates(same) == ["near_now", "near_final"]
    assert rank_candidates(final) == ["near_final", "near_now"]


@pytest.mark.parametrize("embedding", ["pca", "raw", "tsne"])
def test_non_finite_candidate_is_last_and_leaves_the_others_unchanged(embedding):
    ref, histories, expected = line_case()
    broken = dict(histories, broken=histories["c0"].copy())
    broken["broken"][-1, 3] = np.nan
    healed = dict(histories, healed=histories["c0"].copy())
    healed["healed"][0, :] = np.inf  # an earlier epoch diverged, the current one is fine
    d_clean = ls_distances(ref, histories, embedding=embedding)
    d_broken = ls_distances(ref, broken, embedding=embedding)
    assert d_broken["broken"] == math.inf
    assert rank_candidates(d_broken) == expected + ["broken"]
    assert {k: d_broken[k] for k in d_clean} == pytest.approx(d_clean)  # its rows left out of the fit
    space = ls_space(ref, healed, embedding=embedding)
    assert np.isnan(space.points["healed"][0]).all()
    assert np.isfinite(space.distances()["healed"])
    alone = ls_space(ref, {"broken": broken["broken"]}, embedding=embedding)  # nothing to fit
    assert alone.distances() == {"broken": math.inf}


def test_bad_inputs_raise_before_compute():
    ref, histories, _ = line_case()
    with pytest.raises(ValueError, match="candidate 'short' has LS vectors of length 29, the reference has 30"):
        ls_distances(ref, dict(histories, short=np.zeros((2, N - 1))))
    with pytest.raises(ValueError, match="unknown embedding 'umap'; valid: 'pca', 'tsne', 'raw'"):
        ls_distances(ref, histories, embedding="umap")
    with pytest.raises(ValueError, match="unknown distance 'l1'; valid: 'l2', 'cos'"):
        ls_distances(ref, histories, distance="l1")
    with pytest.raises(ValueError, match="reference LS holds NaN"):
        ls_distances(np.full(N, np.nan), histories)
    with pytest.raises(ValueError, match="at least one epoch"):
        ls_distances(ref, {"empty": np.zeros((0, N))})
    with pytest.raises(ValueError, match="unknown embedding method 'ica'"):
        LSEmbedding("ica").fit(np.zeros((3, N)))


def test_deterministic_and_coordinates_for_plots():
    ref, histories, _ = line_case()
    for embedding in ("pca", "tsne"):
        a = ls_space(ref, histories, embedding=embedding, random_state=3)
        b = ls_space(ref, histories, embedding=embedding, random_state=3)
        assert isinstance(a, LSSpace) and a.reference.shape == (1, 2)
        for cid in histories:
            assert a.points[cid].shape == (2, 2)
            np.testing.assert_array_equal(a.points[cid], b.points[cid])


def test_sklearn_estimator_contract():
    X = np.random.default_rng(4).normal(size=(7, N))
    est = LSEmbedding("tsne", n_components=3, random_state=5)
    twin = clone(est)
    assert twin.get_params() == {"method": "tsne", "n_components": 3, "random_state": 5}
    Z = est.fit_transform(X)
    assert Z.shape == (7, 3)
    np.testing.assert_array_equal(est.transform(X), Z)  # the fitted points themselves
    with pytest.raises(ValueError, match="t-SNE cannot embed new points"):
        est.transform(X[:3])
    assert not hasattr(clone(est), "embedding_")
    pca = LSEmbedding("pca").fit(X)
    new = np.random.default_rng(5).normal(size=(2, N))
    mean = X.mean(axis=0)
    _, _, vt = np.linalg.svd(X - mean, full_matrices=False)
    np.testing.assert_allclose(np.abs(pca.transform(new)), np.abs((new - mean) @ vt[:2].T), atol=1e-10)
    np.testing.assert_array_equal(LSEmbedding("raw").fit_transform(X), X)
    # fewer points than components: the missing components are zeros
    assert np.all(LSEmbedding("pca", n_components=3).fit_transform(X[:2])[:, 2] == 0)


def test_tsne_perplexity_follows_point_count():
    assert tsne_perplexity(16) == 5.0
    assert tsne_perplexity(401) == 30.0
    assert tsne_perplexity(2) == pytest.approx(1 / 3)
    Z = LSEmbedding("tsne").fit_transform(np.random.default_rng(6).normal(size=(3, N)))
    assert Z.shape == (3, 2) and np.isfinite(Z).all()


def test_rank_candidates_ties_by_id_and_nan_last():
    assert rank_candidates({3: 1.0, 1: 1.0, 2: 0.5, 0: float("nan"), 4: math.inf}) == [2, 1, 3, 0, 4]


def test_candidate_fit_is_one_embedding_per_candidate():
    """Appendix B embeds each candidate's history with the reference on its own: a candidate's
    distance does not depend on who else is in the pool, unlike one joint fit."""
    rng = np.random.default_rng(0)
    ref = rng.normal(size=12)
    a, b = rng.normal(size=(3, 12)), 5 * rng.normal(size=(2, 12))
    alone = ls_distances(ref, {"a": a}, embedding="pca", fit="candidate")["a"]
    both = ls_distances(ref, {"a": a, "b": b}, embedding="pca", fit="candidate")
    assert both["a"] == pytest.approx(alone)
    assert ls_distances(ref, {"a": a, "b": b}, embedding="pca", fit="joint")["a"] != pytest.approx(alone)
    # Two points (the reference and one epoch): a 2-D PCA keeps their distance exactly.
    one = ls_distances(ref, {"c": a[:1]}, embedding="pca", fit="candidate")["c"]
    assert one == pytest.approx(np.linalg.norm(a[0] - ref))
    with pytest.raises(ValueError, match="'joint'"):
        ls_space(ref, {"a": a}, fit="together")


def test_the_ls_space_factorises_on_one_blas_thread(monkeypatch):
    """Its matrices have a few dozen rows: beside a busy neighbour, OpenBLAS's threads made each
    replay about 9x slower (benchmarks/embedding_threads.py), so ls_space runs on one."""
    from threadpoolctl import threadpool_info

    import lshkit.embedding as emb

    seen = []
    real = emb.LSEmbedding.fit_transform

    def spy(self, X, y=None):
        seen.append({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
        return real(self, X, y)

    monkeypatch.setattr(emb.LSEmbedding, "fit_transform", spy)
    rng = np.random.default_rng(0)
    emb.ls_space(rng.normal(size=8), {"a": rng.normal(size=(3, 8)), "b": rng.normal(size=(3, 8))}, fit="candidate")
    assert seen == [{1}, {1}]
