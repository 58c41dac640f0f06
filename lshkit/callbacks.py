"""Measurements taken during training, as :class:`~lshkit.train.Trainer` callbacks
``cb(trainer, record)`` that add to each epoch's record: the LS of the weights the epoch was
evaluated with (:class:`LSCallback`, paper Eq. 1, on the inputs of :func:`ls_tokens`) and the
masks' spectral gap and graph properties (:class:`GraphCallback`). A search's runner, the
atlas build and Fig. 1's tracking all take them this way.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from lshkit.checks import check_choice, check_positive_int
from lshkit.data import batchify
from lshkit.graph import gap_summary, mask_graph_features
from lshkit.ls import CONVENTIONS, model_spectrum

__all__ = ["ls_tokens", "timed_spectrum", "check_spectrum", "LSCallback", "GraphCallback", "SPECTRUM_OPTIONS"]

#: Options of :func:`lshkit.ls.model_spectrum` that may be passed through.
SPECTRUM_OPTIONS = ("warmup", "k", "dtype", "stable_warmup")


def ls_tokens(corpus, samples: int = 2, steps: int = 35) -> torch.Tensor:
    """The LS inputs ``[steps, samples]``, as the authors: the validation stream batchified
    into ``samples`` columns (the LS batch size, Table A1), its first ``steps`` rows.

    Sample k starts at token ``k * (len(valid) // samples)``, so the K = 2 samples are
    samples 0 and 5 of the K = 10 ones whenever ``len(valid) % 10 < 2`` (PTB: 73,760 tokens).
    """
    check_positive_int("samples", samples)
    check_positive_int("steps", steps)
    rows = len(corpus.valid) // samples
    if steps > rows:
        raise ValueError(f"steps={steps} is not valid: the validation split of {corpus.name!r} "
                         f"batchified into {samples} samples has only {rows} steps")
    return batchify(corpus.valid, samples)[:steps]


def check_spectrum(convention: str, options: dict) -> None:
    """Refuse an LS convention or a :func:`~lshkit.ls.model_spectrum` option that is not one of ours."""
    check_choice("convention", convention, CONVENTIONS)
    for key in options:
        check_choice("model_spectrum option", key, SPECTRUM_OPTIONS)


def timed_spectrum(model, tokens, convention: str, **options) -> tuple[np.ndarray, float, float, dict]:
    """The LS of ``model`` on ``tokens`` (:func:`~lshkit.ls.model_spectrum`, float64 on the host),
    its wall and CPU seconds, and its info. Timed up to the host copy, so that an asynchronous
    device is timed to completion."""
    start, cpu = time.perf_counter(), time.process_time()
    lam, info = model_spectrum(model, tokens, convention=convention, return_info=True, **options)
    lam = lam.double().cpu().numpy()
    return lam, time.perf_counter() - start, time.process_time() - cpu, info


@dataclass
class LSCallback:
    """Trainer callback ``cb(trainer, record)`` adding the model's LS (paper Eq. 1) on
    ``tokens`` ``[T, K]`` to the epoch record: ``ls`` (list), ``ls_seconds`` and ``ls_info``
    (convention, log base, warm-up and its mode, dtype, K, T, n: the README asks that a
    result says which warm-up it used) and ``ls_settings`` (:attr:`settings`, so that a
    resumed run can tell LS computed otherwise). ``options`` go to
    :func:`~lshkit.ls.model_spectrum`."""

    tokens: torch.Tensor
    convention: str = "paper"
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        check_spectrum(self.convention, self.options)

    @property
    def settings(self) -> dict:
        steps, samples = self.tokens.shape
        return {"convention": self.convention, "samples": samples, "steps": steps,
                **{k: str(v) for k, v in sorted(self.options.items())}}

    def __call__(self, trainer, record: dict) -> None:
        # The spectrum of the weights the epoch was evaluated with (SNT-ASGD's averages once on).
        with trainer.optimizer.averaged():
            lam, seconds, _, info = timed_spectrum(trainer.model, self.tokens, self.convention, **self.options)
        record["ls"] = lam.tolist()
        record["ls_settings"] = self.settings
        record["ls_seconds"] = seconds
        record["ls_info"] = {k: info[k] for k in ("convention", "log_base", "warmup", "warmup_mode",
                                                  "dtype", "K", "T", "n")}


@dataclass
class GraphCallback:
    """Trainer callback ``cb(trainer, record)`` adding the masks' spectral-gap summary
    (:func:`lshkit.graph.gap_summary`: ``gap_min``, ``gap_mean``, ``ramanujan_layers``,
    ``layers``) to the epoch record, with ``properties`` also every hidden-to-hidden graph
    property (:func:`lshkit.graph.mask_graph_features`), and the process CPU seconds it took as
    ``gap_seconds``. The masks are those the epoch was trained and evaluated with, before its
    prune/regrow. A dense model has no masks to read: an error."""

    properties: bool = False

    def __call__(self, trainer, record: dict) -> None:
        if trainer.sparsity is None:
            raise ValueError("GraphCallback needs a sparse model; this trainer trains a dense one")
        start = time.process_time()
        masks = trainer.sparsity.masks
        record.update(mask_graph_features(masks) if self.properties else gap_summary(masks))
        record["gap_seconds"] = time.process_time() - start
