"""Random graphs as hidden-to-hidden masks (lshkit.studies.random_graphs, arXiv 2407.20601's
random-structure experiment): every kind drawn, placed on the hidden units, and trained with."""
import networkx as nx
import numpy as np
import pandas as pd
import pytest

from lshkit.graph import PROPERTY_FEATURES, graph_properties
from lshkit.studies.random_graphs import GRAPH_KINDS, embed_graph, random_graph, random_graph_study, sample_graph_specs
from lshkit.studies.reber import make_reber
from lshkit.studies.sequence import FitConfig


@pytest.mark.parametrize("kind", GRAPH_KINDS)
def test_random_graph_masks(kind):
    spec = [s for s in sample_graph_specs(9, [6, 10], seed=1) if s["kind"] == kind][0]
    g = random_graph(kind, spec["graph_nodes"], p=spec["p"], k=spec["k"] or None, m=spec["m"] or None,
                     seed=spec["graph_seed"])
    adj = embed_graph(g, 16, seed=2)
    assert (adj == adj.T).all() and adj.sum() == 2 * g.number_of_edges() and not adj.diagonal().any()
    props = graph_properties(adj)
    assert props["units"] == 16 and props["nodes"] == g.number_of_nodes() - nx.number_of_isolates(g)
    assert np.array_equal(embed_graph(g, 16, seed=2), adj)


def test_random_graph_bad_arguments():
    with pytest.raises(ValueError, match=r"kind='lattice' is not valid; choose one of \['erdos_renyi'"):
        random_graph("lattice", 5, p=0.1)
    with pytest.raises(ValueError, match="k=6 is not valid for watts_strogatz on 6 nodes"):
        random_graph("watts_strogatz", 6, k=6, p=0.1)
    with pytest.raises(ValueError, match=r"p=1.5 is not valid"):
        random_graph("erdos_renyi", 6, p=1.5)
    with pytest.raises(ValueError, match="does not fit"):
        embed_graph(nx.path_graph(5), 4)


def test_specs_take_every_kind_in_turn_within_their_ranges():
    specs = sample_graph_specs(30, [4, 8, 12], seed=3)
    assert [s["kind"] for s in specs[:3]] == list(GRAPH_KINDS)
    for s in specs:
        assert s["graph_nodes"] in (4, 8, 12)
        if s["kind"] == "erdos_renyi":
            assert 0.05 <= s["p"] <= 0.6
        elif s["kind"] == "watts_strogatz":
            assert s["k"] % 2 == 0 and 2 <= s["k"] <= min(8, s["graph_nodes"] - 1) and 0 <= s["p"] <= 1
        else:
            assert 1 <= s["m"] <= min(5, s["graph_nodes"] - 1)
    pd.testing.assert_frame_equal(pd.DataFrame(sample_graph_specs(30, [4, 8, 12], seed=3)), pd.DataFrame(specs))
    with pytest.raises(ValueError, match="node_counts=\\[2\\] is not valid; give integers >= 3"):
        sample_graph_specs(3, [2])


def test_every_variant_trains_with_every_graph():
    train, test = make_reber(30, seed=0), make_reber(20, seed=1)
    specs = sample_graph_specs(3, [4, 6], seed=0)
    frame = random_graph_study(["rnn_tanh", "gru"], specs, train, test, hidden_size=6, fit_cfg=FitConfig(epochs=1),
                               seed=5)
    assert len(frame) == 3 * 2 and list(frame.variant) == ["rnn_tanh", "gru"] * 3
    # each graph's networks share the graph's seed; its properties are those of its mask
    assert list(frame.seed) == [5, 5, 6, 6, 7, 7] and set(PROPERTY_FEATURES) <= set(frame.columns)
    assert frame.groupby("graph").edges.nunique().eq(1).all()
    assert frame.accuracy.between(0, 1).all()
    with pytest.raises(ValueError, match="variant='elman' is not valid"):
        random_graph_study(["elman"], specs, train, test, hidden_size=6, fit_cfg=FitConfig(epochs=1))
