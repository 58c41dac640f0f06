"""Dynamic sparse training: the Selfish-RNN method space that LSH searches, and SNT-ASGD.

The searched space is the authors' (paper §3.2, their released code); the semantics follow
Selfish-RNN (Liu et al., ICML 2021) without the defects of its code (README, "Dynamic sparse
training modes"). One prune/regrow cycle is death (which active weights go), redistribution (how the
regrowth budget, the number removed, is split over layers) and growth (which inactive
positions come back, at exactly 0). The total number of active weights set at
initialisation never changes; a layer never grows into an active slot; every choice
is exact (no random counts) and drawn from a private CPU generator so that a resumed
run repeats an uninterrupted one and results do not depend on the device.
"""
from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from lshkit.checks import check_choice, check_int, check_number
from lshkit.io import JSONConfig

SPARSE_INITS = ("uniform", "ER")
DEATH_MODES = ("magnitude", "SET", "threshold", "global_magnitude")
GROWTH_MODES = ("random", "gradient", "momentum")
REDISTRIBUTION_MODES = ("magnitude", "nonzeros", "none")
DECAYS = ("cosine", "constant")

# The threshold death keeps its τ while the count it removes stays within this
# relative band around the expected count (the Selfish-RNN code's tolerance).
THRESHOLD_TOLERANCE = 0.02


@dataclass
class SparseConfig(JSONConfig):
    """One point of the DST method space (paper §3.2; Selfish-RNN). Defaults: the authors' best
    stacked-LSTM pick (their released code) at sparsity 0.67."""

    density: float = 0.33                # fraction of every masked weight kept (1 - sparsity)
    sparse_init: str = "ER"              # uniform or ER (Erdős–Rényi)
    death: str = "global_magnitude"      # magnitude, SET, threshold, global_magnitude
    growth: str = "random"               # random, gradient (RigL), momentum
    redistribution: str = "nonzeros"     # magnitude, nonzeros, none
    death_rate: float = 0.7              # fraction of active weights pruned at the first cycle
    death_rate_final: float = 0.005      # where the decay ends
    decay: str = "cosine"                # cosine over the planned cycles (Selfish-RNN) or constant
    update_every: int | None = None      # None: prune/regrow once per epoch (the authors); N: every N steps

    @classmethod
    def at_sparsity(cls, sparsity: float, **fields) -> "SparseConfig":
        """The configuration ``fields`` at pruning ratio ``sparsity`` (Table A1's sparsity), its
        density rounded so that a ratio read back from JSON gives the same configuration."""
        return cls(density=round(1.0 - sparsity, 12), **fields)

    def __post_init__(self):
        for name, valid in (("sparse_init", SPARSE_INITS), ("death", DEATH_MODES),
                            ("growth", GROWTH_MODES), ("redistribution", REDISTRIBUTION_MODES),
                            ("decay", DECAYS)):
            check_choice(name, getattr(self, name), valid)
        check_number("density", self.density, low=0, high=1, low_open=True)
        for name in ("death_rate", "death_rate_final"):
            check_number(name, getattr(self, name), low=0, high=1)
        check_int("update_every", self.update_every, low=1, optional=True,
                  why="(None: once per epoch; N: every N optimiser steps)")


def _death_count(rate: float, n: int) -> int:
    """ceil(rate·n), immune to float noise such as 0.7·10 = 7.000000000000001."""
    return min(n, math.ceil(round(rate * n, 6)))


def apportion(shares, total: int, caps) -> list[int]:
    """Split the integer ``total`` over parts in proportion to ``shares``, part i at most
    ``caps[i]``; a part that would overflow is filled to its cap and the excess goes to
    the others; the fractional remainders are settled by largest remainder (ties to the
    lower index), so the parts sum to ``total`` exactly.  Parts whose shares are all
    zero share in proportion to their free room."""
    caps = [int(c) for c in caps]
    if total > sum(caps):
        raise ValueError(f"cannot place {total} in parts holding at most {sum(caps)}")
    alloc = [0] * len(caps)
    open_parts = [i for i, c in enumerate(caps) if c > 0]
    remaining = int(total)
    while remaining > 0:
        weights = [max(float(shares[i]), 0.0) for i in open_parts]
        if not sum(weights) > 0.0:
            weights = [float(caps[i] - alloc[i]) for i in open_parts]
        norm = sum(weights)
        ideal = {i: remaining * w / norm for i, w in zip(open_parts, weights)}
        full = [i for i in open_parts if ideal[i] >= caps[i] - alloc[i]]
        if full:
            for i in full:
                remaining -= caps[i] - alloc[i]
                alloc[i] = caps[i]
            open_parts = [i for i in open_parts if i not in full]
            continue
        floors = {i: math.floor(ideal[i]) for i in open_parts}
        for i in open_parts:
            alloc[i] += floors[i]
        left = remaining - sum(floors.values())
        for i in sorted(open_parts, key=lambda i: (floors[i] - ideal[i], i))[:left]:
            alloc[i] += 1
        remaining = 0
    return alloc


def erdos_renyi_densities(shapes, density: float) -> list[float]:
    """ER keep probabilities (Selfish-RNN, Liu et al. ICML 2021, SET's Erdős–Rényi init): p_l = ε·Σshape/Πshape,
    i.e. ε(rows+cols)/(rows·cols) for a matrix, with ε solved so that Σ p_l·n_l equals
    density·Σ n_l; a layer whose p_l would exceed 1 is kept dense and ε is solved again
    over the rest, until no layer exceeds 1."""
    numels = [math.prod(s) for s in shapes]
    raw = [sum(s) / n for s, n in zip(shapes, numels)]
    target = density * sum(numels)
    dense: set[int] = set()
    eps = 0.0
    while True:
        rest = [i for i in range(len(shapes)) if i not in dense]
        if not rest:
            break
        eps = (target - sum(numels[i] for i in dense)) / sum(raw[i] * numels[i] for i in rest)
        over = {i for i in rest if eps * raw[i] > 1.0}
        if not over:
            break
        dense |= over
    return [1.0 if i in dense else eps * raw[i] for i in range(len(shapes))]


class DynamicSparsity:
    """Masks, initialisation and prune/regrow cycles of one model (Selfish-RNN, Liu et al. ICML 2021).

    Masked: every parameter with dim >= 2 in ``model.named_parameters()`` (embedding,
    each weight_ih/weight_hh, decoder, RHN/GRU matrices; a tied weight appears once).
    ``masks[name]`` is a bool tensor on the parameter's device; build this object after
    the model is on its device.  ``apply_masks()`` zeroes inactive weights in place (the
    fused ``nn.LSTM`` flat weights keep their storage); call it after every optimiser step.

    Counts: uniform init keeps round(density·n) of every layer; ER gives the layers the
    ER probabilities, turned into integer counts summing to round(density·Σn) by largest
    remainder.  Positions are then drawn uniformly.  That total is held after every cycle.

    Death (k = ceil(rate·nnz) per layer):
      magnitude         the k active weights of smallest |w|.
      SET               k//2 negatives closest to zero (largest values) and the rest
                        (ceil(k/2)) among the smallest non-negative ones (active zeros count
                        there); a side with too few weights gives its shortfall to the other.
      threshold         active |w| <= τ_l, with the layer's own τ_l kept across cycles; τ_l
                        is reset to the k-th smallest active |w| when the count it would
                        remove leaves (1 ± THRESHOLD_TOLERANCE)·k.  The count removed is
                        whatever τ_l gives (ties included); regrowth restores the total.
      global_magnitude  one τ for all layers: the k-th smallest active |w| of the whole
                        model, k = ceil(rate·total nnz); exactly k die (ties at τ in layer
                        order, then position).
    Ties elsewhere are broken by position (stable sorts), so choices do not depend on the device.

    Redistribution of the regrowth budget (= total removed this cycle), measured on the
    survivors of this cycle's death: magnitude ∝ mean |w| of a layer's survivors;
    nonzeros ∝ its survivor count; none: each layer regrows what it lost.  A layer gets
    at most its free slots; the excess goes to the others; largest remainder makes the
    split exact.

    Growth picks exactly the budget among the positions inactive after death (a weight
    killed in this cycle is a candidate, as in RigL and Selfish-RNN): random uniformly;
    gradient by largest |grad| (RigL; needs .grad from a backward pass); momentum by
    largest |momentum| of the optimiser (``momentum_buffer`` of SGD, ``exp_avg`` of Adam).
    Grown weights are set to exactly 0.  Both use the state before this cycle's growth.
    """

    def __init__(self, model: nn.Module, config: SparseConfig, total_updates: int, seed: int = 0):
        if not isinstance(config, SparseConfig):
            raise TypeError(f"config must be a SparseConfig, got {type(config).__name__}")
        check_int("total_updates", total_updates, low=1, why="(the prune/regrow cycles the schedule spans)")
        self.params = {n: p for n, p in model.named_parameters() if p.dim() >= 2}
        if not self.params:
            raise ValueError("the model has no weight with dim >= 2 to mask")
        self.config = config
        self.total_updates = total_updates
        self.cycle = 0
        self.thresholds: dict[str, float | None] = {n: None for n in self.params}
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(seed)

        shapes = [tuple(p.shape) for p in self.params.values()]
        numels = [p.numel() for p in self.params.values()]
        if config.sparse_init == "uniform":
            counts = [round(config.density * n) for n in numels]
        else:
            probs = erdos_renyi_densities(shapes, config.density)
            counts = apportion([q * n for q, n in zip(probs, numels)],
                               round(config.density * sum(numels)), numels)
        self.masks: dict[str, torch.Tensor] = {}
        for (name, p), count in zip(self.params.items(), counts):
            chosen = torch.randperm(p.numel(), generator=self.generator)[:count]
            mask = torch.zeros(p.numel(), dtype=torch.bool, device=p.device)
            mask[chosen.to(p.device)] = True
            self.masks[name] = mask.view_as(p)
        self.total_active = sum(counts)
        self._refresh_keep()
        self.apply_masks()

    def _refresh_keep(self):
        # Same-dtype float copies: multiplying by them is the cheapest in-place masking.
        self._keep = [(p, self.masks[n].to(p.dtype)) for n, p in self.params.items()]

    @torch.no_grad()
    def apply_masks(self):
        for p, keep in self._keep:
            p.mul_(keep)

    @property
    def death_rate(self) -> float:
        """Death rate of the next cycle: cosine from death_rate to death_rate_final over
        total_updates cycles (Selfish-RNN, paper Table A1), or constant."""
        c = self.config
        if c.decay == "constant":
            return c.death_rate
        t = min(self.cycle, self.total_updates) / self.total_updates
        return c.death_rate_final + 0.5 * (c.death_rate - c.death_rate_final) * (1.0 + math.cos(math.pi * t))

    def due(self, step: int) -> bool:
        """True when ``update_every`` is an int N and ``step`` (optimiser steps so far) is a
        positive multiple of N.  With ``update_every=None`` the trainer calls
        ``prune_and_regrow`` at the end of each epoch instead."""
        n = self.config.update_every
        return n is not None and step > 0 and step % n == 0

    def density(self) -> float:
        return sum(int(m.sum()) for m in self.masks.values()) / sum(m.numel() for m in self.masks.values())

    def layer_density(self) -> dict[str, float]:
        return {n: int(m.sum()) / m.numel() for n, m in self.masks.items()}

    # -- death ---------------------------------------------------------------

    def _active(self, name):
        idx = self.masks[name].reshape(-1).nonzero().squeeze(1)
        return idx, self.params[name].detach().reshape(-1)[idx]

    def _death_layerwise(self, rate) -> dict[str, torch.Tensor]:
        killed = {}
        for name in self.params:
            idx, w = self._active(name)
            k = _death_count(rate, idx.numel())
            if self.config.death == "magnitude":
                kill = idx[torch.sort(w.abs(), stable=True).indices[:k]]
            elif self.config.death == "SET":
                nonneg = w >= 0
                n_pos = int(nonneg.sum())
                n_neg = idx.numel() - n_pos
                k_neg = min(k // 2, n_neg)
                k_pos = min(k - k_neg, n_pos)
                k_neg = k - k_pos
                pos_idx, neg_idx = idx[nonneg], idx[~nonneg]
                kill = torch.cat([
                    pos_idx[torch.sort(w[nonneg], stable=True).indices[:k_pos]],
                    neg_idx[torch.sort(w[~nonneg], descending=True, stable=True).indices[:k_neg]]])
            else:  # threshold
                a = w.abs()
                tau = self.thresholds[name]
                if k > 0:
                    if tau is None or not ((1 - THRESHOLD_TOLERANCE) * k <= int((a <= tau).sum())
                                           <= (1 + THRESHOLD_TOLERANCE) * k):
                        tau = float(torch.sort(a).values[k - 1])
                        self.thresholds[name] = tau
                    kill = idx[a <= tau]
                else:
                    kill = idx[:0]
            killed[name] = kill
        return killed

    def _death_global(self, rate) -> tuple[dict[str, torch.Tensor], float | None]:
        active = {name: self._active(name) for name in self.params}
        sizes = [idx.numel() for idx, _ in active.values()]
        mags = torch.cat([w.abs() for _, w in active.values()])
        k = _death_count(rate, mags.numel())
        order = torch.sort(mags, stable=True).indices[:k]
        tau = float(mags[order[-1]]) if k > 0 else None
        chosen = torch.zeros(mags.numel(), dtype=torch.bool, device=mags.device)
        chosen[order] = True
        killed = {}
        for (name, (idx, _)), part in zip(active.items(), chosen.split(sizes)):
            killed[name] = idx[part]
        return killed, tau

    # -- growth --------------------------------------------------------------

    def _growth_scores(self, optimizer) -> dict[str, torch.Tensor] | None:
        mode = self.config.growth
        if mode == "random":
            return None
        if mode == "gradient":
            missing = [n for n, p in self.params.items() if p.grad is None]
            if missing:
                raise RuntimeError(f"growth='gradient' needs .grad of every masked weight (missing for "
                                   f"{missing}); call prune_and_regrow after backward(), before zero_grad()")
            return {n: p.grad.detach().abs() for n, p in self.params.items()}
        if optimizer is None:
            raise RuntimeError("growth='momentum' needs prune_and_regrow(optimizer=...) with an optimiser "
                               "keeping momentum (SGD momentum>0: momentum_buffer; Adam: exp_avg)")
        scores = {}
        for n, p in self.params.items():
            st = optimizer.state.get(p, {})
            buf = st.get("momentum_buffer")
            if buf is None:
                buf = st.get("exp_avg")
            if buf is None:
                raise RuntimeError(f"growth='momentum' found no momentum for {n!r}: the optimiser must keep "
                                   "momentum_buffer (SGD with momentum>0) or exp_avg (Adam) and have stepped")
            scores[n] = buf.detach().abs()
        return scores

    def _grow(self, name, free_idx, budget, scores) -> torch.Tensor:
        if budget == 0:
            return free_idx[:0]
        if scores is None:
            pick = torch.randperm(free_idx.numel(), generator=self.generator)[:budget]
            return free_idx[pick.to(free_idx.device)]
        s = scores[name].reshape(-1)[free_idx]
        return free_idx[torch.sort(s, descending=True, stable=True).indices[:budget]]

    # -- one cycle -------------------------------------------------------------

    @torch.no_grad()
    def prune_and_regrow(self, optimizer=None) -> dict:
        """One death + redistribution + growth cycle; returns its statistics.  If the
        optimiser has ``reset_life(param, positions)`` (SNTASGD) it is called with every
        position that died or grew, so the weight's average restarts there."""
        scores = self._growth_scores(optimizer)
        rate = self.death_rate
        stats: dict = {"cycle": self.cycle + 1, "death_rate": rate}
        if self.config.death == "global_magnitude":
            killed_idx, stats["threshold"] = self._death_global(rate)
        else:
            killed_idx = self._death_layerwise(rate)

        names = list(self.params)
        survivors = {}
        for n in names:
            s = self.masks[n].clone()
            s.view(-1)[killed_idx[n]] = False
            survivors[n] = s
        removed = [killed_idx[n].numel() for n in names]
        free = [survivors[n].numel() - int(survivors[n].sum()) for n in names]
        mode = self.config.redistribution
        if mode == "none":
            budgets = removed
        else:
            if mode == "nonzeros":
                shares = [float(survivors[n].sum()) for n in names]
            else:
                shares = [float(self.params[n].detach()[survivors[n]].abs().mean()) if survivors[n].any()
                          else 0.0 for n in names]
            budgets = apportion(shares, sum(removed), free)

        stats["layers"] = {}
        for n, budget, lost in zip(names, budgets, removed):
            p, mask = self.params[n], self.masks[n]
            grown_idx = self._grow(n, (~survivors[n]).reshape(-1).nonzero().squeeze(1), budget, scores)
            grown = torch.zeros_like(mask)
            grown.view(-1)[grown_idx] = True
            changed = grown.clone()
            changed.view(-1)[killed_idx[n]] = True
            mask.copy_(survivors[n] | grown)
            p.masked_fill_(changed, 0.0)
            if hasattr(optimizer, "reset_life"):
                optimizer.reset_life(p, changed)
            layer = {"removed": lost, "regrown": budget, "density": int(mask.sum()) / mask.numel()}
            if self.config.death == "threshold":
                layer["threshold"] = self.thresholds[n]
            stats["layers"][n] = layer

        total = sum(int(m.sum()) for m in self.masks.values())
        if total != self.total_active:
            raise RuntimeError(f"prune/regrow changed the active count {self.total_active} -> {total}")
        self.cycle += 1
        self._refresh_keep()
        self.apply_masks()
        stats.update(removed=sum(removed), regrown=sum(budgets), density=self.density())
        return stats

    # -- checkpointing -----------------------------------------------------------

    def state_dict(self) -> dict:
        return {"config": self.config.to_dict(), "masks": {n: m.clone() for n, m in self.masks.items()},
                "cycle": self.cycle, "thresholds": dict(self.thresholds),
                "generator": self.generator.get_state(), "total_active": self.total_active}

    def load_state_dict(self, sd: dict):
        """Restore masks, cycle, thresholds and the generator.  Construction zeroes the
        weights outside the initial masks, so load the model's weights after building
        this object (as a resume does), not before."""
        if sd["config"] != self.config.to_dict():
            raise ValueError(f"checkpoint was made with SparseConfig {sd['config']}, "
                             f"this run uses {self.config.to_dict()}")
        if set(sd["masks"]) != set(self.masks) or any(
                sd["masks"][n].shape != m.shape for n, m in self.masks.items()):
            raise ValueError(f"checkpoint masks {sorted(sd['masks'])} do not match the model's "
                             f"masked weights {sorted(self.masks)} (names and shapes)")
        for n, m in self.masks.items():
            m.copy_(sd["masks"][n])
        self.cycle = sd["cycle"]
        self.thresholds = dict(sd["thresholds"])
        self.generator.set_state(sd["generator"].cpu())
        self.total_active = sd["total_active"]
        self._refresh_keep()
        self.apply_masks()


_NT = "nt_asgd"


class SNTASGD(torch.optim.Optimizer):
    """Sparse non-monotonically triggered ASGD (Selfish-RNN, Liu et al. ICML 2021; awd-lstm-lm's NT-ASGD with
    Selfish-RNN's per-weight lives).

    Plain SGD (``lr``, no momentum, L2 ``weight_decay``) until ``observe`` sees a
    validation loss worse than the best of all but the last ``nonmono`` recorded ones
    (``len(log) > nonmono and loss > min(log[:-nonmono])``, checked before recording).
    From then on the update is unchanged and each weight also keeps the running mean of
    its iterates over its current life: the values after each optimiser step since the
    trigger or since ``reset_life`` last (re)started it, whichever is later.

    The iterate of a step is folded into the mean at the start of the next step (or
    added on the fly by ``averaged()``), i.e. after the trainer's ``apply_masks``, so a
    pruned weight averages to exactly 0.  Per weight the state holds ``ax`` (the mean of
    the folded iterates) and ``birth`` (the averaged-step count when its life began; its
    life count is steps − birth).  ``averaged()`` swaps the means in for evaluation; a
    weight with no step in its life yet evaluates at its current value.
    """

    def __init__(self, params, lr: float, weight_decay: float = 0.0, nonmono: int = 5):
        check_number("lr", lr, low=0)
        check_number("weight_decay", weight_decay, low=0)
        check_int("nonmono", nonmono, low=1, why="(paper: 5)")
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay))
        self.nonmono = nonmono
        self.state[_NT] = {"val_losses": [], "averaging": False, "steps": 0}

    @property
    def averaging(self) -> bool:
        return self.state[_NT]["averaging"]

    def observe(self, val_loss: float) -> bool:
        """Record one validation loss; switch averaging on when the non-monotone trigger
        fires.  Returns whether averaging is on."""
        nt = self.state[_NT]
        log = nt["val_losses"]
        if not nt["averaging"] and len(log) > self.nonmono and val_loss > min(log[:-self.nonmono]):
            nt["averaging"] = True
            nt["steps"] = 0
        log.append(float(val_loss))
        return nt["averaging"]

    def _params(self):
        return [p for g in self.param_groups for p in g["params"]]

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        nt = self.state[_NT]
        if nt["averaging"]:
            steps = nt["steps"]
            for p in self._params():
                st = self.state[p]
                if not st:
                    st["ax"] = torch.zeros_like(p)
                    st["birth"] = torch.full_like(p, steps)
                else:
                    n = steps - st["birth"]
                    st["ax"].add_(torch.where(n > 0, (p - st["ax"]) / n.clamp(min=1), 0.0))
            nt["steps"] = steps + 1
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if group["weight_decay"]:
                    d = d.add(p, alpha=group["weight_decay"])
                p.add_(d, alpha=-group["lr"])
        return loss

    def reset_life(self, param: torch.Tensor, positions: torch.Tensor):
        """Restart the life of ``param`` at the bool ``positions`` (a weight that died or
        was regrown): its mean forgets everything before now."""
        st = self.state.get(param)
        if not self.averaging or not st:
            return
        st["birth"].masked_fill_(positions, self.state[_NT]["steps"])
        st["ax"].masked_fill_(positions, 0.0)

    @torch.no_grad()
    def _average(self, p):
        st = self.state[p]
        n = self.state[_NT]["steps"] - st["birth"]
        return torch.where(n > 0, st["ax"] + (p - st["ax"]) / n.clamp(min=1), p)

    @contextmanager
    def averaged(self):
        """Evaluate with the averaged weights: copied into the parameters in place (the
        storage is kept) and the raw weights restored on exit.  A no-op before the trigger."""
        if getattr(self, "_swapped_in", False):
            raise RuntimeError("SNTASGD.averaged() is already active: nesting it would average "
                               "the averaged weights")
        swapped = []
        if self.averaging:
            with torch.no_grad():
                for p in self._params():
                    if self.state.get(p):
                        swapped.append((p, p.detach().clone()))
                        p.copy_(self._average(p))
        self._swapped_in = True
        try:
            yield
        finally:
            self._swapped_in = False
            with torch.no_grad():
                for p, raw in swapped:
                    p.copy_(raw)

    def state_dict(self):
        sd = super().state_dict()
        sd["state"][_NT] = copy.deepcopy(self.state[_NT])
        return sd

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self.state[_NT] = copy.deepcopy(self.state[_NT])
