"""Masks as graphs (lshkit.graph): the spectral gap on graphs with known spectra, graph
properties on graphs with known values and against networkx, and the random-forest predictor."""
import math

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import torch

from lshkit.graph import (PROPERTY_FEATURES, gap_score, gap_summary, graph_properties, hidden_adjacency,
                          mask_graph_features, mask_spectral_gaps, predict_from_properties, spectral_gap)


def _random_regular_bipartite(n, d, seed):
    """Union of d random perfect matchings, each redrawn until it avoids the earlier ones:
    every left and right unit has degree exactly d."""
    rng = np.random.default_rng(seed)
    m = np.zeros((n, n), dtype=bool)
    for _ in range(d):
        while True:
            perm = rng.permutation(n)
            if not m[np.arange(n), perm].any():
                m[np.arange(n), perm] = True
                break
    return m


@pytest.mark.parametrize("rows, cols", [(3, 5), (8, 8), (24, 6)])
def test_complete_bipartite(rows, cols):
    g = spectral_gap(np.ones((rows, cols)))
    # K_{m,n}: spectrum ±√(mn) and zeros; degrees n (output side) and m (input side)
    assert g["sigma1"] == pytest.approx(math.sqrt(rows * cols)) and g["sigma2"] == pytest.approx(0, abs=1e-9)
    assert g["d_left"] == cols and g["d_right"] == rows
    assert g["gap"] == pytest.approx(math.sqrt(cols - 1) + math.sqrt(rows - 1)) and g["ramanujan"]


def test_disjoint_union_repeats_the_trivial_eigenvalue():
    block = np.ones((3, 3))
    union = np.block([[block, np.zeros((3, 3))], [np.zeros((3, 3)), block]])
    g = spectral_gap(union)
    assert g["sigma1"] == pytest.approx(3) and g["sigma2"] == pytest.approx(3)
    assert g["gap"] == pytest.approx(2 * math.sqrt(2) - 3) and not g["ramanujan"]  # not an expander
    unequal = spectral_gap(np.block([[np.ones((4, 4)), np.zeros((4, 2))], [np.zeros((2, 4)), np.ones((2, 2))]]))
    assert unequal["sigma1"] == pytest.approx(4) and unequal["sigma2"] == pytest.approx(2)


@pytest.mark.parametrize("n, d", [(12, 3), (20, 5), (31, 4)])
def test_circulant_band_exact_spectrum(n, d):
    m = np.zeros((n, n), dtype=bool)
    for k in range(d):
        m[np.arange(n), (np.arange(n) + k) % n] = True
    j = np.arange(1, n)
    exact = np.abs(np.sin(np.pi * j * d / n) / np.sin(np.pi * j / n))  # |Σ_k ω^{jk}|, j ≠ 0
    g = spectral_gap(m)
    assert g["sigma1"] == pytest.approx(d) and g["sigma2"] == pytest.approx(exact.max())
    assert g["gap"] == pytest.approx(2 * math.sqrt(d - 1) - exact.max())


@pytest.mark.parametrize("d, seed", [(3, 0), (4, 1)])
def test_random_regular_bipartite_is_nearly_ramanujan(d, seed):
    m = _random_regular_bipartite(400, d, seed)
    assert (m.sum(0) == d).all() and (m.sum(1) == d).all()
    g = spectral_gap(m)
    assert g["sigma1"] == pytest.approx(d) and g["bound"] == pytest.approx(2 * math.sqrt(d - 1))
    # random biregular bipartite graphs have σ2 → √(d_L−1)+√(d_R−1) (Brito, Dumitriu & Harris
    # 2022): near-Ramanujan, far from the disconnected σ2 = d
    assert abs(g["gap"]) < 0.1 and g["sigma2"] < d - 0.1


def test_weights_tensors_and_empty_layers():
    rng = np.random.default_rng(0)
    mask = rng.random((12, 5)) < 0.5
    weights = torch.from_numpy(np.where(mask, rng.normal(size=mask.shape), 0.0))
    assert spectral_gap(weights) == spectral_gap(mask)
    empty = spectral_gap(np.zeros((4, 4)))
    assert math.isnan(empty["gap"]) and not empty["ramanujan"]
    with pytest.raises(ValueError, match="2-D matrix"):
        spectral_gap(np.ones(4))


def test_masks_of_an_lshkit_model():
    from lshkit.dst import DynamicSparsity, SparseConfig
    from lshkit.models import StackedLSTM

    torch.manual_seed(0)
    model = StackedLSTM(30, 16, 16, 2)
    ds = DynamicSparsity(model, SparseConfig(density=0.3), total_updates=1)
    gaps = mask_spectral_gaps(ds)
    assert set(gaps.layer) == {n for n, m in ds.masks.items() if m.dim() == 2}
    for row in gaps.itertuples():
        assert row.edges == int(ds.masks[row.layer].sum())
    summary = gap_summary(ds.masks)
    assert summary["gap_min"] == pytest.approx(gaps.gap.min()) and summary["gap_min"] <= summary["gap_mean"]
    features = mask_graph_features(ds)
    assert features["rnn.weight_hh_l0.units"] == 16 and 0 < features["density"] < 1
    with pytest.raises(ValueError, match="non-empty dict"):
        mask_spectral_gaps({})


def test_hidden_adjacency_merges_gates_and_directions():
    m = np.zeros((12, 3), dtype=bool)  # an LSTM's [4H, H] with H = 3
    m[0 * 3 + 1, 0] = True   # gate i of unit 1 reads unit 0
    m[3 * 3 + 2, 1] = True   # gate o of unit 2 reads unit 1
    m[1 * 3 + 2, 2] = True   # a self-loop: dropped
    a = hidden_adjacency(m)
    assert (a == a.T).all() and not a.diagonal().any()
    assert a[0, 1] and a[1, 2] and not a[0, 2]
    props = graph_properties(m)
    assert props["self_loops"] == 1 and props["edges"] == 2 and props["nodes"] == 3
    with pytest.raises(ValueError, match="g·H rows"):
        hidden_adjacency(np.ones((5, 3)))


def test_graph_properties_known_graphs():
    k = graph_properties(nx.to_numpy_array(nx.complete_graph(6)))
    assert (k["nodes"], k["edges"], k["density"], k["avg_clustering"], k["transitivity"]) == (6, 15, 1.0, 1.0, 1.0)
    assert (k["avg_path_length"], k["diameter"], k["global_efficiency"], k["max_betweenness"]) == (1.0, 1.0, 1.0, 0.0)
    assert k["spectral_radius"] == pytest.approx(5)
    star = graph_properties(nx.to_numpy_array(nx.star_graph(5)))
    assert star["max_betweenness"] == pytest.approx(1.0) and star["avg_clustering"] == 0
    assert star["diameter"] == 2 and star["assortativity"] == pytest.approx(-1.0)
    path = graph_properties(nx.to_numpy_array(nx.path_graph(7)))
    assert path["avg_path_length"] == pytest.approx(8 / 3) and path["diameter"] == 6  # (n+1)/3
    two = graph_properties(nx.to_numpy_array(nx.disjoint_union(nx.complete_graph(3), nx.complete_graph(3))))
    assert two["components"] == 2 and two["largest_component"] == 0.5 and two["global_efficiency"] == pytest.approx(0.4)
    assert graph_properties(np.zeros((5, 5)))["nodes"] == 0


def test_graph_properties_agree_with_networkx():
    g = nx.gnp_random_graph(40, 0.12, seed=3)
    g.remove_nodes_from(list(nx.isolates(g)))
    p = graph_properties(nx.to_numpy_array(g))
    big = g.subgraph(max(nx.connected_components(g), key=len))
    assert p["nodes"] == g.number_of_nodes() and p["edges"] == g.number_of_edges()
    assert p["avg_clustering"] == pytest.approx(nx.average_clustering(g))
    assert p["transitivity"] == pytest.approx(nx.transitivity(g))
    assert p["avg_path_length"] == pytest.approx(nx.average_shortest_path_length(big))
    assert p["global_efficiency"] == pytest.approx(nx.global_efficiency(g))
    assert p["mean_closeness"] == pytest.approx(np.mean(list(nx.closeness_centrality(g).values())))
    exact = np.array(list(nx.betweenness_centrality(g).values()))
    assert p["mean_betweenness"] == pytest.approx(exact.mean()) and p["max_betweenness"] == pytest.approx(exact.max())
    assert p["assortativity"] == pytest.approx(nx.degree_assortativity_coefficient(g))
    # on a larger graph, sampled sources estimate betweenness (Brandes & Pich) near the exact value
    big = nx.gnp_random_graph(400, 0.03, seed=1)
    sampled = graph_properties(nx.to_numpy_array(big), max_sources=100)
    assert sampled["mean_betweenness"] == pytest.approx(np.mean(list(nx.betweenness_centrality(big).values())), rel=0.1)
    assert set(PROPERTY_FEATURES) <= set(p)


def test_forest_finds_the_informative_property_and_not_noise():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.random((120, 4)), columns=["nodes", "edges", "density", "mean_degree"])
    frame["accuracy"] = np.sin(3 * frame.nodes) + 0.05 * rng.normal(size=120)
    frame["noise"] = rng.random(120)
    features = ["nodes", "edges", "density", "mean_degree"]
    fitted, importances = predict_from_properties(frame, "accuracy", features, trees=60, boot=300)
    assert fitted["r2"] > 0.85 and fitted["r2_low"] <= fitted["r2"] <= fitted["r2_high"]
    assert importances.feature.iloc[0] == "nodes" and importances.importance.sum() == pytest.approx(1)
    noise, _ = predict_from_properties(frame, "noise", features, trees=60, boot=300)
    assert noise["r2"] < 0.1
    with pytest.raises(ValueError, match=r"columns \['betweenness'\] are not in the frame"):
        predict_from_properties(frame, "accuracy", ["betweenness"])
    with pytest.raises(ValueError, match="too few"):
        predict_from_properties(frame.head(6), "accuracy", features)


def test_gap_score_keeps_the_larger_gap_and_removes_a_layer_without_edges_first():
    scores = [gap_score(g) for g in (3.0, -1.0, float("nan"))]
    assert scores == [-3.0, 1.0, float("inf")]
    assert sorted(range(3), key=scores.__getitem__) == [0, 1, 2]  # kept first: the largest gap
