"""The LSH loop (paper §3.2, Fig. 2, Algorithm 1), read top to bottom beside the paper.

1. The dense reference (the configuration's model without pruning) is trained for
   ``final_epochs`` with its LS after every epoch. ``reference="same_epoch"`` (the default)
   compares each candidate with the reference's LS at the candidate's epoch (the authors' code,
   which made the paper's numbers); ``reference="final"`` with its LS at its final epoch (the
   paper's "pre-trained dense network" read literally). The raw L2 distance under both readings
   is recorded for every candidate-epoch.
2. A pool of ``n`` candidates (``sampler.initial(n)``; ``n`` = 24/30/40 for the budgets
   low/moderate/high, Table 2).
3. Each round every candidate trains ``E`` more epochs (its death-rate schedule spans the full
   run of ``final_epochs``), with its LS after every epoch on K samples of T validation steps.
4. Ranking ``ls``: the reference and every ranked candidate's LS history are embedded together
   (:func:`lshkit.embedding.ls_space`) and each candidate's current point is scored by its
   distance to the reference's. Ranking ``loss`` (the paper's baseline): the validation loss, and
   no LS is computed. Ranking ``gap``: the smallest spectral gap of the candidate's layers
   (:func:`lshkit.graph.gap_summary`; a larger gap ranks nearer, arXiv 2403.11100's predictor of
   preserved accuracy), no LS either; the weakest layer decides, as a network is an expander only
   if every layer is.
5. Of the ``p`` ranked, ``keep_count(p)`` are kept (:mod:`lshkit.search.schedule`) and ``p // 4``
   new ones come from ``sampler.propose(p // 4, history)``, conditioned on the survivors. The
   newcomers start from epoch 0 and train ``E`` epochs in the round they join.
6. Rounds repeat until at most ``final_survivors`` remain (or for ``rounds`` rounds).
7. The survivors train to ``final_epochs``; the lowest final validation perplexity is selected.

``sampler="grid"`` removes only (the paper's GS, Tables 2 and 4). ``"hyperband"``/``"bohb"`` run
one Hyperband iteration's successive-halving brackets instead of the rounds
(:func:`~lshkit.search.schedule.scaled_brackets`), ranking each rung as LSH does; the brackets'
winners are ranked together once more for the final training.

A candidate whose loss or LS is not finite is recorded as failed, counts among the removed, and
the search goes on. Every decision is a function of the units' results, the seed and the sampler,
so the same loop runs on a :class:`~lshkit.search.runner.TrainingRunner` (real training, resumable,
shared by processes) or on an atlas (:mod:`lshkit.atlas.replay`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lshkit import embedding as emb
from lshkit.env import auto_progress
from lshkit.graph import gap_score
from lshkit.search.samplers import Observation, make_sampler
from lshkit.search import records
from lshkit.search.config import SearchConfig
from lshkit.search.runner import Runner, TrainingRunner
from lshkit.search.schedule import keep_count, scaled_brackets
from lshkit.train import perplexity

__all__ = ["LSHSearch", "Candidate"]


@dataclass
class Candidate:
    """A candidate as the loop follows it: its configuration, the round it joined, its records."""

    cid: int
    params: dict
    joined: int
    records: list = field(default_factory=list)
    status: str = "live"  # live, removed, failed
    score: float = math.nan
    score_epoch: int = 0
    final: dict | None = None

    @property
    def epoch(self) -> int:
        return self.records[-1]["epoch"] if self.records else 0


class LSHSearch:
    """One LSH search (module docstring) carried out by ``runner``.

    ``out``: the results directory (None: write nothing). ``runner``: a
    :class:`~lshkit.search.runner.Runner`; by default a
    :class:`~lshkit.search.runner.TrainingRunner` built from the keyword arguments (``storage``,
    ``device``, ``checkpoints``, ``reference_dir``, ``stale_after``, ``poll``). ``progress``:
    tqdm bars (None: off under CI, on in a terminal or Jupyter). ``write_outputs``: write the
    record files into ``out`` (the extra local worker processes of
    :func:`~lshkit.search.parallel.run_search` do not).
    """

    def __init__(self, config: SearchConfig, out=None, *, runner: Runner | None = None,
                 progress: bool | None = None, write_outputs: bool = True, **training):
        if not isinstance(config, SearchConfig):
            raise TypeError(f"config must be a SearchConfig; got {type(config).__name__}")
        self.progress = auto_progress() if progress is None else bool(progress)
        if runner is None:
            if out is None:
                raise ValueError("a search that trains needs out, its results directory")
            runner = TrainingRunner(config, out, progress=self.progress, **training)
        self.runner = runner
        self.config = runner.config
        self.space = self.config.search_space()
        self.sampler = make_sampler(self.config.sampler, self.space, self.config.seed)
        self.out = None if out is None else Path(out)
        self.write_outputs = write_outputs and out is not None

    # ----------------------------------------------------------- the loop
    def run(self) -> dict:
        """Run (or resume, or join) the search; returns the summary (also ``out/summary.json``)."""
        cfg = self.config
        start = time.perf_counter()
        self.runner.open(self)
        self.candidates: list[Candidate] = []
        self.events: list[dict] = []
        self.rounds: list[dict] = []
        self.reference = None
        if cfg.ranking == "ls":
            self.reference = self.runner.run(
                {"reference": {"kind": "reference"}}, "dense reference")["reference"]
            ls = np.array([r["ls"] for r in self.reference["records"]])
            self.ref_ls_epochs, self.ref_ls_final = ls, ls[-1]
        if cfg.sampler in ("hyperband", "bohb"):
            survivors = self._select_hyperband()
        else:
            survivors = self._select_lsh()
        self._final(survivors, self.rounds[-1]["round"] + 1 if self.rounds else 0)
        self.runner.finish(self)
        self.summary = records.summary(self, time.perf_counter() - start)
        if self.write_outputs:
            records.write(self, self.out)
        return self.summary

    def _new(self, params: dict, joined: int) -> Candidate:
        c = Candidate(len(self.candidates), params, joined)
        self.candidates.append(c)
        self.events.append(dict(round=joined, candidate=c.cid, event="added", score=math.nan, epoch=0))
        return c

    def _note_recovery(self, c: Candidate, r: int, result: dict) -> None:
        """A unit whose checkpoint was lost or damaged was recomputed: say so in the event log."""
        if result.get("recovered"):
            self.events.append(dict(round=r, candidate=c.cid, event="recomputed", score=math.nan,
                                    epoch=c.epoch, reason=result["recovered"]))

    def _history(self) -> list[Observation]:
        return [Observation(c.params, c.score if c.status != "failed" else math.inf,
                            c.status == "live", c.score_epoch) for c in self.candidates]

    def _train(self, pool: list[Candidate], epochs: dict[int, int], r: int, **labels) -> list[Candidate]:
        """Train every candidate of ``pool`` to ``epochs[cid]``; returns those that did not fail."""
        specs = {f"c{c.cid}-r{r}": {"kind": "train", "candidate": c.cid, "params": c.params,
                                    "from": c.epoch, "epochs": epochs[c.cid],
                                    "ls": self.config.ranking == "ls", "gap": self.config.ranking == "gap"}
                 for c in pool if epochs[c.cid] > c.epoch}
        results = self.runner.run(specs, f"round {r}") if specs else {}
        live = []
        for c in pool:
            result = results.get(f"c{c.cid}-r{r}", {"status": "ok", "records": []})
            self._note_recovery(c, r, result)
            for rec in result["records"]:
                c.records.append(dict(rec, phase="selection", round=r, **labels))
            if result["status"] == "failed":
                c.status = "failed"
                c.score, c.score_epoch = math.inf, c.epoch
                self.events.append(dict(round=r, candidate=c.cid, event="failed", score=math.inf,
                                        epoch=c.epoch, reason=result["reason"]))
            else:
                live.append(c)
        return live

    def _rank(self, live: list[Candidate], r: int) -> tuple[list[Candidate], tuple]:
        """Score ``live`` (sets ``score``; annotates round ``r``'s records); returns it nearest
        first, and the reference's 2-D point (NaN unless ranked by LS)."""
        if not live:
            return [], (math.nan, math.nan)
        if self.config.ranking == "loss":
            scores = {c.cid: c.records[-1]["valid_loss"] for c in live}
            ref_xy = (math.nan, math.nan)
        elif self.config.ranking == "gap":
            scores = {c.cid: gap_score(c.records[-1]["gap_min"]) for c in live}
            ref_xy = (math.nan, math.nan)
        else:
            scores, ref_xy = self._rank_ls(live, r)
        for c in live:
            c.score, c.score_epoch = float(scores[c.cid]), c.epoch
            if c.records and c.records[-1]["round"] == r:
                c.records[-1]["score"] = c.score
        by_id = {c.cid: c for c in live}
        return [by_id[cid] for cid in emb.rank_candidates(scores)], ref_xy

    def _rank_ls(self, live, r):
        cfg = self.config
        histories = {c.cid: np.array([rec["ls"] for rec in c.records]) for c in live}
        reference = self.ref_ls_epochs if cfg.reference == "same_epoch" else self.ref_ls_final
        space = emb.ls_space(reference, histories, embedding=cfg.embedding, random_state=cfg.seed,
                             fit=cfg.embedding_fit)
        scores = space.distances(cfg.distance)
        # 2-D coordinates for the records, comparable across candidates: the ranking's own where
        # it is one joint 2-D fit, else one joint PCA of the same set.
        joint_2d = cfg.embedding in ("pca", "tsne") and cfg.embedding_fit == "joint"
        plot = space if joint_2d else emb.ls_space(reference, histories, embedding="pca",
                                                   random_state=cfg.seed, fit="joint")
        for c in live:
            points, xy = space.points[c.cid], plot.points[c.cid]
            for j, rec in enumerate(c.records):
                if rec["round"] != r:
                    continue
                rec["distance"] = emb.point_distance(points[j], space.reference_point(c.cid, j),
                                                     cfg.distance)
                rec["embed_x"], rec["embed_y"] = float(xy[j][0]), float(xy[j][1])
                rec["same_epoch_distance"] = float(np.linalg.norm(
                    np.asarray(rec["ls"]) - self.ref_ls_epochs[rec["epoch"]]))
                rec["final_distance"] = float(np.linalg.norm(np.asarray(rec["ls"]) - self.ref_ls_final))
        return scores, (float(plot.reference[-1][0]), float(plot.reference[-1][1]))

    def _decide(self, pool: list[Candidate], epochs: dict, r: int, keep_n: int,
                labels=None) -> list[Candidate]:
        """One removal step: train ``pool`` to ``epochs``, rank it, keep the ``keep_n`` nearest
        and record the round. Returns the kept, by id."""
        labels = labels or {}
        ranked, ref_xy = self._rank(self._train(pool, epochs, r, **labels), r)
        keep = ranked[:keep_n]
        for c in ranked[keep_n:]:
            c.status = "removed"
        for c in ranked:
            self.events.append(dict(round=r, candidate=c.cid, score=c.score, epoch=c.epoch,
                                    event="survived" if c.status == "live" else "removed", **labels))
        self.rounds.append(dict(round=r, **labels, pool=len(pool), ranked=len(ranked), kept=len(keep),
                                removed=len(pool) - len(keep), added=0,
                                reference_x=ref_xy[0], reference_y=ref_xy[1]))
        return sorted(keep, key=lambda c: c.cid)

    def _select_lsh(self) -> list[Candidate]:
        cfg = self.config
        pool = [self._new(p, 0) for p in self.sampler.initial(cfg.pool_size())]
        r = 0
        while pool:
            p = len(pool)
            keep_n = keep_count(p, cfg.final_survivors)
            last = keep_n <= cfg.final_survivors or (cfg.rounds is not None and r + 1 >= cfg.rounds)
            if last:
                keep_n = min(keep_n, cfg.final_survivors)
            epochs = {c.cid: (r - c.joined + 1) * cfg.epochs_per_round for c in pool}
            pool = self._decide(pool, epochs, r, keep_n)
            if last or not pool:
                break
            new = [] if cfg.sampler == "grid" else self.sampler.propose(p // 4, self._history())
            self.rounds[-1]["added"] = len(new)
            pool += [self._new(params, r + 1) for params in new]
            r += 1
        return pool

    def _select_hyperband(self) -> list[Candidate]:
        cfg = self.config
        winners, r = [], 0
        brackets = scaled_brackets(cfg.pool, cfg.epochs_per_round, cfg.eta, cfg.final_epochs)
        for b, bracket in enumerate(brackets):
            n = bracket[0][0]
            params = self.sampler.initial(n) if b == 0 else self.sampler.propose(n, self._history())
            pool = [self._new(p, r) for p in params]
            for i, (_, resource) in enumerate(bracket):
                keep_n = bracket[i + 1][0] if i + 1 < len(bracket) else len(pool)
                pool = self._decide(pool, {c.cid: resource for c in pool}, r, keep_n,
                                    dict(bracket=b, rung=i))
                r += 1
                if not pool:
                    break
            winners += pool
        # The brackets' winners all stand at max_resource: one joint ranking (no training) picks
        # the finalists.
        return self._decide(winners, {c.cid: c.epoch for c in winners}, r,
                            min(len(winners), cfg.final_survivors), dict(bracket=-1, rung=-1))

    def _final(self, survivors: list[Candidate], r: int) -> None:
        cfg = self.config
        specs = {f"c{c.cid}-final": {"kind": "final", "candidate": c.cid, "params": c.params,
                                     "from": c.epoch, "epochs": cfg.final_epochs, "ls": False}
                 for c in survivors}
        results = self.runner.run(specs, "final training")
        finalists = []
        for c in survivors:
            result = results[f"c{c.cid}-final"]
            self._note_recovery(c, r, result)
            for rec in result["records"]:
                c.records.append(dict(rec, phase="final", round=r))
            c.final = result
            if result["status"] == "failed":
                c.status = "failed"
                self.events.append(dict(round=r, candidate=c.cid, event="failed", score=math.inf,
                                        epoch=c.epoch, reason=result["reason"]))
            else:
                finalists.append(c)
        self.selected = min(finalists, key=lambda c: (c.final["valid_loss"], c.cid)) if finalists else None
        if self.selected is not None:
            c = self.selected
            self.events.append(dict(round=r, candidate=c.cid, event="selected",
                                    score=perplexity(c.final["valid_loss"]), epoch=c.epoch))

