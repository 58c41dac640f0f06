"""One module per paper result, each owning its choice between the atlas and real training and its
verdict: :mod:`~lshkit.experiments.fig1`, :mod:`~lshkit.experiments.table1`,
:mod:`~lshkit.experiments.table2`, :mod:`~lshkit.experiments.table3`,
:mod:`~lshkit.experiments.table4`, :mod:`~lshkit.experiments.tableB2`,
:mod:`~lshkit.experiments.fig3`, :mod:`~lshkit.experiments.predictive_power` (the claim Table 2
rests on) and :mod:`~lshkit.experiments.shootout` (the predictors of three papers side by side).
What several share: :mod:`~lshkit.experiments.readings` (the two readings of the LS reference and
the arms of a comparison) and :mod:`~lshkit.experiments.fixed` (the dense model and the
Selfish-RNN default, trained once).
"""
