"""Token ids on disk: a corpus is tokenized once, into a memory-mapped file that later runs reuse.

The cache key is made of what decides the ids: the inputs' content fingerprints and text columns, the tokenizer
file's SHA-256 and the token budget. An entry is two files, `KEY.ids` (the raw ids, uint16 when the vocabulary
fits, else uint32) and `KEY.json` (length, dtype, SHA-256 of the ids); the JSON is written last, by rename, so an
entry without it was never finished. Before reuse the ids file's size and hash are checked: a truncated or
corrupted entry is reported and rebuilt, never trained on.

Where: `--cache-dir`, else $ULMFIT_CACHE, else $XDG_CACHE_HOME/ulmfit (~/.cache/ulmfit).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from ..errors import InputError, written
from .readers import Corpus
from .tokenizer import ENCODE_CHUNK, StreamEncoder, file_sha256, start_id

FORMAT = "ulmfit-ids/1"


def cache_root(cache_dir: Path | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("ULMFIT_CACHE"):
        return Path(os.environ["ULMFIT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ulmfit"


def cache_key(corpora: list[Corpus], tokenizer_sha256: str, max_tokens: int) -> str:
    spec = {
        "format": FORMAT,
        "inputs": [[c.fingerprint, c.text_col] for c in corpora],
        "tokenizer": tokenizer_sha256,
        "max_tokens": max_tokens,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:40]


def _problem(ids: Path, meta: dict) -> str | None:
    """Why the entry cannot be used, or None."""
    if meta.get("format") != FORMAT:
        return f"format {meta.get('format')!r}, not {FORMAT}"
    if not ids.exists():
        return "its ids file is missing"
    size = ids.stat().st_size
    expected = meta["n_tokens"] * np.dtype(meta["dtype"]).itemsize
    if size != expected:
        return f"{size} bytes instead of {expected}"
    if file_sha256(ids) != meta["sha256"]:
        return "its content does not match its checksum"
    return None


def token_ids(
    corpora: list[Corpus], tok, tokenizer_sha256: str, max_tokens: int, root: Path, reporter, what: str = "corpus"
) -> np.ndarray:
    """The LM token stream of `corpora` (every document after a <bos>), as a read-only memory map."""
    key = cache_key(corpora, tokenizer_sha256, max_tokens)
    folder = root / "tokens"
    ids_path, meta_path = folder / f"{key}.ids", folder / f"{key}.json"
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            problem = _problem(ids_path, meta)
        except (OSError, ValueError, KeyError, TypeError) as e:
            meta, problem = {}, f"unreadable metadata ({e})"
        if problem is None:
            said = {str(c.source) for c in corpora if c.source.undecodable is not None}  # by source_of, on opening
            for entry in meta.get("inputs", []):  # said again on every run that uses the text, not just the first
                if entry.get("replaced_chars") and entry["source"] not in said:
                    reporter.warn(
                        f"{entry['source']}: {entry['replaced_chars']} undecodable byte(s) replaced with U+FFFD"
                    )
            reporter.info(
                f"{what}: reusing {meta['n_tokens']:,} token ids tokenized {meta['created']} (cache {ids_path})"
            )
            return np.memmap(ids_path, dtype=meta["dtype"], mode="r")
        reporter.warn(f"{what}: token cache {ids_path} is damaged ({problem}); tokenizing again")
        meta_path.unlink(missing_ok=True)
    meta = _build(corpora, tok, tokenizer_sha256, max_tokens, folder, key, reporter, what)
    return np.memmap(ids_path, dtype=meta["dtype"], mode="r")


def _build(corpora, tok, tokenizer_sha256, max_tokens, folder: Path, key: str, reporter, what: str) -> dict:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{folder}: cannot create the token cache ({e.strerror}); set --cache-dir") from None
    dtype = np.dtype(np.uint16 if tok.get_vocab_size() <= np.iinfo(np.uint16).max + 1 else np.uint32)
    tmp, meta_tmp = folder / f".{key}.ids.{os.getpid()}.tmp", folder / f".{key}.json.{os.getpid()}.tmp"
    h, n, docs, t0 = hashlib.sha256(), 0, 0, time.time()
    encode, first = StreamEncoder(tok), start_id(tok)
    reporter.info(f"{what}: tokenizing into {folder / key}.ids")
    try:
        with written(tmp), open(tmp, "wb") as f:
            for corpus in corpora:
                for batch in corpus.batches(ENCODE_CHUNK):
                    arr = encode(batch)
                    if max_tokens:
                        arr = arr[: max_tokens - n]
                    b = arr.astype(dtype).tobytes()
                    f.write(b)
                    h.update(b)
                    n, docs = n + len(arr), docs + int((arr == first).sum())
                    if max_tokens and n >= max_tokens:
                        break
                if corpus.replaced_chars and corpus.source.undecodable is None:  # else said on opening it
                    reporter.warn(f"{corpus.source}: {corpus.replaced_chars} undecodable byte(s) replaced with U+FFFD")
                if max_tokens and n >= max_tokens:
                    break
        meta = {
            "format": FORMAT,
            "n_tokens": n,
            "documents": docs,
            "dtype": dtype.name,
            "sha256": h.hexdigest(),
            "tokenizer_sha256": tokenizer_sha256,
            "inputs": [
                {
                    "source": str(c.source),
                    "fingerprint": c.fingerprint,
                    "text_col": c.text_col,
                    "replaced_chars": c.replaced_chars,
                }
                for c in corpora
            ],
            "max_tokens": max_tokens,
            "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        with written(meta_tmp):
            os.replace(tmp, folder / f"{key}.ids")
            meta_tmp.write_text(json.dumps(meta, indent=1), encoding="utf-8")
            os.replace(meta_tmp, folder / f"{key}.json")  # last: the entry exists only once both files are whole
    except BaseException:
        tmp.unlink(missing_ok=True)
        meta_tmp.unlink(missing_ok=True)
        raise
    secs = time.time() - t0
    reporter.info(f"{what}: {n:,} tokens from {docs:,} documents in {secs:.1f} s ({n / max(secs, 1e-9):,.0f} tokens/s)")
    return meta
