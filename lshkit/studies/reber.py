"""The Reber grammar and the embedded Reber grammar as generated, seeded data sets.

The Reber grammar (Reber 1967; the benchmark of Hochreiter & Schmidhuber 1997, LSTM §5.1)
is a finite automaton whose every transition emits one of the seven symbols B T P S X V E::

    start -B-> n1    n1: T->n2, P->n3    n2: S->n2, X->n4    n3: T->n3, V->n5
    n4: X->n3, S->n6    n5: P->n4, V->n6    n6: E->end

Each node with two exits takes either with probability 1/2. The automaton is deterministic
(the exits of a node emit different symbols), so a prefix fixes the node and hence the set
of symbols that may legally come next.

The embedded Reber grammar wraps one Reber string: B, then T or P, a whole Reber string
(with its own B ... E), then the *same* T or P again, then E. Predicting that second T/P
needs the symbol seen at step 2, on average ten steps earlier: the long-range dependency.

**The task** is the standard one (Hochreiter & Schmidhuber 1997; the summary of the
Reber-grammar sparsity study, Darji, arXiv 2407.20601, does not spell its task out, so we use
this one): the network reads a string one symbol at a time (one-hot inputs) and, after
every symbol but the final E, predicts the *set* of legal next symbols as seven independent
yes/no outputs (a multi-hot target, trained with binary cross-entropy). A step is correct when all seven thresholded outputs (sigmoid > 0.5)
match the legal set; a string is correct when every one of its steps is; accuracy is the
fraction of correct strings. The legal set and not the symbol actually drawn is the target
because the draw is a coin flip no model can predict; the set is what the grammar fixes.

**String lengths** (symbols, B and E included): the number of loop passes is geometric, so
lengths are unbounded with an exponential tail. :func:`length_distribution` gives the exact
distribution from the automaton. Reber: minimum 5 (BTXSE), mean 8.0 (exact, see
:func:`mean_length`), P(length > 20) = 0.008. Embedded Reber: minimum 9, mean 12.0,
P(length > 20) = 0.028. ``max_length`` draws from the distribution conditioned on length <= max_length (rejection
sampling), documented in each data set's ``max_length``; the default keeps it unbounded.
Strings are drawn independently, so short strings recur and a test set shares strings with
a training set: the task is to learn the grammar, and the longer strings that carry the
errors are mostly new.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from lshkit.checks import check_choice, check_positive_int

__all__ = ["SYMBOLS", "GRAMMARS", "Grammar", "grammar", "is_legal", "legal_next", "length_distribution",
           "mean_length", "length_summary", "ReberData", "make_reber"]

SYMBOLS = "BTPSXVE"
GRAMMARS = ("reber", "embedded")

# The Reber automaton as node -> ((symbol, next node), ...); "end" has no exit.
_REBER = {"start": (("B", "n1"),), "n1": (("T", "n2"), ("P", "n3")), "n2": (("S", "n2"), ("X", "n4")),
          "n3": (("T", "n3"), ("V", "n5")), "n4": (("X", "n3"), ("S", "n6")), "n5": (("P", "n4"), ("V", "n6")),
          "n6": (("E", "end"),), "end": ()}


def _embedded_table() -> dict:
    """The embedded grammar: a copy of the Reber automaton behind T and one behind P, each
    closed by its own T or P: the copy remembers the branch taken."""
    table = {"start": (("B", "e1"),), "e1": (("T", "T:start"), ("P", "P:start")),
             "last": (("E", "end"),), "end": ()}
    for branch in "TP":
        for node, exits in _REBER.items():
            if node == "end":
                table[f"{branch}:end"] = ((branch, "last"),)
            else:
                table[f"{branch}:{node}"] = tuple((s, f"{branch}:{nxt}") for s, nxt in exits)
    return table


@dataclass(frozen=True)
class Grammar:
    """A deterministic finite automaton as arrays (node 0 is the start, ``end`` the last).

    ``next_node[q, c]`` and ``symbol[q, c]`` give exit ``c`` of node ``q`` (a one-exit node
    repeats its exit in both columns, so a fair coin picks among exits uniformly);
    ``legal[q]`` is the multi-hot set of symbols node ``q`` may emit."""
    name: str
    nodes: tuple
    next_node: np.ndarray
    symbol: np.ndarray
    legal: np.ndarray
    end: int

    @classmethod
    def from_table(cls, name: str, table: dict) -> "Grammar":
        nodes = tuple(table)
        index = {q: i for i, q in enumerate(nodes)}
        n = len(nodes)
        next_node = np.zeros((n, 2), dtype=np.int64)
        symbol = np.zeros((n, 2), dtype=np.int64)
        legal = np.zeros((n, len(SYMBOLS)), dtype=bool)
        for q, exits in table.items():
            if not exits:  # the end node loops on itself and emits nothing
                next_node[index[q]] = index[q]
                symbol[index[q]] = -1
                continue
            for c in range(2):
                s, nxt = exits[c % len(exits)]
                next_node[index[q], c] = index[nxt]
                symbol[index[q], c] = SYMBOLS.index(s)
                legal[index[q], SYMBOLS.index(s)] = True
        return cls(name, nodes, next_node, symbol, legal, index["end"])

    def walk(self, string: str) -> list[int] | None:
        """The nodes visited reading ``string`` (start first), or None where it leaves the grammar."""
        q, path = 0, [0]
        for ch in string:
            if ch not in SYMBOLS:
                return None
            hits = np.flatnonzero(self.symbol[q] == SYMBOLS.index(ch))
            if hits.size == 0:
                return None
            q = int(self.next_node[q, hits[0]])
            path.append(q)
        return path


_GRAMMARS = {"reber": Grammar.from_table("reber", _REBER), "embedded": Grammar.from_table("embedded", _embedded_table())}


def grammar(name: str) -> Grammar:
    check_choice("grammar", name, GRAMMARS)
    return _GRAMMARS[name]


def is_legal(string: str, name: str = "reber") -> bool:
    """Whether ``string`` is a complete sentence of the grammar (B ... E, every transition legal)."""
    path = grammar(name).walk(string)
    return path is not None and path[-1] == grammar(name).end


def legal_next(prefix: str, name: str = "reber") -> str:
    """The symbols that may follow ``prefix`` (in ``SYMBOLS`` order); ValueError off the grammar."""
    g = grammar(name)
    path = g.walk(prefix)
    if path is None:
        raise ValueError(f"prefix={prefix!r} is not a prefix of a {name} string")
    return "".join(s for s, ok in zip(SYMBOLS, g.legal[path[-1]]) if ok)


def _transition_matrix(g: Grammar) -> np.ndarray:
    """P[q, r]: probability that one emitted symbol takes node q to node r (end absorbing)."""
    n = len(g.nodes)
    P = np.zeros((n, n))
    np.add.at(P, (np.repeat(np.arange(n), 2), g.next_node.reshape(-1)), 0.5)
    return P


def length_distribution(name: str = "reber", max_length: int = 60) -> np.ndarray:
    """Exact P(string length = L) for L = 0..max_length (lengths count B and E).

    Power iteration of the automaton's Markov chain: the probability of reaching ``end``
    at exactly step L. The tail beyond ``max_length`` is ``1 - sum``."""
    check_positive_int("max_length", max_length)
    g = grammar(name)
    P = _transition_matrix(g)
    dist = np.zeros(len(g.nodes))
    dist[0] = 1.0
    out = np.zeros(max_length + 1)
    for L in range(1, max_length + 1):
        before = dist[g.end]
        dist = dist @ P
        out[L] = dist[g.end] - before
    return out


def mean_length(name: str = "reber") -> float:
    """Exact mean string length: expected steps to absorption, ``(I - Q)^-1 1`` from the start."""
    g = grammar(name)
    P = _transition_matrix(g)
    keep = [q for q in range(len(g.nodes)) if q != g.end]
    Q = P[np.ix_(keep, keep)]
    steps = np.linalg.solve(np.eye(len(keep)) - Q, np.ones(len(keep)))
    return float(steps[keep.index(0)])


def _draw(g: Grammar, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n strings at once: every walker takes one coin flip per step until all reach ``end``.
    Returns symbols [n, L], nodes after each symbol [n, L] (padded past the end) and lengths."""
    q = np.zeros(n, dtype=np.int64)
    symbols, nodes = [], []
    lengths = np.zeros(n, dtype=np.int64)
    while not np.all(q == g.end):
        c = rng.integers(0, 2, size=n)
        active = q != g.end
        symbols.append(np.where(active, g.symbol[q, c], -1))
        q = g.next_node[q, c]
        nodes.append(q)
        lengths += active
    return np.stack(symbols, 1), np.stack(nodes, 1), lengths


@dataclass
class ReberData:
    """Strings of one grammar with their per-step inputs and legal-next targets.

    ``inputs [T, N, 7]``: one-hot symbols 1..L-1 of each string (all but the final E), zero-padded;
    ``targets [T, N, 7]``: the legal next symbols after each input; ``mask [T, N]``: real steps;
    ``lengths [N]``: string lengths (steps = length - 1). ``T`` is the longest string's steps."""
    grammar: str
    strings: list
    inputs: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor
    lengths: torch.Tensor
    seed: int
    max_length: int | None = None
    kind: str = field(default="multilabel", init=False)

    def __len__(self) -> int:
        return len(self.strings)

    def subset(self, index) -> "ReberData":
        """The strings at ``index`` (a 1-D tensor or array), trimmed to their longest."""
        index = torch.as_tensor(np.asarray(index), dtype=torch.long)
        steps = int((self.lengths[index] - 1).max()) if len(index) else 0
        return ReberData(self.grammar, [self.strings[i] for i in index.tolist()], self.inputs[:steps, index],
                         self.targets[:steps, index], self.mask[:steps, index], self.lengths[index], self.seed,
                         self.max_length)


def make_reber(n: int, grammar_name: str = "reber", *, seed: int = 0, max_length: int | None = None) -> ReberData:
    """``n`` strings drawn from the grammar with a private generator seeded by ``seed`` (the
    same arguments give the same data on every machine), as a :class:`ReberData`."""
    check_positive_int("n", n)
    check_choice("grammar", grammar_name, GRAMMARS)
    if seed is None or isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} is not valid; it must be a non-negative integer")
    g = grammar(grammar_name)
    if max_length is not None:
        check_positive_int("max_length", max_length)
        shortest = int(np.flatnonzero(length_distribution(grammar_name, max_length))[:1].sum())
        if shortest == 0:
            raise ValueError(f"max_length={max_length} is not valid; the shortest {grammar_name} "
                             f"string is longer (see length_distribution)")
    rng = np.random.default_rng(seed)
    rows = []  # (symbols, nodes) per kept string
    while len(rows) < n:
        sym, nodes, lengths = _draw(g, n - len(rows), rng)
        for i in np.flatnonzero(lengths <= (max_length or lengths.max())):
            rows.append((sym[i, :lengths[i]], nodes[i, :lengths[i]]))
    lengths = np.array([len(s) for s, _ in rows])
    steps = int(lengths.max()) - 1
    eye = np.eye(len(SYMBOLS), dtype=np.float32)
    inputs = np.zeros((steps, n, len(SYMBOLS)), dtype=np.float32)
    targets = np.zeros((steps, n, len(SYMBOLS)), dtype=np.float32)
    mask = np.zeros((steps, n), dtype=bool)
    for i, (s, q) in enumerate(rows):
        k = len(s) - 1
        inputs[:k, i] = eye[s[:-1]]
        targets[:k, i] = g.legal[q[:-1]]  # after symbol t the automaton sits at q[t]
        mask[:k, i] = True
    strings = ["".join(SYMBOLS[c] for c in s) for s, _ in rows]
    return ReberData(grammar_name, strings, torch.from_numpy(inputs), torch.from_numpy(targets),
                     torch.from_numpy(mask), torch.from_numpy(lengths), seed, max_length)


def length_summary(name: str = "reber") -> str:
    """A grammar's string lengths in one line: the exact mean, the shortest and P(length > 20)."""
    dist = length_distribution(name, 200)
    return (f"{name}: string length mean {mean_length(name):.1f}, min {np.flatnonzero(dist)[0]}, "
            f"P(length > 20) = {1 - dist[:21].sum():.3f}")
