"""Pruned models to take away: a trained sparse model and its masks written out three ways, and
the report pruning papers give (Selfish-RNN's Table 1 and RigL's: sparsity, parameters, FLOPs).

Nothing here trains: every function takes a model and its masks (``name -> bool tensor`` over the
model's ``named_parameters()``, as :class:`lshkit.dst.DynamicSparsity` keeps them), from a
:class:`~lshkit.train.Trainer` (:func:`from_trainer`), a trainer checkpoint
(:func:`from_checkpoint`) or a search's selected candidate (:func:`from_search`).

* (a) :func:`save_masked`: a plain PyTorch state dict whose pruned weights are 0, with the masks
  beside it and the configs that rebuild the model (:func:`load_masked`);
* (b) :func:`apply_torch_pruning`: the masks as ``torch.nn.utils.prune.custom_from_mask``
  reparametrisations of the model's own modules (``weight_orig`` and ``weight_mask``; a tied
  weight in every module that holds it). On a fused ``nn.LSTM`` the hook recomputes each flat
  weight before every forward, so the module runs off its flat buffer: on CUDA it re-flattens for
  cuDNN at every call (a copy, and PyTorch's warning about non-contiguous weights). For
  deployment ``bake=True`` (``prune.remove``) turns them back into plain parameters;
* (c) :func:`report`: sparsity per matrix and per gate block (PyTorch's i, f, g, o rows of an
  LSTM's ``weight_ih``/``weight_hh``; r, z, n of a GRU), parameters dense and kept, FLOPs per
  token dense and sparse (:func:`flops_per_token`), and measured inference time
  (:func:`inference_time`).
"""
from __future__ import annotations

import copy
import statistics
import time
import warnings
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from lshkit.io import atomic_torch_save, read_json, write_csv, write_json

__all__ = ["from_trainer", "from_checkpoint", "from_search", "save_masked", "load_masked", "apply_torch_pruning",
           "save_torch_pruned", "load_torch_pruned", "sparsity_table", "flops_per_token", "inference_time",
           "report", "export_pruned", "GATES", "FLOPS_METHOD", "TIMING_METHOD"]

#: PyTorch's gate blocks (rows of weight_ih/weight_hh, in this order) per fused module.
GATES = {"LSTM": ("i", "f", "g", "o"), "GRU": ("r", "z", "n"), "RNN": ("h",)}
FORMAT = "lshkit-pruned/1"
FLOPS_METHOD = ("FLOPs per token: 2 per multiply-accumulate of every weight matrix a token passes through "
                "(the recurrent layers' weight_ih and weight_hh, the decoder), counting only the kept "
                "weights in the sparse figure, plus 1 per bias addition and per element-wise gate operation "
                "(a sigmoid or tanh counts 1); the embedding is a lookup (0) and the softmax is left out")
TIMING_METHOD = ("inference: eval mode, torch.inference_mode, one torch thread, a batch of {batch} sequences "
                 "of {steps} random tokens (seed 0); {warmup} warm-up runs, then {repeats} rounds in which "
                 "every variant runs once, in turn; the median seconds per forward over the rounds")


def _check_masks(model: nn.Module, masks: dict) -> dict:
    params = dict(model.named_parameters())
    if not isinstance(masks, dict) or not masks:
        raise ValueError("masks must be a non-empty dict parameter name -> bool tensor (DynamicSparsity.masks); "
                         "a dense model has none to export")
    unknown = sorted(set(masks) - set(params))
    if unknown:
        raise ValueError(f"masks name {unknown}, which the model does not have; its parameters are {sorted(params)}")
    out = {}
    for name, mask in masks.items():
        if tuple(mask.shape) != tuple(params[name].shape):
            raise ValueError(f"the mask of {name} has shape {tuple(mask.shape)}; the parameter has "
                             f"{tuple(params[name].shape)}")
        out[name] = mask.detach().to(torch.bool).cpu()
    return out


def _apply(model: nn.Module, masks: dict) -> nn.Module:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in masks:
                p.mul_(masks[name].to(p.device, p.dtype))
    return model


# ---------------------------------------------------------------------------- where models come from


def from_trainer(trainer) -> tuple[nn.Module, dict, dict]:
    """A copy of ``trainer``'s model with the weights it evaluates with (SNT-ASGD's averages once
    averaging is on) and the masks applied, the masks, and what rebuilds it (``meta``: the train
    and sparse configs, the vocabulary size, the epoch)."""
    if trainer.sparsity is None:
        raise ValueError("the trainer is dense (no SparseConfig): it has no masks to export")
    with trainer.optimizer.averaged():
        model = copy.deepcopy(trainer.model).cpu()
    masks = _check_masks(model, trainer.sparsity.masks)
    meta = {"train_config": trainer.cfg.to_dict(), "sparse_config": trainer.sparse.to_dict(),
            "vocab_size": len(trainer.corpus.vocab), "epoch": trainer.epoch,
            "valid_ppl": trainer.history[-1]["valid_ppl"] if trainer.history else None}
    return _apply(model.eval(), masks), masks, meta


def _build(meta: dict) -> nn.Module:
    from lshkit.train import TrainConfig, build_model

    return build_model(TrainConfig.from_dict(meta["train_config"]), meta["vocab_size"])


def from_checkpoint(path) -> tuple[nn.Module, dict, dict]:
    """As :func:`from_trainer`, from a checkpoint a :class:`~lshkit.train.Trainer` wrote (a search's
    candidates are such files); needs no corpus. Checkpoints are pickles: load only files you trust."""
    from lshkit.dst import SNTASGD
    from lshkit.train import TrainConfig

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("sparsity") is None:
        raise ValueError(f"{path} is not the checkpoint of a sparse Trainer (no masks in it)")
    cfg = TrainConfig.from_dict(state["train_config"])
    meta = {"train_config": state["train_config"], "sparse_config": state["sparse_config"],
            "vocab_size": int(state["model"]["encoder.weight"].shape[0]), "epoch": state["epoch"],
            "valid_ppl": state["history"][-1]["valid_ppl"] if state["history"] else None, "checkpoint": str(path)}
    model = _build(meta)
    model.load_state_dict(state["model"])
    optimizer = SNTASGD(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, nonmono=cfg.nonmono)
    optimizer.load_state_dict(state["optimizer"])
    with optimizer.averaged():
        evaluated = copy.deepcopy(model)
    masks = _check_masks(evaluated, state["sparsity"]["masks"])
    return _apply(evaluated.eval(), masks), masks, meta


def from_search(out, checkpoints=None) -> tuple[nn.Module, dict, dict]:
    """The candidate a search (``python -m lshkit search --out OUT``) selected, from its checkpoint:
    ``<checkpoints or OUT/checkpoints>/<study>/c<candidate>.pt``, as its final training left it. A
    replayed search (no checkpoints), an unfinished one, or a missing file is an error saying so."""
    out = Path(out)
    if not (out / "summary.json").is_file():
        raise FileNotFoundError(f"no finished search in {out} (no summary.json)")
    summary = read_json(out / "summary.json")
    if summary.get("runner") == "atlas":
        raise ValueError(f"the search in {out} was replayed on an atlas, which keeps no weights: train the "
                         "selected configuration (python -m lshkit search) to export it")
    if summary.get("selected_candidate") is None:
        raise ValueError(f"the search in {out} selected no candidate (every survivor failed)")
    path = (Path(checkpoints) if checkpoints is not None else out / "checkpoints") / summary["study"] / \
        f"c{summary['selected_candidate']:04d}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"the selected candidate's checkpoint {path} is missing (give checkpoints= "
                                "where the search kept them, --checkpoints on its command line)")
    model, masks, meta = from_checkpoint(path)
    meta.update(selected=summary["selected"], search=str(out), test_ppl=summary.get("test_ppl"))
    return model, masks, meta


# ---------------------------------------------------------------------------- (a) and (b)


def save_masked(path, model: nn.Module, masks: dict, meta: dict | None = None) -> Path:
    """(a) ``{"format", "state_dict", "masks", "meta"}`` at ``path``, atomically: the model's state
    dict with the masks applied, the bool masks, and ``meta`` (what :func:`load_masked` rebuilds the
    model from when it has ``train_config`` and ``vocab_size``)."""
    masks = _check_masks(model, masks)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    for name, mask in masks.items():
        state[name] = state[name] * mask.to(state[name].dtype)
    return atomic_torch_save({"format": FORMAT, "state_dict": state, "masks": masks, "meta": meta or {}}, path)


def load_masked(path, model: nn.Module | None = None) -> tuple[nn.Module, dict, dict]:
    """The model, masks and meta :func:`save_masked` wrote; ``model`` to load into, else one built
    from ``meta`` (train_config, vocab_size)."""
    data = torch.load(Path(path), map_location="cpu", weights_only=False)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a masked export ({FORMAT})")
    if model is None:
        if not {"train_config", "vocab_size"} <= set(data["meta"]):
            raise ValueError(f"{path} does not say how to build its model (meta has no train_config and "
                             "vocab_size): pass model=")
        model = _build(data["meta"])
    model.load_state_dict(data["state_dict"])
    return model.eval(), _check_masks(model, data["masks"]), data["meta"]


def _owners(model: nn.Module, name: str) -> list[tuple[nn.Module, str]]:
    """Every (module, attribute) holding the parameter ``name`` (a tied weight has several)."""
    target = dict(model.named_parameters())[name]
    owners = []
    for module_name, module in model.named_modules():
        for attr, p in module._parameters.items():
            if p is target:
                owners.append((module, attr))
    return owners


def apply_torch_pruning(model: nn.Module, masks: dict, *, bake: bool = False, copy_model: bool = True) -> nn.Module:
    """(b) The masks as ``torch.nn.utils.prune.custom_from_mask`` on every module holding a masked
    weight (both modules of a tied weight); a copy of ``model`` unless ``copy_model=False``.
    ``bake``: then ``prune.remove`` each, leaving plain parameters with the zeros in place (the
    form to deploy: a fused LSTM's flat weights are parameters again, so cuDNN can flatten them)."""
    from torch.nn.utils import prune

    masks = _check_masks(model, masks)
    owners = {name: _owners(model, name) for name in masks}
    if copy_model:
        clone = copy.deepcopy(model)
        owners = {name: _owners(clone, name) for name in masks}
        model = clone
    for name, mask in masks.items():
        for module, attr in owners[name]:
            param = getattr(module, attr)
            prune.custom_from_mask(module, attr, mask.to(param.device))
    if bake:
        for name in masks:
            for module, attr in owners[name]:
                prune.remove(module, attr)
    return model


def save_torch_pruned(path, model: nn.Module, meta: dict | None = None) -> Path:
    """(b) on disk: the state dict of a model :func:`apply_torch_pruning` made (``<w>_orig`` and
    ``<w>_mask`` entries, as ``torch.nn.utils.prune`` keeps them) with ``meta``, atomically."""
    if not any(k.endswith("_mask") for k in model.state_dict()):
        raise ValueError("the model carries no torch.nn.utils.prune masks: apply_torch_pruning(model, masks) first")
    return atomic_torch_save({"format": FORMAT + "+torch.nn.utils.prune",
                              "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                              "meta": meta or {}}, path)


def load_torch_pruned(path, model: nn.Module | None = None) -> nn.Module:
    """A model with the pruning reparametrisation :func:`save_torch_pruned` wrote: the masks
    applied with ``custom_from_mask`` to ``model`` (or one built from the file's meta), then the
    state dict loaded."""
    data = torch.load(Path(path), map_location="cpu", weights_only=False)
    if not isinstance(data, dict) or not str(data.get("format", "")).endswith("torch.nn.utils.prune"):
        raise ValueError(f"{path} is not a torch.nn.utils.prune export")
    model = model if model is not None else _build(data["meta"])
    state = data["state_dict"]
    # A tied weight appears once in named_parameters: its mask is the one stored under that name.
    masks = {name: state[f"{name}_mask"] for name, _ in model.named_parameters() if f"{name}_mask" in state}
    pruned = apply_torch_pruning(model, masks, copy_model=False)
    pruned.load_state_dict(state)
    return pruned.eval()


# ---------------------------------------------------------------------------- (c) the report


def _fused(model: nn.Module):
    rnn = getattr(model, "rnn", None)
    kind = type(rnn).__name__ if rnn is not None else type(model).__name__
    if kind not in GATES:
        raise ValueError(f"{type(model).__name__} is not supported here: FLOPs and gate blocks are counted for "
                         f"models whose recurrence is one fused nn.LSTM, nn.GRU or nn.RNN (StackedLSTM, GRULM, "
                         f"RNNLM); it has {kind}")
    return rnn, kind


def sparsity_table(model: nn.Module, masks: dict) -> pd.DataFrame:
    """One row per masked matrix (``block`` "all") and per gate block of each recurrent matrix:
    its shape, parameters, the kept ones (the mask), the nonzero values, sparsity = 1 − kept/params."""
    masks = _check_masks(model, masks)
    params = dict(model.named_parameters())
    gates = GATES.get(type(getattr(model, "rnn", None)).__name__, ())
    rows = []
    for name, mask in masks.items():
        value = params[name].detach().cpu()
        blocks = [("all", slice(None))]
        if gates and name.startswith("rnn.weight_"):
            h = mask.shape[0] // len(gates)
            blocks += [(g, slice(i * h, (i + 1) * h)) for i, g in enumerate(gates)]
        for block, rows_ in blocks:
            m, v = mask[rows_], value[rows_]
            rows.append({"matrix": name, "block": block, "shape": "x".join(map(str, m.shape)), "params": m.numel(),
                         "kept": int(m.sum()), "nonzero": int((v != 0).sum()),
                         "sparsity": 1.0 - int(m.sum()) / m.numel()})
    return pd.DataFrame(rows)


def flops_per_token(model: nn.Module, masks: dict | None = None) -> dict:
    """Dense and sparse FLOPs of one token's forward pass (:data:`FLOPS_METHOD`), per part."""
    rnn, kind = _fused(model)
    masks = _check_masks(model, masks) if masks else {}
    H, L = rnn.hidden_size, rnn.num_layers

    def matrix(name):
        p = dict(model.named_parameters())[name]
        return 2 * p.numel(), 2 * (int(masks[name].sum()) if name in masks else p.numel())

    # Per layer and token, besides the matrices: the bias additions (b_ih and b_hh), then the rest of
    # PyTorch's cell. LSTM: the two products' sum 4H, sigmoids of i, f, o and tanh of g and c 5H,
    # c = f*c + i*g 3H, h = o*tanh(c) H. GRU: the r and z sums 2H, r*(W_hn h + b_hn) and its sum 2H,
    # two sigmoids and a tanh 3H, h = (1 - z)*n + z*h 4H. RNN: the sum H and the tanh H.
    biases = 2 * len(GATES[kind]) * H if rnn.bias else 0
    elementwise = biases + {"LSTM": 13 * H, "GRU": 11 * H, "RNN": 2 * H}[kind]
    parts = {}
    for layer in range(L):
        dense = sparse = elementwise
        for which in ("ih", "hh"):
            d, s = matrix(f"rnn.weight_{which}_l{layer}")
            dense, sparse = dense + d, sparse + s
        parts[f"layer {layer}"] = (dense, sparse)
    d, s = matrix("decoder.weight")
    bias = model.decoder.bias.numel() if model.decoder.bias is not None else 0
    parts["decoder"] = (d + bias, s + bias)
    return {"dense": sum(d for d, _ in parts.values()), "sparse": sum(s for _, s in parts.values()),
            "parts": {k: {"dense": d, "sparse": s} for k, (d, s) in parts.items()}, "method": FLOPS_METHOD}


class _CSRLSTM(nn.Module):
    """The masked StackedLSTM's forward with every weight matrix as a sparse CSR tensor: what
    skipping the pruned weights buys on this machine's sparse kernels."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        rnn = model.rnn
        with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state": known, measured here
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
            self.layers = [(getattr(rnn, f"weight_ih_l{k}").detach().to_sparse_csr(),
                            getattr(rnn, f"weight_hh_l{k}").detach().to_sparse_csr(),
                            getattr(rnn, f"bias_ih_l{k}").detach() + getattr(rnn, f"bias_hh_l{k}").detach())
                           for k in range(rnn.num_layers)]
            self.decoder = (model.decoder.weight.detach().to_sparse_csr(), model.decoder.bias.detach())

    def forward(self, tokens):
        T, B = tokens.shape
        x = self.model.encoder(tokens)
        for w_ih, w_hh, b in self.layers:
            H = w_hh.shape[1]
            pre = (w_ih @ x.reshape(T * B, -1).t()).t().reshape(T, B, -1) + b
            h, c, out = x.new_zeros(B, H), x.new_zeros(B, H), []
            for t in range(T):
                i, f, g, o = (pre[t] + (w_hh @ h.t()).t()).chunk(4, dim=1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                out.append(h)
            x = torch.stack(out)
        w, b = self.decoder
        return ((w @ x.reshape(T * B, -1).t()).t() + b).reshape(T, B, -1)


def inference_time(model: nn.Module, masks: dict, *, steps: int = 35, batch: int = 20, repeats: int = 20,
                   warmup: int = 3) -> dict:
    """Measured seconds per forward of ``steps`` × ``batch`` tokens (:data:`TIMING_METHOD`) for: the
    dense model of the same architecture (the masked weights refilled with nonzero values), the
    masked model (dense kernels on weights holding zeros), the torch.nn.utils.prune module (the
    mask multiplied in before every forward), and, for a StackedLSTM, sparse CSR kernels. On dense
    kernels zeros cost as much as any value: the sparse figure is what the CSR kernels make of it."""
    from lshkit.checks import check_positive_int
    from lshkit.models import StackedLSTM

    for name, value in (("steps", steps), ("batch", batch), ("repeats", repeats), ("warmup", warmup)):
        check_positive_int(name, value)
    masks = _check_masks(model, masks)
    masked = _apply(copy.deepcopy(model).cpu().eval(), masks)
    dense = copy.deepcopy(masked)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in dense.named_parameters():
            if name in masks:  # the values do not change a dense kernel's cost; no zeros among them
                p.copy_(torch.rand(p.shape, generator=generator) * 0.2 - 0.1 + 1e-3)
    variants = {"dense": dense, "masked": masked, "torch.nn.utils.prune": apply_torch_pruning(masked, masks).eval()}
    if isinstance(model, StackedLSTM):
        variants["sparse CSR"] = _CSRLSTM(masked).eval()
    tokens = torch.randint(0, masked.vocab_size, (steps, batch), generator=generator)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    seconds = {k: [] for k in variants}
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                for v in variants.values():
                    v(tokens)
            for _ in range(repeats):
                for name, v in variants.items():
                    start = time.perf_counter()
                    v(tokens)
                    seconds[name].append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    out = {name: {"seconds": statistics.median(s), "tokens_per_second": steps * batch / statistics.median(s)}
           for name, s in seconds.items()}
    return {"variants": out, "method": TIMING_METHOD.format(batch=batch, steps=steps, warmup=warmup, repeats=repeats)}


def report(model: nn.Module, masks: dict, *, measure: bool = True, **timing) -> dict:
    """(c) What a pruning paper reports of ``model``: per-matrix and per-gate sparsity
    (``sparsity``, a frame), parameters (``params_dense``: every parameter; ``params_kept``: the
    masks' kept weights and every unmasked parameter; ``params_nonzero``: the values that are not
    0), FLOPs per token (:func:`flops_per_token`) and, where ``measure``, the measured inference
    time (:func:`inference_time`, ``timing`` its keyword arguments)."""
    masks = _check_masks(model, masks)
    table = sparsity_table(model, masks)
    unique = dict(model.named_parameters())
    dense = sum(p.numel() for p in unique.values())
    kept = sum(int(masks[n].sum()) if n in masks else p.numel() for n, p in unique.items())
    nonzero = sum(int((p.detach() != 0).sum()) for p in unique.values())
    masked_total = sum(m.numel() for m in masks.values())
    out = {"sparsity": table, "params_dense": dense, "params_kept": kept, "params_nonzero": nonzero,
           "masked_sparsity": 1.0 - sum(int(m.sum()) for m in masks.values()) / masked_total,
           "flops": flops_per_token(model, masks)}
    out["flops_ratio"] = out["flops"]["sparse"] / out["flops"]["dense"]
    if measure:
        out["inference"] = inference_time(model, masks, **timing)
    return out


def export_pruned(model: nn.Module, masks: dict, out, *, meta: dict | None = None, measure: bool = True,
                  **timing) -> dict:
    """Write (a) ``masked_state.pt``, (b) ``torch_pruned_state.pt`` and (c) ``sparsity.csv`` and
    ``report.json`` into ``out``, each atomically; returns the report."""
    out = Path(out)
    masks = _check_masks(model, masks)
    save_masked(out / "masked_state.pt", model, masks, meta)
    save_torch_pruned(out / "torch_pruned_state.pt", apply_torch_pruning(model, masks), meta)
    result = report(model, masks, measure=measure, **timing)
    write_csv(out / "sparsity.csv", result["sparsity"])
    write_json(out / "report.json", {**{k: v for k, v in result.items() if k != "sparsity"}, "meta": meta or {},
                                     "files": {"masked_state.pt": "(a) state dict with the masks applied, and "
                                                                  "the masks (lshkit.prune_export.load_masked)",
                                               "torch_pruned_state.pt": "(b) torch.nn.utils.prune form "
                                                                        "(lshkit.prune_export.load_torch_pruned)"}})
    return result
