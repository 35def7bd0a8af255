"""Subword tokenizers (Hugging Face `tokenizers`, Rust, parallel): train, save, load, batch-encode to ids.

MultiFiT (Eisenschlos et al. 2019) showed a 15k subword vocabulary works as well as fastai's 60k words and
suits any language; unigram is SentencePiece's model, BPE the alternative. The tokenizer is saved as JSON in
the run folder and reused unchanged by the later stages.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import unicodedata
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

SPECIALS = ["<unk>", "<pad>", "<bos>", "<eos>"]
UNK_ID, PAD_ID, BOS_ID, EOS_ID = range(4)  # <pad> at 1 because fastai's AWD_LSTM uses pad_token=1
ENCODE_CHUNK = 10_000  # documents per encode_batch call: bounds the memory of Encoding objects


def train_tokenizer(lines: Iterable[str], kind: str, vocab_size: int):
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
    tok.train_from_iterator(_chunks(lines, 1000), trainer)  # lists, not strings: BPE 15k on 2M words 2.9 -> 2.4 s
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
    """A run's tokenizer.json: a Hugging Face tokenizer, a fastai word vocabulary (words.WordVocab, from
    `ulmfit import-fastai`) or a Hugging Face checkpoint's tokenizer (CheckpointTokenizer, from `ulmfit import-hf`),
    all with the same interface."""
    import json

    from tokenizers import Tokenizer

    from .words import KIND, WordVocab

    text = Path(path).read_text(encoding="utf-8")
    spec = json.loads(text)
    if isinstance(spec, dict) and spec.get("kind") == KIND:
        return WordVocab.from_spec(spec, Path(path))
    if isinstance(spec, dict) and spec.get("kind") == CheckpointTokenizer.kind:
        return CheckpointTokenizer.from_spec(spec)
    return Tokenizer.from_str(text)


class CheckpointTokenizer:
    """A pretrained checkpoint's own tokenizer (its tokenizer.json, unchanged) and the ids the stages need that the
    file alone does not say: `start_id`, the token put before every document (a decoder's bos token, else its eos
    token, the separator GPT-2-style models were trained with; an encoder's [CLS]); `end_id`, put after every
    document (an encoder's [SEP]; None for a decoder); `mask_id`, an encoder's [MASK] (masked-LM fine-tuning).
    Saved as {"kind": "hf-checkpoint", "start_id": N, "end_id": N|null, "mask_id": N|null, "tokenizer": {...}}."""

    kind = "hf-checkpoint"

    def __init__(self, tok, start_id: int, end_id: int | None = None, mask_id: int | None = None):
        tok.no_padding()  # sentence-transformers' files pad every text to 128 and cut it there: the stages batch,
        tok.no_truncation()  # pad (with a mask) and cut (head and tail, --max-len) themselves
        self.tok, self.start_id, self.end_id, self.mask_id = tok, start_id, end_id, mask_id

    @classmethod
    def from_spec(cls, spec: dict) -> CheckpointTokenizer:
        import json

        from tokenizers import Tokenizer

        def opt(k):
            return None if spec.get(k) is None else int(spec[k])

        return cls(
            Tokenizer.from_str(json.dumps(spec["tokenizer"])), int(spec["start_id"]), opt("end_id"), opt("mask_id")
        )

    def to_str(self, pretty: bool = False) -> str:
        import json

        spec = {"kind": self.kind, "start_id": self.start_id, "end_id": self.end_id, "mask_id": self.mask_id,
                "tokenizer": json.loads(self.tok.to_str())}  # fmt: skip
        return json.dumps(spec, indent=2 if pretty else None, ensure_ascii=False)

    def __getattr__(self, name):  # encode_batch_fast, get_vocab_size, token_to_id, decode, ...: the tokenizer's
        if name == "tok":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.tok, name)


def unk_id(tok) -> int | None:
    """The id of the unknown token, or None when the tokenizer has none (a byte-level checkpoint's reads anything)."""
    if isinstance(tok, CheckpointTokenizer):
        unk = getattr(tok.tok.model, "unk_token", None)
        return tok.token_to_id(unk) if unk else None
    return UNK_ID


def start_id(tok) -> int:
    """The id the stages put before every document: <bos> for our tokenizers and fastai's words, the checkpoint's
    own start token for a Hugging Face checkpoint's."""
    return getattr(tok, "start_id", BOS_ID)


def end_ids(tok) -> tuple[int, ...]:
    """What the stages put after every document: an encoder checkpoint's [SEP], else nothing."""
    end = getattr(tok, "end_id", None)
    return () if end is None else (end,)


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


class StreamEncoder:
    """Encodes chunks of documents into the LM stream (each document's ids after a <bos>, one int32 array) with
    exactly the ids of `tok.encode`, through a table of the words seen so far: about twice as fast on a corpus.

    Our tokenizers' Metaspace pre-tokenizer cuts a text before every space and the model encodes each piece on
    its own, so a word's ids never depend on its neighbours. Each distinct word is encoded once by the Rust
    tokenizer (new words in batches, two threads); a chunk is then a dict lookup per word and a numpy gather.
    Texts the table cannot reproduce go to the Rust tokenizer whole: those containing '▁' or a special token's
    text. Another tokenizer (a fastai word vocabulary, or a Hugging Face one of another shape) is encoded
    directly. The table is emptied when it holds `max_words` words, so memory stays bounded on any corpus.
    """

    def __init__(self, tok, max_words: int = 500_000):
        self.tok, self.max_words = tok, max_words
        self.table = _word_table_spec(tok)
        if self.table:
            self.plain = _plain(tok) or tok  # the words are normalised already
            vocab = tok.get_vocab()
            self.starts_word = np.zeros(max(vocab.values()) + 1, dtype=bool)  # ids of tokens that begin a word
            self.starts_word[[i for t, i in vocab.items() if t.startswith("\u2581")]] = True
            self.specials = [t.content for t in tok.get_added_tokens_decoder().values()]
            self._reset()

    def _reset(self) -> None:
        self.row: dict = {None: 0}  # word (or a whole text, as a 1-tuple) -> row; None is <bos>
        self.parts, self.start, self.len = [np.array([BOS_ID], np.int32)], array("q", [0]), array("q", [1])
        self.size, self.arrays = 1, None

    def __call__(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0, np.int32)
        if not self.table:
            first, last = (start_id(self.tok),), end_ids(self.tok)
            docs = (itertools.chain(first, enc.ids, last) for enc in encodings(self.tok, texts))
            return np.fromiter(itertools.chain.from_iterable(docs), dtype=np.int32)
        words = self._words(texts)
        rows = np.fromiter(map(self.row.get, words, itertools.repeat(-1)), dtype=np.int64, count=len(words))
        miss = np.flatnonzero(rows < 0)
        if len(miss):
            missed = [words[i] for i in miss.tolist()]
            new = set(missed)
            if len(self.row) + len(new) > self.max_words:  # full: start again with this chunk's words
                self._reset()
                self._add(set(words).difference(self.row))
                rows = np.fromiter(map(self.row.__getitem__, words), dtype=np.int64, count=len(words))
            else:
                self._add(new)
                rows[miss] = np.fromiter(map(self.row.__getitem__, missed), dtype=np.int64, count=len(missed))
        if self.arrays is None:
            self.parts = [np.concatenate(self.parts)]
            self.arrays = (self.parts[0], np.array(self.start), np.array(self.len))
        flat, start, length = self.arrays
        lens = length[rows]
        ends = np.cumsum(lens)
        return flat[np.arange(ends[-1]) + np.repeat(start[rows] - (ends - lens), lens)]

    def _words(self, texts: list[str]) -> list:
        """None before each document, then its pieces (the text between spaces, as Metaspace cuts it)."""
        rust = self.tok.normalizer if self.table == "nfkc" else None
        specials, words = self.specials, []
        for raw in texts:
            words.append(None)
            t = _nfkc(raw, rust) if rust and not raw.isascii() else raw
            if not t:
                continue
            if "\u2581" in t or ("<" in t and any(s in t for s in specials)):
                words.append((raw,))  # the Rust tokenizer encodes this text whole
                continue
            # Metaspace puts '▁' before the text unless it starts with a space, then cuts before every space
            words.extend((t if t[0] == " " else " " + t).split(" ")[1:])
        return words

    def _add(self, new: set) -> None:
        """Encode the new words (and whole texts) and append their ids to the table."""
        texts = [w for w in new if type(w) is tuple]
        words = [w for w in new if type(w) is str]
        encs = self.tok.encode_batch_fast([t for (t,) in texts], add_special_tokens=False)
        self._append(texts, [np.asarray(e.ids, np.int32) for e in encs])
        groups = [words[i::64] for i in range(min(64, len(words)))]  # a few long texts: little per-call overhead
        encs = self.plain.encode_batch_fast([" ".join(g) for g in groups], add_special_tokens=False)
        for group, enc in zip(groups, encs):
            got = np.asarray(enc.ids, np.int32)
            cut = np.flatnonzero(self.starts_word[got])
            if len(cut) == len(group):  # each word's first token, and no other, begins with '▁': one slice each
                self._append(group, [got], cut)
            else:  # not seen with our tokenizers; encode word by word rather than guess
                again = self.plain.encode_batch_fast(["\u2581" + w for w in group], add_special_tokens=False)
                self._append(group, [np.asarray(e.ids, np.int32) for e in again])
        self.arrays = None

    def _append(self, keys: list, arrays: list[np.ndarray], cut: np.ndarray | None = None) -> None:
        """Rows for `keys`: one array each, or one array cut at `cut` (the start of each key's ids)."""
        if cut is None:
            sizes = np.fromiter(map(len, arrays), dtype=np.int64, count=len(arrays))
            cut = np.cumsum(sizes) - sizes
        total = sum(map(len, arrays))
        self.row.update(zip(keys, range(len(self.start), len(self.start) + len(keys))))
        self.start.extend((cut + self.size).tolist())
        self.len.extend(np.diff(cut, append=total).tolist())
        self.parts += arrays
        self.size += total


def _word_table_spec(tok) -> str | None:
    """The word table `tok` allows: "nfkc" or "plain" (its normaliser) when it cuts at spaces and encodes the pieces
    independently, as our trained tokenizers do, so that a table of words reproduces its ids; else None."""
    import json

    from tokenizers import Tokenizer

    if not isinstance(tok, Tokenizer) or tok.truncation or tok.padding:
        return None
    spec = json.loads(tok.to_str())
    model, norm = spec.get("model") or {}, spec.get("normalizer")
    meta = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
    if spec.get("pre_tokenizer") != meta or spec.get("post_processor") is not None:
        return None
    if not (model.get("type") == "Unigram" or (model.get("type") == "BPE" and model.get("dropout") is None)):
        return None
    if norm is None:
        return "plain"
    return "nfkc" if norm == {"type": "NFKC"} else None


@functools.cache
def _py_unsure():
    """Patterns for the code points whose NFKC Python's Unicode tables may not know: unassigned and surrogate ones
    up to U+1FFFF, and all above. Two patterns (in the BMP, above it), as one over all planes is slow to search."""
    import re

    unsure = [c for c in range(0x80, 0x20000) if unicodedata.category(chr(c)) in ("Cn", "Cs")] + [0x20002]
    runs, first = [(0x20000, 0x10FFFF)], unsure[0]
    for prev, c in itertools.pairwise(unsure):
        if c != prev + 1:
            runs.append((first, prev))
            first = c
    bmp = "".join(f"\\u{a:04x}-\\u{b:04x}" for a, b in runs if b <= 0xFFFF)
    above = "".join(f"\\U{max(a, 0x10000):08x}-\\U{b:08x}" for a, b in runs if b > 0xFFFF)
    return re.compile(f"[{bmp}]"), re.compile(f"[{above}]")


def _nfkc(text: str, rust) -> str:
    """NFKC by Python's `unicodedata` (20x faster than a call into Rust per text), or by the tokenizer's own
    normaliser when `text` has a character Python's Unicode version has not assigned (or beyond the SMP): by
    Unicode's stability policy, text of assigned characters normalises the same in every later version."""
    bmp, above = _py_unsure()
    if bmp.search(text) or (max(text) > "\uffff" and above.search(text)):
        return rust.normalize_str(text)
    return unicodedata.normalize("NFKC", text)


def encode_docs(tok, texts: Iterable[str], bos: bool = True) -> list[np.ndarray]:
    """One int32 array per document, each starting with <bos> (as fastai's xxbos; start_id) and ending with an
    encoder's [SEP] (end_ids) when `bos`."""
    out, first, last = [], [start_id(tok)], list(end_ids(tok))
    for chunk in _chunks(texts, ENCODE_CHUNK):
        for enc in encodings(tok, chunk):
            ids = np.asarray(enc.ids, dtype=np.int32)
            out.append(np.concatenate([first, ids, last]).astype(np.int32) if bos else ids)
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
