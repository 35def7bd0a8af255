"""`ulmfit inspect --parent RUN`: how a run's tokenizer reads the data (token lengths, unknown tokens, words cut
into many pieces) and the classifier settings that suit it."""

from __future__ import annotations

from collections import Counter

import numpy as np


def token_report(tok, texts: list[str], max_len: int, word_level: bool, windows: tuple | None = None) -> dict:
    """Token lengths of the documents (no <bos>), the share cut by `max_len`, the <unk> rate, and the share of
    words (by occurrence) split into 4+ pieces: many such words mean the tokenizer was built for other text.
    With `windows` (window, stride, ends) for a Hugging Face checkpoint: the windows a document is read in under
    --long windows, and the most `max_len` allows (the cap on a document's cost)."""
    from ..data.tokenizer import encode_docs, unk_id

    docs = encode_docs(tok, texts, bos=False)
    lens = np.array([len(d) for d in docs])
    total = int(lens.sum())
    unk_token = unk_id(tok)
    unk = 0 if unk_token is None else sum(int((d == unk_token).sum()) for d in docs)
    rep = {
        "documents": len(docs),
        "tokens": total,
        **{f"p{q}": int(np.percentile(lens, q)) for q in (50, 90, 99)},
        "max": int(lens.max()),
        "over_max_len": round(float((lens > max_len).mean()), 4),
        "max_len": max_len,
        "unk_rate": round(unk / max(1, total), 4),
        "split_4plus": None,
    }
    if windows is not None:
        from ..models.windows import n_windows

        window, stride, ends = windows
        n = n_windows(np.minimum(lens, max(max_len - ends, 0)), window, stride, ends)
        rep["windows"] = {
            "window": window, "stride": stride, **{f"p{q}": int(np.percentile(n, q)) for q in (50, 90, 99)},
            "max": int(n.max()), "cap": int(n_windows(max(max_len - ends, 0), window, stride, ends)),
        }  # fmt: skip
    if unk and not word_level:  # which characters the tokenizer cannot read, most frequent first
        chars = Counter(c for t in texts for c in set(t) if not c.isspace())
        cands = list(chars)
        encs = tok.encode_batch_fast(cands, add_special_tokens=False)
        unknown = [c for c, e in zip(cands, encs) if unk_token in e.ids]
        rep["unknown_chars"] = sorted(unknown, key=lambda c: -chars[c])[:10]
    if not word_level:  # a word vocabulary (import-fastai) never splits a word
        words = Counter(w for t in texts for w in t.split())
        uniq = list(words)
        pieces = [len(e.ids) for e in tok.encode_batch_fast(uniq, add_special_tokens=False)]
        many = sum(words[w] for w, n in zip(uniq, pieces) if n >= 4)
        rep["split_4plus"] = round(many / max(1, sum(words.values())), 4)
    return rep


def suggest(stats: dict, cfg) -> dict:
    """Settings for `finetune-clf` on these documents.

    max_len: a whole number of bptt windows holding 99% of the documents whole (p99). bptt: the parent's (the
    language model learned with that window; the classifier only uses it to chunk documents). bs: the run's,
    halved until bs x min(p99, max_len) fits in what that bs holds with documents of 8 bptt windows, the
    classifier's memory growing with the tokens of a batch (BPT3C keeps every chunk's activations).
    """
    from ..hf_facts import positions

    bptt = cfg.bptt
    max_len = max(bptt, -(-stats["p99"] // bptt) * bptt)
    if cfg.hf_config is not None:  # a checkpoint reads at most its position embeddings' worth
        max_len = min(max_len, positions(cfg.hf_config) or max_len)
    tokens = min(stats["p99"], max(cfg.max_len, max_len))
    bs = cfg.bs
    while bs > 4 and bs * tokens > cfg.bs * 8 * bptt:
        bs //= 2
    return {"bptt": bptt, "max_len": max_len, "bs": bs}


def with_parent(parent, files: list, reps: list[dict], max_len: int | None, reporter) -> dict:
    from ..config import WORD_TOKENIZER, resolve
    from ..data.tokenizer import load_tokenizer

    pc = parent.config
    cfg = resolve("finetune-clf", pc.get("preset", "small"), {"max_len": max_len}, pc)
    if parent.stage == "finetune-clf" and max_len is None:  # how that classifier reads
        given = {k: pc[k] for k in ("max_len", "bs", "long", "window", "stride", "window_pool") if k in pc}
        cfg = resolve("finetune-clf", pc.get("preset", "small"), given, pc)
    tok = load_tokenizer(parent.file("tokenizer"))
    word_level = pc.get("tokenizer") == WORD_TOKENIZER
    for fd, rep in zip(files, reps):
        if reporter:
            reporter.info(f"tokenizing {fd.source}")
        texts = [t for t in fd.texts if t.strip()]
        rep["tokens"] = token_report(tok, texts, cfg.max_len, word_level, _windows_of(cfg))
    return {"parent": str(parent.path), "suggest": suggest(reps[0]["tokens"], cfg)}


def _windows_of(cfg) -> tuple | None:
    """(window, stride, ends) of a Hugging Face checkpoint's classifier (its --long windows settings), else None."""
    if cfg.backbone != "hf":
        return None
    from ..hf_facts import window_ends

    return cfg.window, cfg.stride, window_ends(cfg.hf_config)
