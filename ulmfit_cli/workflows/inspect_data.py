"""`ulmfit inspect`: what a practitioner should know about their data before training, in seconds, without a model.

Rows, blank texts, exact and near-exact duplicates (case, whitespace and punctuation ignored), rows shared
between files (train/test leakage), the labels (distribution, labels found in one file only, multi-label or
numeric look, classes too small to validate) and, with a parent run, how its tokenizer reads the text. Every
problem found becomes a verdict: what it is and what to do. Nothing here trains or writes anything.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..config import RunConfig
from ..data.batches import held_out
from ..data.readers import Source, read_raw
from ..training.contrastive import few  # whether finetune-clf's few-labels recipe runs

IMBALANCE = 5.0  # largest class / smallest class above which inspect suggests --class-weights and --metric
MIN_CLASS = 10  # a 10% validation split of a class this small expects one example or none
NUMERIC_CLASSES = 20  # more distinct numbers than this (or any fraction) look like a regression target
DELIMS = (" ", ",", ";", "|")  # tried, in order, when a string label column may hold label sets
EXAMPLES = 3
_PUNCT = re.compile(r"[^\w\s]|_")
# _PUNCT as a str.translate table for ASCII text: 2.2x faster than _PUNCT.sub
_ASCII_PUNCT = {c: " " for c in range(128) if _PUNCT.match(chr(c))}


def near_key(text: str) -> str:
    """The text with case, punctuation and runs of whitespace ignored: equal keys are near-exact duplicates."""
    low = text.lower()
    return " ".join((low.translate(_ASCII_PUNCT) if low.isascii() else _PUNCT.sub(" ", low)).split())


def _clip(text: str, n: int = 70) -> str:
    one = " ".join(text.split())
    return one if len(one) <= n else one[: n - 1] + "…"


@dataclass
class FileData:
    source: str
    texts: list[str]
    labels: list | None  # raw cells, None when the file has no label column

    @cached_property
    def keys(self) -> list[str]:
        """`near_key` of every text, computed once (the duplicate and the leakage checks both need them)."""
        return [near_key(t) for t in self.texts]


def read(sources: list[Source], text_col: str, label_col: str, explicit_label: bool) -> list[FileData]:
    out = []
    for src in sources:
        texts, labels, _, _ = read_raw(src, text_col, label_col, need_label=explicit_label)
        out.append(FileData(str(src), texts, labels))
    return out


# ---- one file ----------------------------------------------------------------------------------------------


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def _number(v) -> float | None:
    if isinstance(v, bool) or isinstance(v, list):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def label_kind(values: list, delim: str | None) -> tuple[str, str | None]:
    """("multi-label" | "numeric" | "single-label", delimiter) of the non-missing label cells of a file."""
    if any(isinstance(v, list) for v in values):
        return "multi-label", None
    if delim is not None:
        return "multi-label", delim
    nums = [_number(v) for v in values]
    if values and all(x is not None for x in nums):
        if len(set(nums)) > NUMERIC_CLASSES or any(x != int(x) for x in nums):
            return "numeric", None
        return "single-label", None
    alone = {str(v).strip() for v in values}
    for d in DELIMS:
        split = [str(v).strip() for v in values if d in str(v).strip()]
        if len(split) < max(2, len(values) // 100):
            continue
        parts = {p for s in split for p in s.split(d) if p}
        if len(parts & alone) * 4 >= len(parts):  # many pieces are labels on their own elsewhere: sets of labels
            return "multi-label", d
    return "single-label", None


def label_sets(values: list, kind: str, delim: str | None) -> list[list[str]]:
    """Each cell as the list of labels it holds (one for single-label and numeric cells)."""
    if kind != "multi-label":
        return [[str(v)] for v in values]
    out = []
    for v in values:
        items = v if isinstance(v, list) else str(v).split(delim)
        out.append(sorted({str(x).strip() for x in items if x is not None and str(x).strip()}))
    return out


def _labels_of(rows: list[int], label_of: dict) -> set[str]:
    return {repr(label_of[i]) for i in rows if not _missing(label_of[i])}


def _shown(label) -> str:
    return "" if _missing(label) else " ".join(label)


def file_report(fd: FileData, delim: str | None) -> dict:
    rows = len(fd.texts)
    blank = [i for i, t in enumerate(fd.texts) if not t.strip()]
    kept = [i for i, t in enumerate(fd.texts) if t.strip()]
    exact, near, first_of = 0, 0, {}
    exact_seen: set[str] = set()
    examples = []
    groups: dict[str, list[int]] = defaultdict(list)
    for i in kept:
        key = fd.keys[i]
        groups[key].append(i)
        if fd.texts[i] in exact_seen:
            exact += 1
        elif key in first_of:
            near += 1
        else:
            first_of[key] = i
            exact_seen.add(fd.texts[i])
            continue
        exact_seen.add(fd.texts[i])
        if len(examples) < EXAMPLES:
            examples.append({"text": _clip(fd.texts[i]), "rows": [first_of[key] + 1, i + 1]})
    rep = {
        "source": fd.source,
        "rows": rows,
        "blank": len(blank),
        "blank_rows": [i + 1 for i in blank[:EXAMPLES]],
        "exact_duplicates": exact,
        "near_duplicates": near,
        "duplicate_examples": examples,
    }
    if fd.labels is None:
        return {**rep, "labels": None}
    missing = [i for i in kept if _missing(fd.labels[i])]
    values = [fd.labels[i] for i in kept if not _missing(fd.labels[i])]
    kind, d = label_kind(values, delim)
    sets = label_sets(values, kind, d)
    counts = Counter(c for s in sets for c in s)
    lab = {"kind": kind, "delimiter": d, "missing": len(missing), "missing_rows": [i + 1 for i in missing[:EXAMPLES]]}
    if kind == "numeric":
        x = np.array([_number(v) for v in values])
        lab.update(min=float(x.min()), mean=float(x.mean()), max=float(x.max()), distinct=len(set(x.tolist())))
    else:
        lab.update(classes=len(counts), counts=dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))))
        if kind == "multi-label":
            lab["labels_per_row"] = round(sum(map(len, sets)) / max(1, len(sets)), 3)
    label_of = {i: fd.labels[i] for i in kept}  # compared as label sets: 'grain trade' is 'trade grain'
    label_of = {i: v if _missing(v) else tuple(label_sets([v], kind, d)[0]) for i, v in label_of.items()}
    conflicting = [
        g
        for g in groups.values()
        if len(g) > 1 and len({repr(label_of[i]) for i in g if not _missing(label_of[i])}) > 1
    ]
    lab["conflicting_duplicates"] = len(conflicting)
    lab["conflict_examples"] = [
        {
            "text": _clip(fd.texts[g[0]]),
            "rows": [i + 1 for i in g[:4]],
            "labels": [" ".join(label_of[i] or ()) for i in g[:4]],
        }
        for g in conflicting[:EXAMPLES]
    ]
    return {**rep, "labels": lab}


# ---- between files -----------------------------------------------------------------------------------------


def shared(a: FileData, b: FileData) -> dict:
    """Rows of `b` whose text (near-exactly) is also in `a`: leakage when `a` trains and `b` tests."""
    where: dict[str, int] = {}
    for i, t in enumerate(a.texts):
        if t.strip():
            where.setdefault(a.keys[i], i)
    exact_a = {t for t in a.texts if t.strip()}
    n = exact = 0
    examples = []
    for j, t in enumerate(b.texts):
        if not t.strip():
            continue
        i = where.get(b.keys[j])
        if i is None:
            continue
        n += 1
        exact += t in exact_a
        if len(examples) < EXAMPLES:
            examples.append({"text": _clip(t), "row_a": i + 1, "row_b": j + 1})
    return {"a": a.source, "b": b.source, "shared_rows": n, "exact": exact, "examples": examples}


def label_gaps(first: dict, other: dict) -> dict:
    """Labels of `other` never seen in `first` (the training file), and the other way round."""
    la, lb = first["labels"], other["labels"]
    if not la or not lb or "counts" not in la or "counts" not in lb:
        return {}
    a, b = set(la["counts"]), set(lb["counts"])
    return {"only_in_b": sorted(b - a), "only_in_a": sorted(a - b)}


# ---- verdicts ----------------------------------------------------------------------------------------------


def verdicts(report: dict) -> list[dict]:
    out = []

    def say(kind: str, msg: str) -> None:
        out.append({"kind": kind, "message": msg})

    files = report["files"]
    for f in files:
        s = f["source"]
        if f.get("undecodable_bytes"):
            say(
                "encoding",
                f"{s}: {f['undecodable_bytes']} byte(s) are not UTF-8 (the first on line "
                f"{f['undecodable_first_line']}); give the file's encoding with --encoding (e.g. latin-1), or "
                "convert it to UTF-8",
            )
        if f["blank"]:
            say(
                "blank",
                f"{s}: {f['blank']} blank text(s) (first at row {f['blank_rows'][0]}); they are skipped, drop them",
            )
        dup = f["exact_duplicates"] + f["near_duplicates"]
        if dup:
            say(
                "duplicates",
                f"{s}: {f['exact_duplicates']} exact and {f['near_duplicates']} near-exact duplicate text(s); "
                "drop the repeats (they weigh those texts more, and can land on both sides of --valid-pct's split)",
            )
        lab = f["labels"]
        if lab is None:
            continue
        if lab["missing"]:
            say(
                "missing_labels",
                f"{s}: {lab['missing']} row(s) with text but no label (first at row {lab['missing_rows'][0]}); "
                "fill or drop them (finetune-clf refuses them)",
            )
        if lab["conflicting_duplicates"]:
            say(
                "conflicting_labels",
                f"{s}: {lab['conflicting_duplicates']} duplicated text(s) carry different labels; "
                "decide on one label each",
            )
        if lab["kind"] == "numeric":
            say("numeric", f"{s}: the labels are numbers ({lab['distinct']} distinct); train with --regression")
        elif lab["kind"] == "multi-label" and lab["delimiter"] is not None and not report["label_delim"]:
            say(
                "multi_label",
                f"{s}: labels look like sets split by {lab['delimiter']!r}; train with --label-delim "
                f"{lab['delimiter']!r} (else each combination is its own class)",
            )
    first = files[0]["labels"]
    if first and "counts" in first and len(first["counts"]) > 1:
        most, least = max(first["counts"].values()), min(first["counts"].values())
        if most > IMBALANCE * least:
            say(
                "imbalanced",
                f"{files[0]['source']}: the largest class has {most / least:.1f}x the examples of the smallest "
                f"({most} vs {least}); train with --class-weights balanced and choose epochs with --metric macro_f1 "
                "(the config and tracking guide has what they change)",
            )
    if first and first.get("kind") == "single-label" and first.get("counts"):
        total, classes = sum(first["counts"].values()), len(first["counts"])
        if few(first["counts"].values()):
            held = held_out(total, RunConfig.valid_pct)
            say(
                "few_labels",
                f"{files[0]['source']}: {total} labelled rows over {classes} classes ({total / classes:.0f} a "
                "class on average): a few-shot task. "
                f"The default 10% validation share ({held} rows) is too few to choose an epoch by, so the last is "
                "kept; train on a schedule of steps (--min-steps) rather than epochs, and from a pretrained "
                "checkpoint with the contrastive step (--contrastive-steps) and a linear head fitted after it "
                "(--head auto); the 'Few labels' guide has what to expect at each size",
            )
    if first and "counts" in first:
        small = [c for c, n in first["counts"].items() if n < MIN_CLASS]
        if small:
            say(
                "small_classes",
                f"{files[0]['source']}: {len(small)} class(es) with fewer than {MIN_CLASS} examples "
                f"({', '.join(small[:5])}{', ...' if len(small) > 5 else ''}): too few to validate; "
                "get more examples, merge them, or give --valid with examples of each",
            )
    for p in report["pairs"]:
        if p["shared_rows"]:
            say(
                "shared_rows",
                f"{p['b']}: {p['shared_rows']} row(s) also in {p['a']} ({p['exact']} exact); "
                f"remove them from one file, or the scores on {p['b']} are optimistic",
            )
        gaps = p.get("labels", {})
        if gaps.get("only_in_b"):
            say(
                "unseen_labels",
                f"{p['b']}: label(s) {', '.join(gaps['only_in_b'][:5])} never in {p['a']}; a classifier trained "
                "on it cannot predict them (evaluate refuses them): add training examples or drop those rows",
            )
    for f in files:
        t = f.get("tokens")
        if not t:
            continue
        s = f["source"]
        if t["unk_rate"] > 0.005:
            say(
                "unknown_tokens",
                f"{s}: {t['unk_rate']:.1%} of tokens are unknown to the parent's tokenizer"
                + (f" (characters {' '.join(t['unknown_chars'])})" if t.get("unknown_chars") else "")
                + "; it was trained on other text: normalise those characters, or pretrain on text like this",
            )
        if t["split_4plus"] is not None and t["split_4plus"] > 0.10:
            say(
                "split_words",
                f"{s}: {t['split_4plus']:.0%} of words are cut into 4+ pieces; the tokenizer does not fit this "
                "domain: pretrain on text closer to it (or with a larger --vocab-size)",
            )
        if t["over_max_len"] > 0.05:
            say(
                "long_documents",
                f"{s}: {t['over_max_len']:.0%} of documents are longer than --max-len {t['max_len']} and will be "
                f"cut; --max-len {report['suggest']['max_len']} keeps 99% whole (slower per batch)",
            )
    return out


def inspect(
    sources: list[Source],
    *,
    text_col: str = "text",
    label_col: str = "label",
    explicit_label: bool = False,
    label_delim: str | None = None,
    parent=None,
    max_len: int | None = None,
    reporter=None,
) -> dict:
    """The whole report (see the module docstring); `parent` is an opened run folder or None."""
    files = []
    for src in sources:
        if reporter:
            reporter.info(f"reading {src}")
        files += read([src], text_col, label_col, explicit_label)
    counted = {str(s): s.undecodable for s in sources if s.undecodable is not None}
    reps = [file_report(fd, label_delim) for fd in files]
    for rep in reps:  # what data.source_of counted when the command opened the file
        n, line = counted.get(rep["source"], (0, 0))
        rep["undecodable_bytes"], rep["undecodable_first_line"] = n, line or None
    pairs = []
    for i in range(len(files)):
        for j in range(i + 1, len(files)):
            pairs.append({**shared(files[i], files[j]), "labels": label_gaps(reps[i], reps[j])})
    report = {
        "files": reps,
        "pairs": pairs,
        "shared_rows": sum(p["shared_rows"] for p in pairs),
        "label_delim": label_delim,
        "parent": None,
        "suggest": None,
    }
    if parent is not None:
        from .inspect_tokens import with_parent

        report.update(with_parent(parent, files, reps, max_len, reporter))
    report["verdicts"] = verdicts(report)
    return report
