"""`ulmfit learning-curve`: the paper's Figure 3 (section 5, "Low-shot learning") as a command.

For each training-set size and seed, a subsample of the labelled data (stratified by label for single-label
tasks, nested: a seed's smaller subsamples lie inside its larger ones) trains three classifiers, each scored on
the test data:
- `random`: no pretraining. The classifier of the parent's architecture and subword tokenizer, every weight
  (embeddings, LSTM or transformer, head) drawn at random (`finetune-clf --init random`), trained with the same
  recipe on the same examples. The tokenizer is the only thing it shares with pretraining.
- `supervised`: ULMFiT supervised. The parent LM fine-tuned (`finetune-lm`) on the subsample's texts alone,
  then the classifier.
- `semi-supervised`: ULMFiT semi-supervised. The parent LM fine-tuned on all the task's text without its labels
  (`--unlabelled` files and every text of TRAIN), once per seed and shared by every size, then the classifier.
- `parent`: the classifier straight on the parent, no LM fine-tuning (a pretrained checkpoint's usual path, and
  the only one for an encoder without a masked-LM head).

With `per_class`, a size is a number of examples of every class (single-label tasks): exactly that many rows of
each class, drawn by the seed, again nested (a seed's K rows of a class are the first K of one seeded order).

Everything lives in the output folder (see workdir.Workdir): `points/` one JSON per finished point (kept across
interruptions, skipped on a rerun), `runs/` the stages' run folders, `data/` the subsamples, and the results
`learning_curve.csv` and `learning_curve.png`.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import tasks
from ..config import RunConfig
from ..data.readers import Source, read_table
from ..errors import ConfigError
from ..runfolder import artifacts
from ..runfolder.workdir import Workdir, write_atomic, write_json

VARIANTS = ("random", "supervised", "semi-supervised")  # the paper's three (Figure 3)
KINDS = (*VARIANTS, "parent")  # every variant the command runs
ALL = "all"
CSV, PNG = "learning_curve.csv", "learning_curve.png"
OWNED = ("points", "runs", "data", CSV, PNG)  # what the command writes in its folder (a user's file there stays)
COLUMNS = (
    "variant",
    "size",
    "per_class",
    "n",
    "seed",
    "metric",
    "score",
    "error",
    "macro_f1",
    "clf_wall_s",
    "lm_wall_s",
)
HARDWARE = ("device", "precision", "compile")  # may change between a run and its rerun


def parse_sizes(text: str, flag: str = "--sizes") -> list[int | str]:
    """`100,200,all` -> [100, 200, "all"], ascending, each once."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if part.lower() == ALL:
            out.append(ALL)
        elif part.isdigit() and int(part) >= 2:
            out.append(int(part))
        else:
            raise ConfigError(f"`{flag}` takes whole numbers >= 2 and 'all', comma-separated; got {part!r}")
    return sorted(set(out), key=lambda s: float("inf") if s == ALL else s)


def per_class_rows(labels: list, k: int, seed: int) -> np.ndarray:
    """Exactly `k` rows of every class, sorted: each class's rows in an order of their own drawn by `seed`, the
    first `k` of it, so that a seed's smaller samples lie inside its larger ones."""
    classes = sorted(set(labels))
    rows = []
    for c, label in enumerate(classes):
        mine = np.array([i for i, v in enumerate(labels) if v == label])
        rows.append(np.random.default_rng([seed, 17, c]).permutation(mine)[:k])
    return np.sort(np.concatenate(rows))


def check_per_class(labels: list, task: str, sizes: list) -> None:
    """--per-class: single-label classes with at least the largest size's rows each, refused before any work."""
    if task != tasks.SINGLE:
        raise ConfigError("`--per-class` draws examples of every class: it needs single-label classes")
    counts = Counter(labels)
    fewest = min(counts, key=lambda v: (counts[v], str(v)))
    k = max((s for s in sizes if s != ALL), default=0)
    if counts[fewest] < k:
        raise ConfigError(
            f"`--per-class {k}`: class {fewest!r} has only {counts[fewest]} training rows; give sizes up to "
            f"{counts[fewest]}"
        )


def parse_variants(text: str) -> list[str]:
    out = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in out if v not in KINDS]
    if bad or not out:
        raise ConfigError(f"`--variants` takes {', '.join(KINDS)} (comma-separated); got {text!r}")
    return [v for v in KINDS if v in out]


def sampling_order(labels: list, task: str, seed: int) -> np.ndarray:
    """Every row once, in the order the subsamples take them: a subsample of size n is the first n, so a seed's
    smaller subsamples lie inside its larger ones. Single-label rows are interleaved by class (the r-th row of a
    class of c rows comes at r / c, ties in random order): the first rows hold one example of every class, and any
    first n hold each class within one row of its share n * c / N, up to (classes - 1) * c / N."""
    rng = np.random.default_rng([seed, 13])
    if task != tasks.SINGLE:
        return rng.permutation(len(labels))
    keys = np.zeros(len(labels))
    groups: dict = {}
    for i, label in enumerate(labels):
        groups.setdefault(label, []).append(i)
    for rows in groups.values():
        keys[rng.permutation(np.array(rows))] = np.arange(len(rows)) / len(rows)
    return np.lexsort((rng.random(len(labels)), keys))


@dataclass
class Curve:
    parent: artifacts.Run
    train: Source
    test: Source
    unlabelled: list[Source]
    sizes: list[int | str]
    seeds: int
    variants: list[str]
    lm_cfg: RunConfig
    clf_cfg: RunConfig
    out: Path
    text_col: str = "text"
    label_col: str = "label"
    overwrite: bool = False
    keep_runs: bool = False
    cache_dir: Path | None = None
    per_class: bool = False  # sizes are examples of every class
    # the command's: its --config file, recorded in every stage's manifest
    caller: artifacts.Caller = artifacts.ON_ITS_OWN


def _key(c: Curve, train_fp: str) -> dict:
    """What the finished points depend on: a rerun with another key must not mix its points with these."""
    from ..data.readers import open_corpus
    from ..data.tokenizer import file_sha256

    def settings(cfg: RunConfig) -> dict:
        return {k: v for k, v in cfg.to_dict().items() if k not in HARDWARE}

    return {
        "parent": {"path": str(c.parent.path.resolve()), "weights_sha256": file_sha256(c.parent.file("weights"))},
        "train": {"source": str(c.train), "fingerprint": train_fp},
        "test": {"source": str(c.test), "fingerprint": _fingerprint(c.test)},
        "unlabelled": [{"source": str(s), "fingerprint": open_corpus(s, c.text_col).fingerprint} for s in c.unlabelled],
        "columns": {"text": c.text_col, "label": c.label_col},
        "finetune_lm": settings(c.lm_cfg),
        "finetune_clf": settings(c.clf_cfg),
        **({"per_class": True} if c.per_class else {}),  # a curve of total sizes keeps its earlier key
    }


def _stale(out: Path, saved: dict, key: dict) -> list[str]:
    """What `--overwrite` discards when the key changed from `saved`: every point, the table and the picture, and
    the classifiers' runs; the fine-tuned LMs (runs/lm-*, finished or interrupted) only if what they read changed
    (the parent, TRAIN, --unlabelled, the columns, the LM settings). A changed classifier setting or test set
    then trains only classifiers again: the LMs would come out the same, and on a task like IMDb (50,000
    unlabelled reviews) they are most of the curve's time."""
    if any(saved.get(k) != key.get(k) for k in ("parent", "train", "unlabelled", "columns", "finetune_lm")):
        return list(OWNED)
    runs = out / "runs"
    clfs = [f"runs/{p.name}" for pattern in ("clf-*", ".clf-*.partial") for p in sorted(runs.glob(pattern))]
    return ["points", CSV, PNG, *clfs]


def _fingerprint(src: Source) -> str | None:
    """The test file's content hash: points scored on other data must not join these (a Hub split: None)."""
    from ..data.readers import file_fingerprint

    path = Path(str(src.path)) if src.path is not None else None
    return file_fingerprint(path) if path is not None and path.is_file() else None


def run(c: Curve, reporter, on_point=None) -> dict:
    """Every point of the curve not finished before, then the table and the picture; the summary. `on_point`
    (if given) is called with each point as it is recorded."""
    table = read_table(c.train, c.text_col, c.label_col)
    task = tasks.detect(table.labels, c.clf_cfg)
    labels = tasks.parse(table, c.train, c.label_col, task, c.clf_cfg.label_delim)
    tasks.classes_of(task, labels, c.train, c.label_col)
    if c.per_class:
        check_per_class(labels, task, c.sizes)
        sizes = list(c.sizes)
    else:
        sizes = sorted({ALL if s == ALL or s >= len(labels) else s for s in c.sizes}, key=_size_order)
    if len(sizes) < len(c.sizes):
        reporter.info(f"learning-curve: TRAIN has {len(labels)} labelled rows; larger sizes are 'all'")
    key = _key(c, table.fingerprint)
    wd = Workdir(c.out, "learning-curve", key, c.overwrite, OWNED, lambda saved: _stale(c.out, saved, key))
    for sub in ("points", "runs", "data"):
        (c.out / sub).mkdir(exist_ok=True)
    todo = [(seed, size, v) for seed in _seeds(c) for size in sizes for v in c.variants]
    done = 0
    for i, (seed, size, variant) in enumerate(todo):
        path = _point_path(c, variant, size, seed)
        if path.exists():
            done += 1
            continue
        reporter.info(f"learning-curve: point {i + 1}/{len(todo)}: {variant}, {size} labelled, seed {seed}")
        try:
            point = _point(c, wd, table, labels, task, variant, size, seed, reporter)
        except KeyboardInterrupt:  # the stage has kept its checkpoint (and said so); the rerun resumes it
            reporter.notice(
                f"learning-curve: {i - done} new point(s) and every earlier one kept in {c.out / 'points'}; "
                "rerun the same command to continue"
            )
            raise
        write_json(path, point)
        _clean(c, variant, size, seed)
        _write_csv(c)
        if on_point is not None:
            on_point(point)
    if done:
        reporter.info(f"learning-curve: {done} of {len(todo)} points were finished before and kept")
    points = [json.loads(_point_path(c, v, s, seed).read_text(encoding="utf-8")) for seed, s, v in todo]
    _write_csv(c)
    summary = {"out": str(c.out), "task": task, "csv": str(c.out / CSV), "points": points, "curve": _curve(points)}
    # the picture, like the CSV, is the folder's whole curve (a curve run in pieces draws every piece)
    summary["plots"] = _draw(c, _curve(_finished(c)), task != tasks.REGRESSION, reporter)
    return summary


def _size_order(s) -> float:
    return float("inf") if s == ALL else s


def _seeds(c: Curve) -> list[int]:
    return [c.clf_cfg.seed + i for i in range(c.seeds)]


def _sample(c: Curve, size, seed: int) -> str:
    """The subsample's name: n100-s42 (100 rows), k8-s42 (--per-class: 8 rows of every class)."""
    return f"{'k' if c.per_class and size != ALL else 'n'}{size}-s{seed}"


def _name(c: Curve, variant: str, size, seed: int) -> str:
    return f"{variant}-{_sample(c, size, seed)}"


def _point_path(c: Curve, variant: str, size, seed: int) -> Path:
    return c.out / "points" / f"{_name(c, variant, size, seed)}.json"


def _subsample_file(c: Curve, table, labels: list, task: str, size, seed: int) -> tuple[Source, int]:
    """The subsample as a JSONL file (rows as read, so the stages parse labels as they would TRAIN's)."""
    if size == ALL:
        return c.train, len(labels)
    if c.per_class:
        rows = per_class_rows(labels, size, seed)
    else:
        rows = np.sort(sampling_order(labels, task, seed)[:size])
    path = c.out / "data" / f"train-{_sample(c, size, seed)}.jsonl"
    lines = (json.dumps({c.text_col: table.texts[i], c.label_col: table.labels[i]}) for i in rows)
    if not path.exists():  # the same rows every time (seeded): written once, so a resumed stage sees the same file
        write_atomic(path, "\n".join(lines) + "\n")
    return Source(path=str(path)), len(rows)


def _point(c: Curve, wd: Workdir, table, labels, task, variant: str, size, seed: int, reporter) -> dict:
    from ..inference.predictor import evaluate
    from ..training.stages import finetune_clf

    src, n = _subsample_file(c, table, labels, task, size, seed)
    clf_cfg = dataclasses.replace(c.clf_cfg, seed=seed)
    parent, lm_wall = c.parent, None
    if variant == "supervised" and not (size == ALL and not c.unlabelled):
        parent = _lm(c, wd, [src], f"lm-sup-{_sample(c, size, seed)}", seed, reporter, cap=True)
    elif variant in ("supervised", "semi-supervised"):  # all of TRAIN, no --unlabelled: the semi-supervised LM
        parent = _lm(c, wd, [*c.unlabelled, c.train], f"lm-semi-s{seed}", seed, reporter)
    if parent is not c.parent:
        lm_wall = parent.manifest.get("wall_s")
    out = c.out / "runs" / f"clf-{_name(c, variant, size, seed)}"
    init = "random" if variant == "random" else "pretrained"

    def call(resume: bool, overwrite: bool, caller: artifacts.Caller):
        finetune_clf(
            clf_cfg, parent, src, out, text_col=c.text_col, label_col=c.label_col, init=init,
            overwrite=overwrite, resume=resume, reporter=reporter, caller=caller,
        )  # fmt: skip

    t0 = time.time()
    clf = wd.stage(out, call, "learning-curve", reporter, "--clf-set", "the fine-tuned LMs are kept", c.caller)
    result = evaluate([clf], c.test, c.text_col, c.label_col)
    metric, higher = tasks.SELECTION_METRIC[task]  # the metric the runs chose their epoch by
    score = float(result[metric])
    point = {
        "variant": variant,
        "size": size,
        "per_class": c.per_class and size != ALL,
        "n": n,
        "seed": seed,
        "metric": metric,
        "score": round(score, 6),
        "error": round(1.0 - score if higher else score, 6),
        "macro_f1": round(float(result["macro_f1"]), 6) if "macro_f1" in result else None,
        "clf_wall_s": clf.manifest.get("wall_s"),
        "lm_wall_s": lm_wall,
        "valid": clf.manifest.get("final", {}),  # the last epoch's validation row
        "epochs": len(clf.manifest.get("history", [])),
        "best_epoch": clf.manifest.get("best_epoch"),  # 1-based, by `metric` on validation
        "kept_epoch": clf.manifest.get("kept_epoch"),  # the epoch whose weights were scored (--keep)
        "point_wall_s": round(time.time() - t0, 1),
    }
    reporter.info(f"learning-curve: {variant}, n {n}, seed {seed}: test {metric} {score:.4f}")
    return point


def _lm(
    c: Curve, wd: Workdir, sources: list[Source], name: str, seed: int, reporter, cap: bool = False
) -> artifacts.Run:
    """The parent LM fine-tuned on `sources` into runs/NAME (reused when finished before)."""
    from ..training.stages import train_lm_stage

    cfg = dataclasses.replace(c.lm_cfg, seed=seed)
    if cap:
        cfg = _fit_bs(c, cfg, sources[0], reporter)
    out = c.out / "runs" / name

    def call(resume: bool, overwrite: bool, caller: artifacts.Caller):
        train_lm_stage(
            "finetune-lm", cfg, sources, out, text_col=c.text_col, parent=c.parent, overwrite=overwrite,
            resume=resume, cache_dir=c.cache_dir, reporter=reporter, caller=caller,
        )  # fmt: skip

    return wd.stage(out, call, "learning-curve", reporter, "--lm-set", "which starts the folder again", c.caller)


def _fit_bs(c: Curve, cfg: RunConfig, src: Source, reporter) -> RunConfig:
    """A few labelled texts may hold too few tokens for --lm-bs rows of a --bptt window: fewer, longer-lived rows
    then (the LM still sees every token), rather than no supervised point at the small sizes the curve is for."""
    from ..data.tokenizer import encode_stream, load_tokenizer

    texts = read_table(src, c.text_col, c.label_col).texts
    n = int(len(encode_stream(load_tokenizer(c.parent.file("tokenizer")), texts)) * (1 - cfg.valid_pct) * 0.95)
    fits = max(1, (n - 1 - cfg.bptt) // cfg.bptt)  # rows that each hold at least one whole window
    if fits >= cfg.bs:
        return cfg
    reporter.info(f"learning-curve: {len(texts)} texts hold about {n} training tokens: LM batches of {fits} rows")
    return dataclasses.replace(cfg, bs=fits)


def _clean(c: Curve, variant: str, size, seed: int) -> None:
    """Once a point is recorded its classifier (and its own LM) are not needed, unless --keep-runs: about 20 MB
    each with the small preset. The semi-supervised LM stays: every size of its seed starts from it."""
    if c.keep_runs:
        return
    shutil.rmtree(c.out / "runs" / f"clf-{_name(c, variant, size, seed)}", ignore_errors=True)
    if variant == "supervised":
        shutil.rmtree(c.out / "runs" / f"lm-sup-{_sample(c, size, seed)}", ignore_errors=True)


def _finished(c: Curve) -> list[dict]:
    points = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((c.out / "points").glob("*.json"))]
    return sorted(points, key=lambda p: (KINDS.index(p["variant"]), _size_order(p["size"]), p["seed"]))


def _write_csv(c: Curve) -> None:
    """Every finished point of the folder (also those of sizes or seeds not asked for this time)."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(_finished(c))
    write_atomic(c.out / CSV, buf.getvalue())


def _curve(points: list[dict]) -> list[dict]:
    """Per variant and size: the test error's mean, sample standard deviation, lowest and highest over the seeds."""
    rows = []
    for v in KINDS:
        for size in sorted({p["size"] for p in points if p["variant"] == v}, key=_size_order):
            errs = [p["error"] for p in points if p["variant"] == v and p["size"] == size]
            n = next(p["n"] for p in points if p["variant"] == v and p["size"] == size)
            rows.append(
                {
                    "variant": v,
                    "size": size,
                    "n": n,
                    "seeds": len(errs),
                    "error_mean": round(float(np.mean(errs)), 6),
                    "error_std": round(float(np.std(errs, ddof=1)), 6) if len(errs) > 1 else None,
                    "error_min": round(float(np.min(errs)), 6),
                    "error_max": round(float(np.max(errs)), 6),
                }
            )
    return rows


def _draw(c: Curve, curve: list[dict], percent: bool, reporter) -> dict:
    """learning_curve.png; a picture that cannot be drawn is a warning: the table holds the results."""
    from ..training.plots import learning_curve

    def short(src: Source) -> str:  # trec/train.csv: the file and its folder, enough to tell tasks apart
        return "/".join(Path(str(src)).parts[-2:])

    title = f"{short(c.train)} -> {short(c.test)} ({c.clf_cfg.preset} preset, parent {c.parent.path.name})"
    try:
        learning_curve(curve, c.out / PNG, title, percent)
    except Exception as e:  # never lose the table to a picture (as stage_parts.draw_plots)
        reporter.notice(f"warning: could not draw {PNG} ({type(e).__name__}: {e}); {CSV} holds the results")
        return {}
    return {"learning_curve": str(c.out / PNG)}
