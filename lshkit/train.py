"""Training and evaluation of the kit's language models, dense or dynamically sparse.

The loop follows the authors' stacked-LSTM training (PyTorch word_language_model /
awd-lstm-lm lineage): fixed-length BPTT windows over a batchified stream, the
hidden state carried across windows and detached, gradient-norm clipping, then
SNT-ASGD (Selfish-RNN, Liu et al. ICML 2021) with evaluation on the averaged weights once averaging
has started. With a :class:`~lshkit.dst.SparseConfig` the masks are re-applied
after every optimiser step and the topology is updated once per epoch (or every
N steps), the death rate following the schedule over ``TrainConfig.epochs``.

Unlike the authors' code, everything is seeded *before* the model and its masks
are built (the authors' released code seeds after), and a run can be checkpointed after any epoch and
resumed so that the resumed run equals the uninterrupted one bit for bit on CPU.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from lshkit import models
from lshkit.checks import check_choice, check_int, check_number, check_positive_int
from lshkit.data import batchify, get_batch, n_batches
from lshkit.dst import DynamicSparsity, SNTASGD, SparseConfig
from lshkit.env import auto_progress, small_model_threads
from lshkit.presets import PRESETS
from lshkit.vocab import DATASETS, MODELS, SCALES
from lshkit.io import JSONConfig, atomic_torch_save

__all__ = ["TrainConfig", "Trainer", "TrainingDiverged", "build_model", "train_step", "perplexity",
           "seed_everything", "MODELS", "MOS_FIELDS", "DATASETS", "SCALES"]

#: TrainConfig fields of AWD-LSTM-MoS alone, with the values every other model has.
MOS_FIELDS = {"last_hidden_size": None, "experts": None, "weight_drop": 0.0, "latent_dropout": 0.0}
SPLITS = ("train", "valid", "test")
CHECKPOINT_FORMAT = 1


@dataclass
class TrainConfig(JSONConfig):
    """Everything that defines a training run but the sparsity (:class:`~lshkit.dst.SparseConfig`);
    names follow Table A1, defaults are the stacked LSTM's ``smoke`` preset. The AWD-LSTM-MoS
    fields are left out of every other model's dict (:meth:`to_dict`), so their JSON and the cache
    keys hashed from it did not change when those fields came."""

    model: str = "lstm"                  # lstm, rhn, gru, rnn, awd_mos
    dataset: str = "smoke"               # ptb, wikitext2, smoke
    emb_size: int = 128
    hidden_size: int = 64
    num_layers: int = 2                  # LSTM/GRU/RNN/MoS layers (the RHN has one, of depth `depth`)
    depth: int = 1                       # RHN recurrence depth
    dropouts: tuple[float, float, float, float] = (0.0, 0.1, 0.1, 0.1)  # word, embedding, hidden, output
    tied: bool = False                   # decoder weights tied to the embedding
    coupled: bool = False                # RHN carry gate = 1 - transform gate
    lr: float = 10.0
    weight_decay: float = 1.2e-6
    nonmono: int = 5                     # SNT-ASGD's non-monotone interval
    batch_size: int = 10
    eval_batch_size: int = 10            # validation and test batch
    bptt: int = 35
    epochs: int = 6
    clip: float = 0.25                   # gradient-norm clip
    seed: int = 0
    epoch_tokens: int | None = None      # training tokens per epoch, read on through the stream (None: one pass)
    valid_tokens: int | None = None      # validate on the first N validation tokens (None: all)
    last_hidden_size: int | None = None  # awd_mos: its last layer (None: hidden_size)
    experts: int | None = None           # awd_mos: K softmaxes (required)
    weight_drop: float = 0.0             # awd_mos: DropConnect on W_hh
    latent_dropout: float = 0.0          # awd_mos: on the experts' latent vectors

    def __post_init__(self):
        if isinstance(self.dropouts, list):
            self.dropouts = tuple(self.dropouts)
        check_choice("TrainConfig.model", self.model, MODELS)
        check_choice("TrainConfig.dataset", self.dataset, DATASETS)
        for field in ("emb_size", "hidden_size", "num_layers", "depth", "nonmono",
                      "batch_size", "eval_batch_size", "bptt", "epochs"):
            check_positive_int(f"TrainConfig.{field}", getattr(self, field))
        for field in ("epoch_tokens", "valid_tokens"):
            if getattr(self, field) is not None:
                check_positive_int(f"TrainConfig.{field}", getattr(self, field))
        if (not isinstance(self.dropouts, tuple) or len(self.dropouts) != 4
                or not all(isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p < 1
                           for p in self.dropouts)):
            raise ValueError("TrainConfig.dropouts must be four probabilities in [0, 1) "
                             f"(word, embedding, hidden, output); got {self.dropouts!r}")
        self.dropouts = tuple(float(p) for p in self.dropouts)
        for field in ("tied", "coupled"):
            if not isinstance(getattr(self, field), bool):
                raise ValueError(f"TrainConfig.{field} must be True or False; got {getattr(self, field)!r}")
        check_number("TrainConfig.lr", self.lr, low=0, low_open=True)
        check_number("TrainConfig.weight_decay", self.weight_decay, low=0)
        check_number("TrainConfig.clip", self.clip, low=0, low_open=True)
        check_int("TrainConfig.seed", self.seed)
        if self.model == "rhn":
            if self.num_layers != 1:
                raise ValueError("TrainConfig.num_layers must be 1 for model 'rhn' (its recurrence "
                                 f"depth is TrainConfig.depth); got {self.num_layers!r}")
        else:
            if self.coupled:
                raise ValueError(f"TrainConfig.coupled applies only to model 'rhn'; got coupled=True "
                                 f"with model {self.model!r}")
            if self.depth != 1:
                raise ValueError(f"TrainConfig.depth applies only to model 'rhn' (use num_layers); "
                                 f"got depth={self.depth!r} with model {self.model!r}")
        if self.model == "awd_mos":
            check_positive_int("TrainConfig.experts", self.experts)
            if self.last_hidden_size is not None:
                check_positive_int("TrainConfig.last_hidden_size", self.last_hidden_size)
            for field in ("weight_drop", "latent_dropout"):
                check_number(f"TrainConfig.{field}", getattr(self, field), low=0, high=1, high_open=True)
        else:
            for field, default in MOS_FIELDS.items():
                if getattr(self, field) != default:
                    raise ValueError(f"TrainConfig.{field} applies only to model 'awd_mos'; got "
                                     f"{field}={getattr(self, field)!r} with model {self.model!r}")
        # AWD-LSTM-MoS's decoder reads its experts' latent vectors (emb_size each), not the last h.
        if self.tied and self.model != "awd_mos" and self.emb_size != self.hidden_size:
            raise ValueError(f"TrainConfig.tied needs emb_size == hidden_size; got "
                             f"{self.emb_size} and {self.hidden_size}")

    def to_dict(self) -> dict:
        d = super().to_dict()
        if self.model != "awd_mos":
            for field in MOS_FIELDS:
                del d[field]
        return d

    def replace(self, **changes) -> "TrainConfig":
        """A copy with some fields changed (validated like any new config)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def preset(cls, scale: str, model: str = "lstm") -> "TrainConfig":
        """The kit's presets.

        ``paper`` is Table A1 (PTB): the stacked LSTM 2×1500 (emb 1500, lr 40,
        bptt 35, batch 20, 100 epochs, clip 0.25) and the RHN 830, depth 10
        (lr 15, 500 epochs, tied, coupled, dropouts (0.2, 0.65, 0.25, 0.62)).
        Table A1 lists the stacked LSTM's dropout as (0, 0, 0.65, 0), but the
        authors' stacked LSTM (PyTorch word_language_model lineage) applies its
        single dropout 0.65 to the embedding output, between the layers and to
        the top output, so this preset uses (0, 0.65, 0.65, 0.65). The paper has
        no GRU or vanilla-RNN model, so ``paper`` exists for "lstm", "rhn" and "awd_mos" only.

        ``smoke`` trains a tiny model on the generated smoke corpus in seconds
        per epoch; ``cpu`` is the largest stacked LSTM whose PTB epoch takes a
        few minutes on 2 CPU cores (the README lists the measured times), the
        other kinds scaled alike. ``atlas`` is the stacked LSTM of the tabulated
        atlas (:mod:`lshkit.atlas`): 2×128 on PTB, 30 epochs of 40,000 training
        tokens each (read on through the training stream, 1.3 passes in all),
        validated on the first 10,000 validation tokens; no dropout, since with
        so little data seen there is little to regularise against.

        AWD-LSTM-MoS (``"awd_mos"``): ``paper`` is Table A1's third column as Yang et
        al. ran it on WikiText-2 (arXiv 1711.03953, their public command): layers 1150,
        1150, 650, lr 15, batch 15, bptt 70, dropouts (0.1, 0.55, 0.2, 0.4), 1000
        epochs, clip 0.25, and from that command 15 experts, embedding 300 tied to the
        decoder, weight drop 0.5, latent dropout 0.29, evaluation batch 10. Table A1
        prints embedding 830 and untied, but that model has 87.8M parameters on
        WikiText-2's 33,278 words, while Table 1 gives the dense model 35.0M, which is
        what embedding 300 tied gives (34.9M). ``cpu`` keeps Table A1's training
        settings on PTB with a 96-wide embedding, layers 256, 256, 128, 2 experts and
        dropouts scaled down as for the other models; ``smoke`` is a 64, 64, 48 stack
        with 3 experts. Not reproduced (training-loop features the kit's Trainer does
        not have): the authors' activation regularisers (AR, TAR), their randomly
        varied BPTT length and the finetuning stage.
        """
        if scale not in SCALES:
            raise ValueError(f"preset scale must be one of {', '.join(map(repr, SCALES))}; got {scale!r}")
        check_choice("model", model, MODELS)
        if (scale, model) not in PRESETS:
            valid = [m for s, m in PRESETS if s == scale]
            raise ValueError(f"no {scale!r} preset for model {model!r} (paper Table A1 has no such "
                             f"model); {scale!r} presets exist for {valid}")
        return cls(model=model, **PRESETS[scale, model])


def build_model(cfg: TrainConfig, vocab_size: int) -> torch.nn.Module:
    """The model ``cfg`` describes, via :func:`lshkit.models.build_model` (unseeded: the
    :class:`Trainer` seeds first)."""
    kwargs = dict(emb_size=cfg.emb_size, hidden_size=cfg.hidden_size,
                  dropouts=cfg.dropouts, tie_weights=cfg.tied)
    if cfg.model == "rhn":
        kwargs.update(depth=cfg.depth, coupled=cfg.coupled)
    elif cfg.model == "awd_mos":
        kwargs.update(num_layers=cfg.num_layers, last_hidden_size=cfg.last_hidden_size, experts=cfg.experts,
                      weight_drop=cfg.weight_drop, latent_dropout=cfg.latent_dropout)
    else:
        kwargs.update(num_layers=cfg.num_layers)
    return models.build_model(cfg.model, vocab_size, **kwargs)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and every CUDA device) generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def perplexity(loss: float) -> float:
    """exp(mean cross-entropy in nats), inf where it overflows."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


def train_step(model, optimizer, x, y, state, clip: float, sparsity=None):
    """One optimiser step on the BPTT window ``x -> y`` ([T, B] each) from ``state``
    (detached here, so no gradient flows into earlier windows): forward, mean
    cross-entropy, backward, clip the gradient norm to ``clip``, step, re-apply
    the masks so pruned weights stay exactly 0.

    The norm is clipped over the full gradients, pruned positions included, as the
    authors' training does (clip before Selfish-RNN's masked step). Returns
    ``(loss, grad_norm, state)`` with the first two as floats; when either is not
    finite the weights are left untouched and the caller decides what to do.
    """
    logits, state = model(x, state.detach())
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
    optimizer.zero_grad()
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    # One host sync per step serves both the divergence check and the running loss.
    loss_value, norm_value = torch.stack([loss.detach(), grad_norm.to(loss.dtype)]).tolist()
    if math.isfinite(loss_value) and math.isfinite(norm_value):
        optimizer.step()
        if sparsity is not None:
            sparsity.apply_masks()
    return loss_value, norm_value, state


class TrainingDiverged(RuntimeError):
    """Training produced a non-finite loss or gradient; ``record`` is the failed
    history entry (``failed=True``, ``reason``)."""

    def __init__(self, reason: str, record: dict):
        super().__init__(reason)
        self.reason = reason
        self.record = record


def _cuda_live() -> bool:
    # Touching CUDA generators would start CUDA in a CPU-only run; before CUDA starts,
    # torch.manual_seed's CUDA seeding is still pending and applies when it does.
    return torch.cuda.is_available() and torch.cuda.is_initialized()


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if _cuda_live():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and _cuda_live():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """Train one language model, dense or with dynamic sparse training.

    Seeds its random streams (Python, NumPy, torch CPU and CUDA) with ``cfg.seed``
    *before* building the model (on the CPU, so the initial weights do not depend
    on ``device``; the authors' released code seeds after), moves it to ``device``,
    and builds the masks (``DynamicSparsity`` seeded with ``cfg.seed``) and the
    SNT-ASGD optimiser (``cfg.lr``, ``cfg.weight_decay``, ``cfg.nonmono``). The
    streams are the trainer's own: they are swapped into the global generators
    only while it builds or trains (callbacks included), so trainers interleaved
    with each other or with other work run exactly as they would alone, and a
    checkpoint carries them. The death-rate schedule spans ``cfg.epochs`` epochs: one
    update at the end of every epoch but the last (``update_every=None``), or one
    every N optimiser steps.

    ``progress``: a tqdm bar per epoch; None chooses: off when the environment
    variable CI is set, else on in a terminal or a Jupyter kernel. Notebooks
    checked by nbval pass ``progress=False`` (nbval compares stderr).
    """

    def __init__(self, cfg: TrainConfig, corpus, sparse: SparseConfig | None = None, *,
                 device="cpu", progress: bool | None = None):
        if not isinstance(cfg, TrainConfig):
            raise TypeError(f"cfg must be a TrainConfig; got {type(cfg).__name__}")
        if sparse is not None and not isinstance(sparse, SparseConfig):
            raise TypeError(f"sparse must be a SparseConfig or None; got {type(sparse).__name__}")
        if sparse is not None and sparse.growth == "momentum":
            raise ValueError("SparseConfig.growth='momentum' needs an optimiser with momentum, and "
                             "SNT-ASGD has none; use growth 'random' or 'gradient'")
        if corpus.name != cfg.dataset:
            raise ValueError(f"corpus {corpus.name!r} does not match TrainConfig.dataset {cfg.dataset!r}")
        self.cfg, self.sparse, self.corpus = cfg, sparse, corpus
        self.device = torch.device(device)
        self.progress = auto_progress(progress)

        self.train_data = batchify(corpus.train, cfg.batch_size).to(self.device)
        valid = corpus.valid if cfg.valid_tokens is None else corpus.valid[: cfg.valid_tokens]
        self.valid_data = batchify(valid, cfg.eval_batch_size).to(self.device)
        self.test_data = batchify(corpus.test, cfg.eval_batch_size).to(self.device)
        for split, data in zip(SPLITS, (self.train_data, self.valid_data, self.test_data)):
            if data.size(0) < cfg.bptt + 1:
                raise ValueError(f"the {split} split of {corpus.name!r} batchified is {data.size(0)} rows, "
                                 f"too short for bptt={cfg.bptt}")
        self.windows = n_batches(self.train_data, cfg.bptt)
        self.steps_per_epoch = (self.windows if cfg.epoch_tokens is None else
                                max(1, cfg.epoch_tokens // (cfg.batch_size * cfg.bptt)))

        outer = _rng_state()
        seed_everything(cfg.seed)
        self._rng = _rng_state()
        _set_rng_state(outer)
        with self._own_rng():
            self.model = build_model(cfg, len(corpus.vocab)).to(self.device)
            self.optimizer = SNTASGD(self.model.parameters(), lr=cfg.lr,
                                     weight_decay=cfg.weight_decay, nonmono=cfg.nonmono)
            self.sparsity = None
            if sparse is not None:
                if sparse.update_every is None:
                    total_updates = max(cfg.epochs - 1, 1)
                else:
                    total_updates = max(self.steps_per_epoch * cfg.epochs // sparse.update_every, 1)
                self.sparsity = DynamicSparsity(self.model, sparse, total_updates=total_updates,
                                                seed=cfg.seed)
        self.epoch = 0
        self.step = 0
        self.history: list[dict] = []

    # ----------------------------------------------------------------- training
    @contextlib.contextmanager
    def _own_rng(self):
        """Run with this trainer's own Python/NumPy/torch random streams in the global
        generators and give the caller's back afterwards, so that interleaving trainers
        (as the search does) or other work changes no run."""
        outer = _rng_state()
        _set_rng_state(self._rng)
        try:
            yield
        finally:
            self._rng = _rng_state()
            _set_rng_state(outer)

    def _threads(self):
        """One torch thread for the generated smoke corpus's tiny models, whatever the machine
        and environment say (more threads only add synchronisation there)."""
        return small_model_threads(self.cfg.dataset == "smoke")

    def _diverged(self, record: dict, reason: str):
        record.update(failed=True, reason=reason)
        self.history.append(record)
        raise TrainingDiverged(reason, record)

    def train_epoch(self, callbacks=()) -> dict:
        """One epoch: train over the training split, evaluate on the validation split,
        feed SNT-ASGD's non-monotone trigger, append the record to ``history``, run
        ``callbacks`` (each ``cb(trainer, record)``), then prune and regrow.

        Callbacks run before this epoch's topology update, on the raw weights:
        :meth:`evaluate` inside one reproduces ``record["valid_loss"]``, and
        ``with trainer.optimizer.averaged():`` puts the evaluated weights in place
        (a no-op before SNT-ASGD's trigger; not to be nested, so not around
        :meth:`evaluate`). The search computes the LS there after every epoch
        (paper §3.2).

        The record: ``epoch``, ``train_loss`` (mean over the epoch's windows, by
        token), ``valid_loss``, ``valid_ppl``, ``lr``, ``density``, ``death_rate``
        (of the next prune/regrow cycle; None when dense), ``averaging`` (whether
        this epoch's evaluation used averaged weights), ``train_seconds``,
        ``eval_seconds``, ``tokens_per_second`` (training). Raises
        :class:`TrainingDiverged` on a non-finite loss or gradient.
        """
        with self._own_rng(), self._threads():
            return self._train_epoch(callbacks)

    def _train_epoch(self, callbacks) -> dict:
        cfg, model = self.cfg, self.model
        record = {"epoch": self.epoch + 1}
        model.train()
        state = model.init_state(cfg.batch_size)
        total_loss, tokens = 0.0, 0
        start = time.perf_counter()
        bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {self.epoch + 1}", unit="batch",
                   leave=False, disable=not self.progress)
        with bar:
            # Epoch e reads the windows after epoch e-1's, wrapping round the stream, so shorter
            # epochs (epoch_tokens) still walk through the whole training split.
            first = self.epoch * self.steps_per_epoch
            for n in range(1, self.steps_per_epoch + 1):
                x, y = get_batch(self.train_data, ((first + n - 1) % self.windows) * cfg.bptt, cfg.bptt)
                loss, grad_norm, state = train_step(model, self.optimizer, x, y, state, cfg.clip, self.sparsity)
                if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                    what = "loss" if not math.isfinite(loss) else "gradient norm"
                    record.update(train_loss=loss, train_seconds=time.perf_counter() - start)
                    self._diverged(record, f"non-finite training {what} ({loss if what == 'loss' else grad_norm}) "
                                           f"at step {n} of epoch {self.epoch + 1}")
                self.step += 1
                if self.sparsity is not None and self.sparsity.due(self.step):
                    self.sparsity.prune_and_regrow(self.optimizer)
                total_loss += loss * y.numel()
                tokens += y.numel()
                bar.update()
                bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        train_seconds = time.perf_counter() - start

        averaging = self.optimizer.averaging
        start = time.perf_counter()
        valid_loss = self.evaluate("valid")
        eval_seconds = time.perf_counter() - start
        record.update(
            train_loss=total_loss / tokens, valid_loss=valid_loss, valid_ppl=perplexity(valid_loss),
            lr=self.optimizer.param_groups[0]["lr"],
            density=1.0 if self.sparsity is None else self.sparsity.density(),
            death_rate=None if self.sparsity is None else self.sparsity.death_rate,
            averaging=averaging, train_seconds=train_seconds, eval_seconds=eval_seconds,
            tokens_per_second=tokens / train_seconds)
        if not math.isfinite(valid_loss):
            self._diverged(record, f"non-finite validation loss after epoch {self.epoch + 1}")
        self.optimizer.observe(valid_loss)
        self.epoch += 1
        self.history.append(record)
        for cb in callbacks:
            cb(self, record)
        if (self.sparsity is not None and self.sparse.update_every is None
                and self.epoch < cfg.epochs):
            self.sparsity.prune_and_regrow(self.optimizer)
        return record

    def record_initial(self, callbacks=()) -> dict:
        """Epoch 0, before any training: the validation loss of the initial (masked) weights and
        ``callbacks`` on it, recorded as the first entry of ``history`` (Appendix B embeds LS
        histories from epoch 0). Only on a fresh trainer; returns the record."""
        if self.epoch != 0 or self.history:
            raise RuntimeError(f"record_initial needs a fresh trainer; this one is at epoch {self.epoch}")
        start = time.perf_counter()
        with self._threads():
            loss = self.evaluate("valid")
        record = {"epoch": 0, "train_loss": None, "valid_loss": loss, "valid_ppl": perplexity(loss),
                  "lr": self.optimizer.param_groups[0]["lr"],
                  "density": 1.0 if self.sparsity is None else self.sparsity.density(),
                  "death_rate": None if self.sparsity is None else self.sparsity.death_rate,
                  "averaging": False, "train_seconds": 0.0, "eval_seconds": time.perf_counter() - start}
        with self._own_rng(), self._threads():
            for cb in callbacks:
                cb(self, record)
        self.history.append(record)
        return record

    @torch.no_grad()
    def evaluate(self, split: str = "valid") -> float:
        """Mean cross-entropy per token (nats) on ``split`` ∈ {train, valid, test},
        in eval mode, with the averaged weights while SNT-ASGD averages. The
        validation/test streams use ``cfg.eval_batch_size``; perplexity = exp(loss)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(map(repr, SPLITS))}; got {split!r}")
        data = {"train": self.train_data, "valid": self.valid_data, "test": self.test_data}[split]
        was_training = self.model.training
        self.model.eval()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        count = 0
        try:
            with self.optimizer.averaged():
                state = self.model.init_state(data.size(1))
                for i in range(0, data.size(0) - 1, self.cfg.bptt):
                    x, y = get_batch(data, i, self.cfg.bptt)
                    logits, state = self.model(x, state)
                    total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1),
                                             reduction="sum")
                    count += y.numel()
        finally:
            self.model.train(was_training)
        return total.item() / count

    def fit(self, epochs: int, callbacks=(), checkpoint=None) -> list[dict]:
        """Train until ``self.epoch == epochs`` (a trainer already at epoch e
        continues from there), running ``callbacks`` after every epoch (see
        :meth:`train_epoch`) and, when ``checkpoint`` is a path, saving there
        atomically after every epoch. A fresh trainer (epoch 0) whose
        ``checkpoint`` exists loads it first and continues. Returns ``history``."""
        check_int("epochs", epochs)
        if checkpoint is not None:
            checkpoint = Path(checkpoint)
            if self.epoch == 0 and checkpoint.exists():
                self.load(checkpoint)
        while self.epoch < epochs:
            self.train_epoch(callbacks)
            if checkpoint is not None:
                self.save(checkpoint)
        return self.history

    # ------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "train_config": self.cfg.to_dict(),
            "sparse_config": None if self.sparse is None else self.sparse.to_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "history": self.history,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "sparsity": None if self.sparsity is None else self.sparsity.state_dict(),
            "rng": self._rng,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"unknown checkpoint format {state.get('format')!r}; "
                             f"this version reads format {CHECKPOINT_FORMAT}")
        mine = {"train_config": self.cfg.to_dict(),
                "sparse_config": None if self.sparse is None else self.sparse.to_dict()}
        for key, ours in mine.items():
            theirs = state[key]
            if theirs != ours:
                if ours is None or theirs is None:
                    diff = f"checkpoint {theirs!r}, trainer {ours!r}"
                else:
                    diff = "; ".join(f"{k}: checkpoint {theirs.get(k)!r}, trainer {ours.get(k)!r}"
                                     for k in sorted(set(ours) | set(theirs)) if ours.get(k) != theirs.get(k))
                raise ValueError(f"checkpoint {key} differs from this trainer's ({diff})")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.sparsity is not None:
            self.sparsity.load_state_dict(state["sparsity"])
        self.epoch, self.step = state["epoch"], state["step"]
        self.history = state["history"]
        self._rng = state["rng"]

    def save(self, path) -> None:
        """Write a checkpoint atomically (temporary file, fsync, rename): model,
        masks and DST schedule, optimiser with its averages, epoch, history, both
        configs and every RNG state."""
        atomic_torch_save(self.state_dict(), Path(path))

    def load(self, path) -> None:
        """Restore a checkpoint written by :meth:`save` for the same configs.
        Checkpoints are pickles: load only files you trust."""
        # On the CPU: RNG states must stay CPU tensors; the loaders move the rest.
        self.load_state_dict(torch.load(Path(path), map_location="cpu", weights_only=False))

    @classmethod
    def from_checkpoint(cls, path, corpus, *, device="cpu", progress: bool | None = None) -> "Trainer":
        """A trainer rebuilt from the configs stored in ``path`` and restored from it."""
        state = torch.load(Path(path), map_location="cpu", weights_only=False)
        sparse = None if state["sparse_config"] is None else SparseConfig.from_dict(state["sparse_config"])
        trainer = cls(TrainConfig.from_dict(state["train_config"]), corpus, sparse,
                      device=device, progress=progress)
        trainer.load_state_dict(state)
        return trainer
