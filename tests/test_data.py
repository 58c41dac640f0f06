"""lshkit.data: corpora as Mikolov's PTB, as PyTorch's word_language_model reads it, file lookup and verification, the smoke corpus, batching."""
import hashlib
import io
import math
import os
import zipfile
from collections import Counter
from pathlib import Path

import pytest
import torch

from lshkit import data
from lshkit.data import batchify, get_batch, load_corpus, n_batches, smoke_perplexity, unigram_perplexity

REPO = Path(__file__).resolve().parent.parent
PTB_NAMES = [f"ptb.{s}.txt" for s in data.SPLITS]


def _real_ptb_dir():
    for base in (os.environ.get(data.DATA_DIR_ENV), REPO.parent / "shared" / "data", REPO / "data"):
        if base and all((Path(base) / "ptb" / f).is_file() for f in PTB_NAMES):
            return Path(base) / "ptb"
    return None


REAL_PTB = _real_ptb_dir()
needs_ptb = pytest.mark.skipif(REAL_PTB is None, reason="PTB files not found: set LSHKIT_DATA_DIR "
                               "to a directory holding ptb/ptb.{train,valid,test}.txt")

# A tiny corpus; its MD5s replace PTB's published ones so the real lookup and checks run on it.
TINY = {"train": "a b c\n b d\n", "valid": "d e\n", "test": "\n f a\n"}
TINY_VOCAB = ["a", "b", "c", "<eos>", "d", "e", "f"]
TINY_IDS = {"train": [0, 1, 2, 3, 1, 4, 3], "valid": [4, 5, 3], "test": [3, 6, 0, 3]}


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No env var, the repo's data/ moved into tmp_path, and the network unreachable."""
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(data, "REPO_DATA", tmp_path / "repo_data")

    def offline(url):
        raise AssertionError(f"test tried the network: {url}")

    monkeypatch.setattr(data, "_fetch_url", offline)
    return tmp_path


@pytest.fixture
def tiny_md5(monkeypatch):
    for split, text in TINY.items():
        monkeypatch.setitem(data.PTB_MD5, split, hashlib.md5(text.encode()).hexdigest())


def write_tiny(folder, naming="ptb.{split}.txt", texts=TINY):
    folder.mkdir(parents=True, exist_ok=True)
    for split, text in texts.items():
        (folder / naming.format(split=split)).write_text(text)
    return folder


# --- real PTB ---------------------------------------------------------------------------------

@needs_ptb
def test_ptb_counts_vocab_and_ids_match_reference_tokenisation():
    corpus = load_corpus("ptb", root=REAL_PTB.parent, download=False)
    assert len(corpus.vocab) == 10_000
    assert [len(corpus.train), len(corpus.valid), len(corpus.test)] == [929_589, 73_760, 82_430]
    word2idx = {}
    for split in data.SPLITS:
        with open(REAL_PTB / f"ptb.{split}.txt", encoding="utf-8") as f:
            ref = [word2idx.setdefault(w, len(word2idx)) for line in f for w in line.split() + ["<eos>"]]
        assert torch.equal(getattr(corpus, split), torch.tensor(ref))
    assert corpus.vocab == list(word2idx) and corpus.word2idx == word2idx
    assert corpus.vocab[:3] == ["aer", "banknote", "berlitz"]
    assert corpus.source == str(REAL_PTB.resolve())


@needs_ptb
def test_truncated_real_ptb_file_is_named_with_both_md5s(tmp_path, isolated):
    folder = tmp_path / "copy" / "ptb"
    folder.mkdir(parents=True)
    for name in PTB_NAMES:
        (folder / name).write_bytes((REAL_PTB / name).read_bytes())
    truncated = (REAL_PTB / "ptb.valid.txt").read_bytes()[:-100]
    (folder / "ptb.valid.txt").write_bytes(truncated)
    with pytest.raises(ValueError) as err:
        load_corpus("ptb", root=folder.parent, download=False)
    msg = str(err.value)
    assert str((folder / "ptb.valid.txt").resolve()) in msg
    assert data.PTB_MD5["valid"] in msg and hashlib.md5(truncated).hexdigest() in msg


# --- lookup, namings, verification ----------------------------------------------------------------

@pytest.mark.parametrize("naming", ["ptb.{split}.txt", "{split}.txt"])
@pytest.mark.parametrize("sub", ["ptb", ""])
def test_both_namings_in_subdir_or_root_and_dictionary_order(isolated, tiny_md5, naming, sub):
    folder = write_tiny(isolated / "root" / sub, naming)
    corpus = load_corpus("ptb", root=isolated / "root", download=False)
    assert corpus.vocab == TINY_VOCAB
    assert corpus.word2idx == {w: i for i, w in enumerate(TINY_VOCAB)}
    for split in data.SPLITS:
        assert getattr(corpus, split).tolist() == TINY_IDS[split]
        assert getattr(corpus, split).dtype == torch.long
    assert corpus.source == str(folder.resolve())


def test_root_beats_env_var_beats_repo_data(isolated, tiny_md5, monkeypatch):
    root, env, repo = (write_tiny(isolated / d / "ptb") for d in ("root", "env", "repo_data"))
    monkeypatch.setenv(data.DATA_DIR_ENV, str(isolated / "env"))
    assert load_corpus("ptb", root=isolated / "root").source == str(root.resolve())
    assert load_corpus("ptb").source == str(env.resolve())
    monkeypatch.delenv(data.DATA_DIR_ENV)
    assert load_corpus("ptb").source == str(repo.resolve())


def test_altered_file_is_named_with_expected_and_actual_md5(isolated, tiny_md5):
    folder = write_tiny(isolated / "root" / "ptb")
    (folder / "ptb.test.txt").write_text(TINY["test"] + "x\n")
    with pytest.raises(ValueError) as err:
        load_corpus("ptb", root=isolated / "root", download=False)
    msg = str(err.value)
    assert str((folder / "ptb.test.txt").resolve()) in msg
    assert data.PTB_MD5["test"] in msg
    assert hashlib.md5((TINY["test"] + "x\n").encode()).hexdigest() in msg


def test_missing_files_error_names_every_place_and_the_remedies(isolated, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(isolated / "env"))
    with pytest.raises(FileNotFoundError) as err:
        load_corpus("ptb", root=isolated / "root", download=False)
    msg = str(err.value)
    for base in ("root", "env", "repo_data"):
        assert f"  {isolated / base / 'ptb'}\n" in msg and f"  {isolated / base}\n" in msg
    assert "download=False" in msg and data.DATA_DIR_ENV in msg and "root=" in msg
    assert "ptb.train.txt" in msg and "train.txt" in msg


def test_failed_download_is_reported_with_the_places_looked(isolated, monkeypatch):
    def unreachable(url):
        raise OSError(f"no route to host for {url}")

    monkeypatch.setattr(data, "_fetch_url", unreachable)
    with pytest.raises(FileNotFoundError) as err:
        load_corpus("ptb", root=isolated / "root")
    msg = str(err.value)
    assert "no route to host" in msg and data.PTB_URL.format(split="train") in msg
    assert f"  {isolated / 'root'}\n" in msg and f"  {isolated / 'repo_data' / 'ptb'}\n" in msg


def test_download_verifies_and_keeps_files_in_repo_data(isolated, tiny_md5, monkeypatch):
    monkeypatch.setattr(data, "_fetch_url", lambda url: TINY[url.split(".")[-2]].encode())
    corpus = load_corpus("ptb", root=isolated / "root")
    folder = isolated / "repo_data" / "ptb"
    assert corpus.source == str(folder.resolve()) and corpus.vocab == TINY_VOCAB
    assert sorted(p.name for p in folder.iterdir()) == sorted(PTB_NAMES)


def test_corrupt_download_is_rejected_and_never_written(isolated, tiny_md5, monkeypatch):
    monkeypatch.setattr(data, "_fetch_url", lambda url: b"<html>rate limited</html>")
    with pytest.raises(FileNotFoundError, match="MD5"):
        load_corpus("ptb")
    folder = isolated / "repo_data" / "ptb"
    assert not folder.exists() or not any(folder.iterdir())


def test_registry_holds_the_published_md5s_in_poochs_form():
    assert data.registry("ptb") == {f"ptb.{s}.txt": f"md5:{data.PTB_MD5[s]}" for s in data.SPLITS}
    assert data.registry("wikitext2") == {data.WIKITEXT2_ZIP: f"md5:{data.WIKITEXT2_ZIP_MD5}"}
    with pytest.raises(ValueError, match="'smoke'.*ptb, wikitext2"):
        data.registry("smoke")


def test_download_fetches_only_what_the_cache_lacks(isolated, tiny_md5, monkeypatch):
    """A verified file already in data/<name>/ is kept (pooch's cache); only the missing ones are fetched."""
    folder = isolated / "repo_data" / "ptb"
    folder.mkdir(parents=True)
    (folder / "ptb.train.txt").write_text(TINY["train"])
    fetched = []

    def fetch(url):
        fetched.append(url)
        return TINY[url.split(".")[-2]].encode()

    monkeypatch.setattr(data, "_fetch_url", fetch)
    corpus = load_corpus("ptb")
    assert sorted(u.rsplit("/", 1)[1] for u in fetched) == ["ptb.test.txt", "ptb.valid.txt"]
    assert corpus.vocab == TINY_VOCAB and not [p for p in folder.iterdir() if p.name not in PTB_NAMES]


def test_empty_split_is_named(isolated, tiny_md5, monkeypatch):
    monkeypatch.setitem(data.PTB_MD5, "valid", hashlib.md5(b"").hexdigest())
    write_tiny(isolated / "root", texts={**TINY, "valid": ""})
    with pytest.raises(ValueError, match=r"valid split of ptb .*ptb\.valid\.txt.* is empty"):
        load_corpus("ptb", root=isolated / "root", download=False)


def test_cache_returns_independent_copies_and_notices_changed_files(isolated, tiny_md5):
    folder = write_tiny(isolated / "root" / "ptb")
    first = load_corpus("ptb", root=isolated / "root", download=False)
    hits = data._load_files.cache_info().hits
    first.train[:] = 0
    first.vocab.append("junk")
    second = load_corpus("ptb", root=isolated / "root", download=False)
    assert data._load_files.cache_info().hits == hits + 1
    assert second.train.tolist() == TINY_IDS["train"] and second.vocab == TINY_VOCAB
    (folder / "ptb.train.txt").write_text(TINY["train"] + "b\n")
    with pytest.raises(ValueError, match="MD5"):
        load_corpus("ptb", root=isolated / "root", download=False)


# --- WikiText-2 --------------------------------------------------------------------------------

def tiny_zip(path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for split, text in TINY.items():
            archive.writestr(data.WIKITEXT2_MEMBER.format(split=split), text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return hashlib.md5(buffer.getvalue()).hexdigest()


@pytest.mark.parametrize("naming", ["wiki.{split}.tokens", "{split}.txt"])
def test_wikitext2_plain_files_checked_by_token_counts(isolated, monkeypatch, naming):
    folder = write_tiny(isolated / "root" / "wikitext2" / "wikitext-2", naming)
    with pytest.raises(ValueError) as err:
        load_corpus("wikitext2", root=isolated / "root", download=False)
    msg = str(err.value)
    assert str((folder / naming.format(split="train")).resolve()) in msg and "2,088,628" in msg
    for split in data.SPLITS:
        monkeypatch.setitem(data.WIKITEXT2_TOKENS, split, len(TINY_IDS[split]))
    corpus = load_corpus("wikitext2", root=isolated / "root", download=False)
    assert corpus.vocab == TINY_VOCAB and corpus.test.tolist() == TINY_IDS["test"]


def test_wikitext2_zip_is_read_after_its_md5_check(isolated, monkeypatch):
    zip_path = isolated / "root" / data.WIKITEXT2_ZIP
    tiny_zip(zip_path)
    with pytest.raises(ValueError, match=data.WIKITEXT2_ZIP_MD5):
        load_corpus("wikitext2", root=isolated / "root", download=False)
    monkeypatch.setattr(data, "WIKITEXT2_ZIP_MD5", tiny_zip(zip_path))
    corpus = load_corpus("wikitext2", root=isolated / "root", download=False)
    assert corpus.vocab == TINY_VOCAB and corpus.source == str(zip_path.resolve())
    assert [getattr(corpus, s).tolist() for s in data.SPLITS] == [TINY_IDS[s] for s in data.SPLITS]


def test_wikitext2_download_falls_back_to_the_next_mirror(isolated, monkeypatch):
    payload_path = isolated / "payload.zip"
    monkeypatch.setattr(data, "WIKITEXT2_ZIP_MD5", tiny_zip(payload_path))
    tried = []

    def mirror(url):
        tried.append(url)
        if url == data.WIKITEXT2_URLS[0]:
            raise OSError("HTTP Error 403: Forbidden")
        return payload_path.read_bytes()

    monkeypatch.setattr(data, "_fetch_url", mirror)
    corpus = load_corpus("wikitext2")
    assert tried == list(data.WIKITEXT2_URLS)
    assert corpus.source == str((isolated / "repo_data" / "wikitext2" / data.WIKITEXT2_ZIP).resolve())


def test_unknown_corpus_names_the_valid_ones():
    with pytest.raises(ValueError, match="'ptb2'.*ptb, wikitext2, smoke"):
        load_corpus("ptb2")


# --- smoke corpus ------------------------------------------------------------------------------

def test_smoke_is_deterministic_under_seed_and_differs_across_seeds():
    a = load_corpus("smoke", seed=3)
    data._smoke_lines.cache_clear()
    data._smoke_corpus.cache_clear()
    b = load_corpus("smoke", seed=3)
    assert a.vocab == b.vocab and all(torch.equal(getattr(a, s), getattr(b, s)) for s in data.SPLITS)
    c = load_corpus("smoke", seed=4)
    assert not torch.equal(a.train[:1000], c.train[:1000])
    assert a.source == "generated"


def test_smoke_sizes_vocab_and_sentence_ends():
    corpus = load_corpus("smoke")
    assert 50 <= len(corpus.vocab) <= 100
    eos = corpus.word2idx["<eos>"]
    for split, target in data.SMOKE_TOKENS.items():
        ids = getattr(corpus, split)
        assert target <= len(ids) < target + 40
        assert ids[0] != eos and ids[-1] == eos
        assert not ((ids[1:] == eos) & (ids[:-1] == eos)).any()  # no empty sentence
    assert set(corpus.valid.tolist()) | set(corpus.test.tolist()) <= set(corpus.train.tolist())


def test_smoke_has_structure_a_model_can_learn():
    corpus = load_corpus("smoke")
    train = corpus.train.tolist()
    unigram = Counter(train)
    bigram = Counter(zip(train[:-1], train[1:]))
    n = len(train)
    h_unigram = -sum(c / n * math.log(c / n) for c in unigram.values())
    h_bigram = -sum(c / (n - 1) * math.log(c / unigram[a]) for (a, _), c in bigram.items())
    assert h_bigram < h_unigram - 1.0
    floor = smoke_perplexity()
    assert 1.0 < floor["test"] < 0.3 * unigram_perplexity(corpus, "test")


def test_smoke_sentence_probabilities_are_the_grammars():
    """3-word sentences are DET NOUN VI: their probability in closed form, and their share."""
    g = data._SmokeGrammar
    zipf = {cat: {w: (1 / (r + 1)) / sum(1 / (k + 1) for k in range(len(ws))) for r, w in enumerate(ws)}
            for cat, ws in [("det_sg", g.DET["sg"][0]), ("det_pl", g.DET["pl"][0]),
                            ("n_sg", g.NOUN["sg"][0]), ("n_pl", g.NOUN["pl"][0]),
                            ("vi_sg", g.VI["sg"][0]), ("vi_pl", g.VI["pl"][0])]}
    bare = (1 - g.P_ADJ) * (1 - g.P_RELATIVE[0]) * (1 - g.P_COMPLEMENT[0]) * (1 - g.P_VT) * (1 - g.P_ADV)
    grammar = g(seed=11)
    n_sentences, short = 20_000, 0
    for _ in range(n_sentences):
        words, nats = grammar.sentence()
        if len(words) == 3:
            short += 1
            num = "sg" if words[1] in zipf["n_sg"] else "pl"
            p = 0.5 * zipf[f"det_{num}"][words[0]] * zipf[f"n_{num}"][words[1]] * zipf[f"vi_{num}"][words[2]]
            assert math.exp(-nats) == pytest.approx(p * bare, rel=1e-9)
    sd = math.sqrt(bare * (1 - bare) / n_sentences)
    assert abs(short / n_sentences - bare) < 5 * sd


def test_unigram_perplexity_known_value(isolated, tiny_md5):
    write_tiny(isolated / "root")
    corpus = load_corpus("ptb", root=isolated / "root", download=False)
    # add-one train counts: a 2, b 3, c 2, <eos> 3, d 2, e 1, f 1 (14); test is <eos> f a <eos>
    expected = math.exp(-(2 * math.log(3 / 14) + math.log(1 / 14) + math.log(2 / 14)) / 4)
    assert unigram_perplexity(corpus, "test") == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="'dev'"):
        unigram_perplexity(corpus, "dev")


# --- batching -------------------------------------------------------------------------------

def test_batchify_one_stream_per_column_tail_trimmed():
    source = batchify(torch.arange(23), 4)
    assert source.shape == (5, 4) and source.is_contiguous()
    for j in range(4):
        assert source[:, j].tolist() == list(range(5 * j, 5 * j + 5))


def test_get_batch_shift_and_short_last_batch():
    torch.manual_seed(0)
    source = batchify(torch.randint(0, 50, (103,)), 5)  # [20, 5]
    xs, ys = [], []
    for i in range(0, source.size(0) - 1, 7):
        x, y = get_batch(source, i, 7)
        assert torch.equal(x[1:], y[:-1])
        xs.append(x)
        ys.append(y)
    assert [len(x) for x in xs] == [7, 7, 5] and n_batches(source, 7) == 3
    assert torch.equal(torch.cat(xs), source[:-1]) and torch.equal(torch.cat(ys), source[1:])


@pytest.mark.parametrize("call, match", [
    (lambda: batchify(torch.arange(3), 4), "batch_size 4 is larger than the data \\(3 tokens\\)"),
    (lambda: batchify(torch.arange(3), 0), "batch_size must be a positive int, got 0"),
    (lambda: batchify(torch.arange(0), 1), "empty"),
    (lambda: batchify(torch.zeros(2, 2, dtype=torch.long), 1), "1-D .*\\(2, 2\\)"),
    (lambda: get_batch(batchify(torch.arange(10), 2), 0, 0), "bptt must be an int in \\[1, 4\\].*got 0"),
    (lambda: get_batch(batchify(torch.arange(10), 2), 0, 5), "bptt must be an int in \\[1, 4\\].*got 5"),
    (lambda: get_batch(batchify(torch.arange(10), 2), 4, 2), "i must be an int in \\[0, 3\\].*got 4"),
    (lambda: get_batch(batchify(torch.arange(2), 2), 0, 1), "source has 1 row"),
    (lambda: n_batches(batchify(torch.arange(10), 2), 9), "bptt must be an int in \\[1, 4\\], got 9"),
])
def test_bad_batching_input_is_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_load_available_falls_back_in_order(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "REPO_DATA", tmp_path / "repo-data")
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "nothing-here"))
    monkeypatch.setattr(data, "_fetch_url", lambda url: (_ for _ in ()).throw(OSError("offline")))
    corpus = data.load_available("ptb", "smoke", seed=3)
    assert corpus.name == "smoke" and corpus.source == "generated"
    with pytest.raises(FileNotFoundError, match="ptb"):
        data.load_available("ptb")
    with pytest.raises(ValueError, match="valid"):
        data.load_available("ptb", "imagenet")
