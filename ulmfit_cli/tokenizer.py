"""Subword tokenizers (Hugging Face `tokenizers`, Rust, parallel): train, save, load, batch-encode to ids.

MultiFiT (Eisenschlos et al. 2019) showed a 15k subword vocabulary works as well as fastai's 60k words and
suits any language; unigram is SentencePiece's model, BPE the alternative. The tokenizer is saved as JSON in
the run folder and reused unchanged by the later stages.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

SPECIALS = ["<unk>", "<pad>", "<bos>", "<eos>"]
UNK_ID, PAD_ID, BOS_ID, EOS_ID = range(4)  # <pad> at 1 because fastai's AWD_LSTM uses pad_token=1
ENCODE_CHUNK = 10_000  # documents per encode_batch call: bounds the memory of Encoding objects


def train_tokenizer(lines: Iterable[str], kind: str, vocab_size: int, n_lines: int | None = None):
    """Train a unigram or BPE tokenizer (NFKC, SentencePiece-style '▁' word boundaries) on `lines`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if kind == "unigram":
        tok = Tokenizer(models.Unigram())
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size, special_tokens=SPECIALS, unk_token="<unk>", show_progress=False
        )
    else:
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False)
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(lines, trainer, length=n_lines)
    if kind == "unigram":
        tok = _round_scores(tok)
    ids = [tok.token_to_id(s) for s in SPECIALS]
    if ids != list(range(len(SPECIALS))):  # the model's pad id depends on this; fail loudly, never silently
        raise RuntimeError(f"special tokens landed at ids {ids}, expected 0..3")
    return tok


def _round_scores(tok):
    """Make the unigram trainer's output more repeatable. Its log-probabilities differ run to run in the last bits
    (its float sums are not ordered) and pieces of equal score come out in hash order, which changes ids and
    a few segmentations, and so the metrics of a seeded run. Scores rounded to 1e-8 and ties ordered by piece
    remove most of that; the characters the trainer appends at the end with made-up, evenly spaced scores still
    come out in hash order, so unigram runs are not bit-repeatable: BPE (deterministic) is the default."""
    import json

    from tokenizers import Tokenizer

    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    rest = sorted(([p, round(s, 8)] for p, s in vocab[len(SPECIALS) :]), key=lambda ps: (-ps[1], ps[0]))
    spec["model"]["vocab"] = vocab[: len(SPECIALS)] + rest
    return Tokenizer.from_str(json.dumps(spec))


def load_tokenizer(path: Path):
    """A run's tokenizer.json: a Hugging Face tokenizer, or a fastai word vocabulary (words.WordVocab, from
    `ulmfit import-fastai`) with the same interface."""
    import json

    from tokenizers import Tokenizer

    from .words import KIND, WordVocab

    text = Path(path).read_text(encoding="utf-8")
    spec = json.loads(text)
    if isinstance(spec, dict) and spec.get("kind") == KIND:
        return WordVocab.from_spec(spec, Path(path))
    return Tokenizer.from_str(text)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _chunks(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(texts)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


_PLAIN: dict[int, tuple] = {}  # id(tokenizer) -> (tokenizer, its copy without the NFKC normaliser)


def _plain(tok):
    """`tok` without its NFKC normaliser, or None when it has another (or is not a Hugging Face tokenizer)."""
    from tokenizers import Tokenizer, normalizers

    if not isinstance(tok, Tokenizer) or not isinstance(tok.normalizer, normalizers.NFKC):
        return None
    hit = _PLAIN.get(id(tok))
    if hit is None or hit[0] is not tok:
        plain = Tokenizer.from_str(tok.to_str())
        plain.normalizer = None
        _PLAIN[id(tok)] = hit = (tok, plain)
    return hit[1]


def encodings(tok, texts: list[str]) -> list:
    """`tok.encode_batch_fast(texts)`, with the ASCII texts encoded by a copy of `tok` without its NFKC
    normaliser: NFKC leaves ASCII unchanged, so the ids are the same, and encoding them is about 15% faster."""
    plain = _plain(tok)
    if plain is None:
        return tok.encode_batch_fast(texts, add_special_tokens=False)
    simple = [t.isascii() for t in texts]
    if all(simple):
        return plain.encode_batch_fast(texts, add_special_tokens=False)
    out = [None] * len(texts)
    for model, keep in ((plain, True), (tok, False)):
        idx = [i for i, s in enumerate(simple) if s is keep]
        for i, enc in zip(idx, model.encode_batch_fast([texts[i] for i in idx], add_special_tokens=False)):
            out[i] = enc
    return out


def encode_flat(tok, texts: list[str]) -> np.ndarray:
    """The LM stream of `texts`: each document's ids after a <bos>, in one int32 array (no per-document arrays)."""
    docs = (itertools.chain((BOS_ID,), enc.ids) for enc in encodings(tok, texts))
    return np.fromiter(itertools.chain.from_iterable(docs), dtype=np.int32)


def encode_docs(tok, texts: Iterable[str], bos: bool = True) -> list[np.ndarray]:
    """One int32 array per document, each starting with <bos> (as fastai's xxbos) when `bos`."""
    out = []
    for chunk in _chunks(texts, ENCODE_CHUNK):
        for enc in encodings(tok, chunk):
            ids = np.asarray(enc.ids, dtype=np.int32)
            out.append(np.concatenate([[BOS_ID], ids]).astype(np.int32) if bos else ids)
    return out


def encode_stream(tok, texts: Iterable[str], max_tokens: int = 0) -> np.ndarray:
    """The LM's token stream: every document's ids, each after a <bos>, concatenated (fastai LMDataLoader).

    Encodes chunk by chunk and stops as soon as `max_tokens` (0 = all) are there, so a huge corpus with a small
    budget is not tokenized whole.
    """
    parts, n = [], 0
    for chunk in _chunks(texts, ENCODE_CHUNK):
        for arr in encode_docs(tok, chunk):
            parts.append(arr)
            n += len(arr)
        if max_tokens and n >= max_tokens:
            break
    stream = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
    return stream[:max_tokens] if max_tokens else stream
