"""Hyperopt's adaptive TPE (ATPE, Table 2), driven through its public classes."""
from __future__ import annotations

import copy
import datetime
import itertools
import json
import math
import random
from collections.abc import Mapping

import numpy as np
from threadpoolctl import threadpool_limits

from lshkit.search.samplers.base import Observation, Sampler, derive_seed
from lshkit.search.space import Categorical, Int, SearchSpace

__all__ = ["ATPESampler"]


class ATPESampler(Sampler):
    """Hyperopt's adaptive TPE driven through its public classes, as ``hyperopt.atpe.suggest``
    drives them: hyperopt has no ask-and-tell, so each ``propose`` rebuilds a ``Trials`` object
    from the history, converts it to ATPE's results and asks an ``ATPEOptimizer`` for new points.
    Driving it directly (rather than through ``suggest``) lets one process share the optimiser's
    fitted models between calls without patching hyperopt.

    Encoding: Categorical -> ``hp.choice`` over choice indices; stepped Float and Int ->
    ``hp.quniform`` over the step index ``k`` in [-0.5, n_steps + 0.5] (rounded, clipped, so
    every grid value has equal prior mass and the order is kept); Float -> ``hp.uniform`` or
    ``hp.loguniform``.

    Losses: survivors keep their score. ATPE knows no pruned state, so removed candidates keep
    their scores shifted up by one common amount, just enough that the best removed one lies
    above the worst survivor (as Optuna's TPE ranks PRUNED after COMPLETE trials), keeping their
    order and spacing. Non-finite scores (diverged candidates) get the worst finite loss plus
    a gap. ATPE draws from Python's ``random`` and NumPy's global RNG, ignoring its ``seed``
    argument, so both are seeded around each call and restored after.

    Speed (benchmarks/replay_speed.py), with the same proposals: each call runs on one thread
    (LightGBM's OpenMP and BLAS threads otherwise wait for each other on a shared machine: its
    single-row predictions took 7 ms instead of 0.6 ms beside one busy process), and the
    optimiser's 13 LightGBM models are read from disk once per process rather than per call, and
    the statistics of one history are computed once per ``propose`` rather than per draw
    (:func:`_atpe_optimizer`).
    """

    name = "atpe"

    def __init__(self, space: SearchSpace, seed: int = 0):
        super().__init__(space, seed)
        try:
            import hyperopt  # noqa: F401
            import lightgbm  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                f"sampler 'atpe' needs hyperopt and lightgbm ({exc}): pip install hyperopt lightgbm"
            ) from exc

    def _hp_space(self) -> dict:
        from hyperopt import hp

        out = {}
        for name, dim in self.space.items():
            if isinstance(dim, Categorical):
                out[name] = hp.choice(name, list(range(len(dim.choices))))
            elif isinstance(dim, Int) or dim.step is not None:
                out[name] = hp.quniform(name, -0.5, dim.n_steps + 0.5, 1)
            elif dim.log:
                out[name] = hp.loguniform(name, math.log(dim.low), math.log(dim.high))
            else:
                out[name] = hp.uniform(name, dim.low, dim.high)
        return out

    def _encode(self, params: Mapping) -> dict:
        out = {}
        for name, dim in self.space.items():
            value = params[name]
            if isinstance(dim, Categorical):
                out[name] = dim.choices.index(value)
            elif isinstance(dim, Int) or dim.step is not None:
                out[name] = float(round((value - dim.low) / dim.step))
            else:
                out[name] = float(value)
        return out

    def _decode(self, vals: Mapping) -> dict:
        out = {}
        for name, dim in self.space.items():
            value = vals[name][0]
            if isinstance(dim, Categorical):
                out[name] = dim.choices[int(value)]
            elif isinstance(dim, Int) or dim.step is not None:
                k = min(max(int(round(value)), 0), dim.n_steps)
                out[name] = dim.snap(dim.low + k * dim.step)
            else:
                out[name] = dim.snap(float(value))
        return out

    @staticmethod
    def _losses(history: list[Observation]) -> list[float]:
        scores = np.array([float(o.score) for o in history])
        finite = np.isfinite(scores)
        survived = np.array([o.survived for o in history], dtype=bool)
        spread = float(np.ptp(scores[finite])) if finite.any() else 0.0
        gap = 1e-3 * spread if spread > 0 else 1e-3
        losses = scores.copy()
        removed = finite & ~survived
        if (finite & survived).any() and removed.any():
            worst_survivor = scores[finite & survived].max()
            losses[removed] += max(0.0, worst_survivor + gap - scores[removed].min())
        worst = losses[finite].max() if finite.any() else 0.0
        losses[~finite] = worst + gap
        # ATPE was tuned on positive losses; hyperopt.atpe.suggest shifts them so, and so do we
        # (a gap ranking's scores are negative).
        if len(losses) and losses.min() < 0:
            losses = losses - losses.min() + 0.1
        return losses.tolist()

    def _trials(self, history: list[Observation], domain):
        from hyperopt import JOB_STATE_DONE, STATUS_OK, Trials

        trials = Trials()
        stamp = datetime.datetime(2000, 1, 1)
        docs = []
        for tid, (obs, loss) in enumerate(zip(history, self._losses(history))):
            vals = {k: [v] for k, v in self._encode(obs.params).items()}
            misc = dict(tid=tid, cmd=domain.cmd, workdir=domain.workdir,
                        idxs={k: [tid] for k in vals}, vals=vals)
            (doc,) = trials.new_trial_docs([tid], [None], [{"status": STATUS_OK, "loss": loss}], [misc])
            # ATPE reads each trial's duration from these two stamps.
            doc.update(state=JOB_STATE_DONE, book_time=stamp, refresh_time=stamp)
            docs.append(doc)
        trials.insert_trial_docs(docs)
        trials.refresh()
        return trials

    def _draws(self, n, history, seed):
        from hyperopt import Domain
        from hyperopt.atpe import Hyperparameter

        domain = Domain(lambda params: 0.0, self._hp_space())
        trials = self._trials(history, domain)
        config = Hyperparameter.createHyperparameterConfigForHyperoptDomain(domain)
        flatten = Hyperparameter(config).convertToFlatValues
        new_optimizer = _atpe_optimizer()
        for batch in itertools.count():
            # One optimiser per batch of n, as hyperopt.atpe.suggest builds one per call.
            optimizer = new_optimizer()
            results = optimizer.convertTrialsToResults(config, trials)
            py_state, np_state = random.getstate(), np.random.get_state()
            try:
                batch_seed = derive_seed(seed, batch)
                random.seed(batch_seed)
                np.random.seed(batch_seed)
                with threadpool_limits(limits=1):
                    flat = [flatten(optimizer.recommendNextParameters(config, results, currentTrials=[]))
                            for _ in range(n)]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)
            for values in flat:
                yield self._decode({k: [v] for k, v in values.items()})


_ATPE_MODELS = []


class _MemoScaler:
    """One of ATPE's fitted one-feature scalers, remembering what it transformed: the same
    statistic is scaled again at every recommendation from the same history."""

    def __init__(self, scaler):
        self.scaler, self.memo = scaler, {}

    def transform(self, x):
        key = tuple(map(tuple, x))
        if key not in self.memo:
            self.memo[key] = self.scaler.transform(x)
        return self.memo[key]


def _atpe_optimizer():
    """A factory of new ``hyperopt.atpe.ATPEOptimizer``, one per batch of draws,
    whose LightGBM models and scalers (read-only) are those of the first one this process built:
    each is a shallow copy with the three attributes an optimiser changes set as its constructor
    sets them. The statistics of the history (``computeAllResultStatistics``, deterministic and
    the same for every draw of one ``propose``) are computed once per factory and handed out
    as copies, because the optimiser adds keys to them; so are their scaled values."""
    from hyperopt.atpe import ATPEOptimizer

    if not _ATPE_MODELS:
        _ATPE_MODELS.append(ATPEOptimizer())
    # Both caches live as long as the factory (one propose): the same history, the same statistics.
    statistics = {}
    scalers = {k: _MemoScaler(v) for k, v in _ATPE_MODELS[0].featureScalingModels.items()}

    def all_result_statistics(space, results):
        key = json.dumps([space, results], sort_keys=True, default=repr)
        if key not in statistics:
            statistics[key] = _ATPE_MODELS[0].computeAllResultStatistics(space, results)
        return copy.deepcopy(statistics[key])

    def new():
        optimizer = copy.copy(_ATPE_MODELS[0])
        optimizer.lastATPEParameters, optimizer.lastLockedParameters, optimizer.atpeParamDetails = None, [], None
        optimizer.computeAllResultStatistics = all_result_statistics
        optimizer.featureScalingModels = scalers
        return optimizer

    return new
