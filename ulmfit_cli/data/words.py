"""fastai's word tokenization and vocabulary, for models imported from fastai (`ulmfit import-fastai`).

fastai's pretrained AWD-LSTM (WT103) was trained on spaCy word tokens after fastai's rules (fix_html,
replace_rep, replace_wrep, spec_add_spaces, rm_useless_spaces, replace_all_caps, replace_maj, lowercase; then
replace_space), numericalized by a list of words. A run holding such a model keeps that list in tokenizer.json
as `{"kind": "fastai-words", "lang": "en", "itos": [...]}`; `WordVocab` gives it the duck-typed interface of a
Hugging Face `Tokenizer` that the stages use (encode_batch_fast(...)[i].ids, get_vocab_size, token_to_id, save),
running fastai's own tokenizer code, so ids are the ones fastai's `TextDataLoaders` would give.
"""

from __future__ import annotations

import json
import pickle
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..config import WORD_TOKENIZER as KIND
from ..errors import InputError, RunFolderError

# fastai's first four special tokens sit where ours do (tokenizer.SPECIALS: unk, pad, bos, eos at 0..3); the
# model's pad id (1) and the <bos> the stages put before every document (2) depend on it.
FASTAI_SPECIALS = ["xxunk", "xxpad", "xxbos", "xxeos"]
FAKE = "xxfake"  # fastai's make_vocab pads the list to a multiple of 8 with these; never produced by encoding
MIN_FREQ, MAX_VOCAB = 3, 60_000  # fastai's Numericalize defaults for a target corpus


@dataclass(frozen=True)
class WordEncoding:
    ids: list[int]
    tokens: list[str]


class WordVocab:
    """A fastai word vocabulary (`itos`) and fastai's tokenizer for `lang`, behind the `Tokenizer` calls we use."""

    kind = KIND

    def __init__(self, itos: list[str], lang: str = "en"):
        self.itos, self.lang = itos, lang
        # fastai Numericalize: o2i skips 'xxfake' and a later duplicate wins; unknown words map to xxunk (0)
        self.o2i = {w: i for i, w in enumerate(itos) if w != FAKE}
        self._rules = None  # fastai's TokenizeWithRules(SpacyTokenizer(lang)), built on first use (spaCy: ~1 s)

    def __getstate__(self) -> dict:  # for worker processes: each builds its own spaCy pipeline
        return {**self.__dict__, "_rules": None}

    def tokenize(self, texts: Iterable[str]) -> Iterator[list[str]]:
        """fastai's tokens of each text (what tokenize_df / TextDataLoaders give), without the leading xxbos
        that fastai's `lowercase` rule adds: the stages put <bos> (the same id, 2) before every document."""
        if self._rules is None:
            from fastai.text.core import SpacyTokenizer, TokenizeWithRules

            self._rules = TokenizeWithRules(SpacyTokenizer(self.lang))  # fastai's default pre- and post-rules
        for toks in self._rules(texts):  # lazy all the way (fastcore maps, spaCy's pipe): a corpus streams
            toks = list(toks)
            yield toks[1:] if toks and toks[0] == FASTAI_SPECIALS[2] else toks

    def encode_batch_fast(self, texts: list[str], add_special_tokens: bool = False) -> list[WordEncoding]:
        return [WordEncoding([self.o2i.get(t, 0) for t in toks], toks) for toks in self.tokenize(texts)]

    encode_batch = encode_batch_fast

    def encode(self, text: str, add_special_tokens: bool = False) -> WordEncoding:
        return self.encode_batch_fast([text])[0]

    def get_vocab_size(self) -> int:
        return len(self.itos)

    def token_to_id(self, token: str) -> int | None:
        return self.o2i.get(token)

    def id_to_token(self, i: int) -> str | None:
        return self.itos[i] if 0 <= i < len(self.itos) else None

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"kind": KIND, "lang": self.lang, "itos": self.itos}, f, ensure_ascii=False)
            f.write("\n")

    @classmethod
    def from_spec(cls, spec: dict, where: Path) -> WordVocab:
        itos = spec.get("itos")
        if not _is_vocab(itos) or not isinstance(spec.get("lang", "en"), str):
            raise RunFolderError(f"{where}: a {KIND} tokenizer without a valid word list; the run folder is damaged")
        return cls(itos, spec.get("lang", "en"))

    def target_vocab(self, texts: Iterable[str]) -> WordVocab:
        """A vocabulary for a target corpus as fastai builds one (Numericalize.setups -> make_vocab): words seen
        at least MIN_FREQ times, the MAX_VOCAB most frequent, fastai's special tokens first."""
        from fastai.text.data import make_vocab

        count = Counter(t for toks in self.tokenize(texts) for t in toks)
        return WordVocab(list(make_vocab(count, min_freq=MIN_FREQ, max_vocab=MAX_VOCAB)), self.lang)


def _is_vocab(obj) -> bool:
    return (
        isinstance(obj, list)
        and len(obj) >= len(FASTAI_SPECIALS)
        and all(type(w) is str for w in obj)
        and obj[: len(FASTAI_SPECIALS)] == FASTAI_SPECIALS
    )


class _Refused(pickle.UnpicklingError):
    pass


class _NoObjects(pickle.Unpickler):
    """Unpickles plain data only (lists, strings, numbers, dicts): any class or function is refused before it is
    looked up, so a vocabulary file cannot run code (a pickle runs code only through find_class)."""

    def find_class(self, module: str, name: str):
        raise _Refused(f"it references {module}.{name}")


# what unpickling arbitrary bytes raises (besides _Refused); RecursionError: deeply nested lists
_BAD_PICKLE = (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError,
               OverflowError, RecursionError)  # fmt: skip


def read_vocab_pickle(path: Path) -> list[str]:
    """fastai's pickled vocabulary (itos_wt103.pkl, `pickle.dump(dls.vocab)`): a list of str, read without
    executing anything."""
    try:
        with open(path, "rb") as f:
            obj = _NoObjects(f).load()
    except _Refused as e:
        raise InputError(
            f"{path}: refusing to unpickle ({e}); a fastai vocabulary is a plain pickled list of words"
        ) from None
    except _BAD_PICKLE as e:
        raise InputError(f"{path}: not a pickled word list ({type(e).__name__}: {e})") from None
    if not isinstance(obj, list) or not all(type(w) is str for w in obj):
        raise InputError(f"{path}: holds a {type(obj).__name__}, not a list of words (str); not a fastai vocabulary")
    if obj[: len(FASTAI_SPECIALS)] != FASTAI_SPECIALS:
        raise InputError(
            f"{path}: the vocabulary starts with {obj[:4]!r}, not fastai's {FASTAI_SPECIALS!r}; not a fastai "
            "AWD-LSTM vocabulary"
        )
    return obj
