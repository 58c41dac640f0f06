"""Random graphs as hidden-to-hidden masks: the random-structure experiment of Darji,
"Investigating Sparsity in Recurrent Neural Networks" (arXiv 2407.20601). Graphs are drawn
from Erdős–Rényi, Watts–Strogatz and Barabási–Albert generators (:func:`sample_graph_specs`,
:func:`random_graph`), placed on the hidden units (:func:`embed_graph`), and every RNN variant
is trained with each as its only recurrent connections (:func:`random_graph_study`); the
masks' graph properties (:func:`lshkit.graph.graph_properties`) are what the thesis's random
forest predicts accuracy from (:func:`lshkit.graph.predict_from_properties`).
"""
from __future__ import annotations

import time

import networkx as nx
import numpy as np
import pandas as pd

from lshkit.checks import check_choice, check_number, check_positive_int
from lshkit.graph import graph_properties
from lshkit.studies.sequence import VARIANTS, FitConfig, train_with_mask

__all__ = ["GRAPH_KINDS", "random_graph", "sample_graph_specs", "embed_graph", "random_graph_study"]

#: networkx generators; each spec's parameters are drawn by :func:`sample_graph_specs`.
GRAPH_KINDS = ("erdos_renyi", "watts_strogatz", "barabasi_albert")


def random_graph(kind: str, nodes: int, *, p: float | None = None, k: int | None = None, m: int | None = None,
                 seed: int = 0) -> nx.Graph:
    """One networkx random graph: ``erdos_renyi`` G(n, p); ``watts_strogatz`` ring of n
    nodes, each joined to its k nearest, rewired with probability p; ``barabasi_albert``
    preferential attachment, m edges per new node."""
    check_choice("kind", kind, GRAPH_KINDS)
    check_positive_int("nodes", nodes)
    if kind == "erdos_renyi":
        check_number("p", p, low=0, high=1)
        return nx.gnp_random_graph(nodes, p, seed=seed)
    if kind == "watts_strogatz":
        check_number("p", p, low=0, high=1)
        check_positive_int("k", k)
        if k >= nodes:
            raise ValueError(f"k={k} is not valid for watts_strogatz on {nodes} nodes; it must be below nodes")
        return nx.watts_strogatz_graph(nodes, k, p, seed=seed)
    check_positive_int("m", m)
    if m >= nodes:
        raise ValueError(f"m={m} is not valid for barabasi_albert on {nodes} nodes; it must be below nodes")
    return nx.barabasi_albert_graph(nodes, m, seed=seed)


def sample_graph_specs(count: int, node_counts, *, seed: int = 0) -> list[dict]:
    """``count`` graph specs, each kind in turn, nodes drawn from ``node_counts`` and the
    parameters uniformly from: ER p in [0.05, 0.6]; WS k even in [2, min(8, n−1)], p in
    [0, 1]; BA m in [1, min(5, n−1)]. Each spec carries its own graph seed."""
    check_positive_int("count", count)
    node_counts = list(node_counts)
    if not node_counts or any(isinstance(n, bool) or not isinstance(n, int) or n < 3 for n in node_counts):
        raise ValueError(f"node_counts={node_counts!r} is not valid; give integers >= 3")
    rng = np.random.default_rng(seed)
    specs = []
    for i in range(count):
        kind = GRAPH_KINDS[i % len(GRAPH_KINDS)]
        n = int(rng.choice(node_counts))
        spec = {"kind": kind, "graph_nodes": n, "p": float("nan"), "k": 0, "m": 0, "graph_seed": int(rng.integers(2**31))}
        if kind == "erdos_renyi":
            spec["p"] = float(rng.uniform(0.05, 0.6))
        elif kind == "watts_strogatz":
            spec["k"] = int(2 * rng.integers(1, max(1, min(8, n - 1) // 2) + 1))
            spec["p"] = float(rng.uniform(0, 1))
        else:
            spec["m"] = int(rng.integers(1, min(5, n - 1) + 1))
        specs.append(spec)
    return specs


def embed_graph(graph: nx.Graph, hidden: int, *, seed: int = 0) -> np.ndarray:
    """A graph's adjacency placed on ``len(graph)`` of ``hidden`` units chosen at random
    (seeded), as a symmetric bool ``[hidden, hidden]`` hidden-to-hidden connectivity.
    Units outside the graph keep their input and output weights but no recurrent ones. The
    thesis's summary does not give its node-to-unit mapping; this is ours, stated."""
    n = graph.number_of_nodes()
    if n > hidden:
        raise ValueError(f"a graph of {n} nodes does not fit {hidden} hidden units")
    units = np.random.default_rng(seed).choice(hidden, n, replace=False)
    adj = np.zeros((hidden, hidden), dtype=bool)
    a = nx.to_numpy_array(graph, nodelist=sorted(graph.nodes), dtype=bool)
    adj[np.ix_(units, units)] = a
    np.fill_diagonal(adj, False)
    return adj


def random_graph_study(variants, specs, train, test, *, hidden_size: int, fit_cfg: FitConfig, seed: int = 0,
                       max_sources: int = 300) -> pd.DataFrame:
    """The thesis's random-structure experiment (arXiv 2407.20601): every graph spec (see
    :func:`sample_graph_specs`) becomes a hidden-to-hidden mask (:func:`embed_graph`), every
    variant is trained with it from the same seed, and each row holds the spec, the mask's graph
    properties (:func:`lshkit.graph.graph_properties`) and the test metrics."""
    for v in variants:
        check_choice("variant", v, VARIANTS)
    rows = []
    for i, spec in enumerate(specs):
        g = random_graph(spec["kind"], spec["graph_nodes"], p=None if spec["kind"] == "barabasi_albert" else spec["p"],
                         k=spec["k"] or None, m=spec["m"] or None, seed=spec["graph_seed"])
        adjacency = embed_graph(g, hidden_size, seed=spec["graph_seed"])
        props = graph_properties(adjacency, max_sources=max_sources, seed=seed)
        for v in variants:
            t0 = time.perf_counter()
            out = train_with_mask(v, adjacency, train, test, hidden_size=hidden_size, fit_cfg=fit_cfg, seed=seed + i)
            out.pop("mask")
            rows.append({"graph": i, **spec, "variant": v, "seed": seed + i, **props, **out,
                         "seconds": time.perf_counter() - t0})
    return pd.DataFrame(rows)
