"""`ulmfit pipeline`: pretrain (or start from given LMs) -> finetune-lm -> finetune-clf in one command, for the
forward direction or, with both directions, also the backward one, then the test score of each classifier and
of their ensemble (the paper's bidirectional model, section 3.3: the average of a forward and a backward
classifier's predictions).

The output folder (workdir.Workdir: rerun the same command to finish an interrupted pipeline) holds one folder
per direction, `fwd/` and `bwd/`, each with the run folders `lm`, `lm-ft` and `clf`, and `ensemble.json`
naming the classifiers, so that `ulmfit predict DIR` and `ulmfit evaluate DIR` use the ensemble.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..config import RunConfig, resolve
from ..data.readers import Source, open_corpus, read_table
from ..errors import ConfigError
from ..runfolder import artifacts
from ..runfolder.workdir import Workdir, write_json

DIRECTIONS = ("fwd", "bwd")
ENSEMBLE, ENSEMBLE_FORMAT = artifacts.ENSEMBLE, artifacts.ENSEMBLE_FORMAT
STUDENT = "student"  # --distill-into: the classifier(s) distilled into a student, the last step


@dataclass
class Pipeline:
    train: Source
    out: Path
    preset: str
    corpus: list[Source]  # pretraining text, or...
    parents: list[artifacts.Run]  # ...the LMs to start from (one per direction)
    texts: list[Source]  # finetune-lm text (default: TRAIN's texts)
    test: Source | None
    both: bool
    pretrain_flags: dict
    lm_flags: dict
    clf_flags: dict
    text_col: str = "text"
    label_col: str = "label"
    overwrite: bool = False
    cache_dir: Path | None = None
    # the command's: its --config file, recorded in every stage's manifest
    caller: artifacts.Caller = artifacts.ON_ITS_OWN
    student_parent: artifacts.Run | None = None  # --distill-into
    distill_flags: dict | None = None  # --distill-set


def directions(p: Pipeline) -> list[str]:
    return list(DIRECTIONS) if p.both else ["fwd"]


def parent_of(p: Pipeline, direction: str) -> artifacts.Run | None:
    """The given LM of `direction` (None: pretrain one); every direction needs one LM that reads that way."""
    if not p.parents:
        return None
    found = [r for r in p.parents if bool(r.config.get("backwards")) == (direction == "bwd")]
    if len(found) != 1 or len(p.parents) != len(directions(p)):
        want = "one forward and one backward LM (pretrain --backwards)" if p.both else "one forward LM"
        raise ConfigError(
            f"`--parent` needs {want} for these directions; got {len(p.parents)}, {len(found)} {direction}"
        )
    return found[0]


def configs(p: Pipeline, direction: str) -> dict[str, RunConfig]:
    """The resolved settings of each stage of `direction`, before any work."""
    parent = parent_of(p, direction)
    out = {}
    if parent is None:
        out["pretrain"] = resolve("pretrain", p.preset, {**p.pretrain_flags, "backwards": direction == "bwd"})
    lm_parent = parent.config if parent is not None else out["pretrain"].to_dict()
    out["finetune-lm"] = resolve("finetune-lm", p.preset, p.lm_flags, lm_parent)
    out["finetune-clf"] = resolve("finetune-clf", p.preset, p.clf_flags, out["finetune-lm"].to_dict())
    return out


def student_config(p: Pipeline) -> RunConfig | None:
    """The student's settings (--distill-into): the preset's on the student's parent, --distill-set over them, and
    the teachers' task."""
    if p.student_parent is None:
        return None
    clf = configs(p, "fwd")["finetune-clf"]
    task = {"regression": clf.regression, "label_delim": clf.label_delim}
    return resolve("finetune-clf", p.preset, {**(p.distill_flags or {}), **task}, p.student_parent.config)


def _key(p: Pipeline, cfgs: dict) -> dict:
    from ..data.tokenizer import file_sha256

    hardware = ("device", "precision", "compile")
    return {
        "corpus": [{"source": str(s), "fingerprint": open_corpus(s, p.text_col).fingerprint} for s in p.corpus],
        "parents": [{"path": str(r.path.resolve()), "weights": file_sha256(r.file("weights"))} for r in p.parents],
        "train": {"source": str(p.train), "fingerprint": read_table(p.train, p.text_col, p.label_col).fingerprint},
        "texts": [{"source": str(s), "fingerprint": open_corpus(s, p.text_col).fingerprint} for s in p.texts],
        "columns": {"text": p.text_col, "label": p.label_col},
        "stages": {
            d: {stage: {k: v for k, v in c.to_dict().items() if k not in hardware} for stage, c in cs.items()}
            for d, cs in cfgs.items()
        },
        STUDENT: None
        if p.student_parent is None
        else {
            "parent": {
                "path": str(p.student_parent.path.resolve()),
                "weights": file_sha256(p.student_parent.file("weights")),
            },
            "settings": {k: v for k, v in student_config(p).to_dict().items() if k not in hardware},
        },
    }


def _stale(saved: dict, key: dict) -> list[str]:
    """What `--overwrite` discards when the key changed from `saved`: in each direction, the first stage whose
    inputs or settings changed and every stage after it (with their checkpoints); the stages before it are kept,
    as training them again would give the same runs. pretrain reads the corpus; finetune-lm the LM before it and
    its texts (TRAIN's when no --texts); finetune-clf the LM fine-tuned before it and TRAIN's texts and labels."""

    def same(*names) -> bool:
        return all(saved.get(n) == key.get(n) for n in names)

    names = [ENSEMBLE]
    texts = same("texts", "train") if not key["texts"] else same("texts")
    teachers_kept = True
    for d in DIRECTIONS:
        old, new = saved.get("stages", {}).get(d), key["stages"].get(d)
        if old is None or new is None:  # a direction added or dropped: none of its folder is reused
            names.append(d)
            continue
        unchanged = {
            "lm": same("corpus", "columns") and old.get("pretrain") == new.get("pretrain"),
            "lm-ft": same("parents", "columns") and texts and old.get("finetune-lm") == new["finetune-lm"],
            "clf": same("train", "columns") and old.get("finetune-clf") == new["finetune-clf"],
        }
        kept = True  # every stage before this one unchanged
        for stage, same_here in unchanged.items():
            kept = kept and same_here
            teachers_kept = teachers_kept and same_here
            if not kept:
                names += [f"{d}/{stage}", f"{d}/.{stage}.partial"]
    if not (teachers_kept and texts and same(STUDENT)):  # the student learns its teachers' answers over the texts
        names += [STUDENT, f".{STUDENT}.partial"]
    return names


def run(p: Pipeline, reporter) -> dict:
    """Every stage of every direction not finished before, then the test scores; the summary."""
    from ..training.stages import finetune_clf, train_lm_stage

    cfgs = {d: configs(p, d) for d in directions(p)}
    key = _key(p, cfgs)
    owned = (*DIRECTIONS, ENSEMBLE, STUDENT)
    wd = Workdir(p.out, "pipeline", key, p.overwrite, owned, lambda saved: _stale(saved, key))
    started, clfs, walls = time.time(), {}, {}
    for d in directions(p):
        (p.out / d).mkdir(exist_ok=True)
        cs, folder = cfgs[d], p.out / d
        lm = parent_of(p, d)
        if lm is None:
            lm = _stage(wd, folder / "lm", reporter, "--pretrain-set", train_lm_stage, "pretrain", cs["pretrain"],
                        p.corpus, text_col=p.text_col, cache_dir=p.cache_dir, caller=p.caller)  # fmt: skip
        ft = _stage(wd, folder / "lm-ft", reporter, "--lm-set", train_lm_stage, "finetune-lm", cs["finetune-lm"],
                    p.texts or [p.train], text_col=p.text_col, parent=lm, cache_dir=p.cache_dir,
                    caller=p.caller)  # fmt: skip
        clfs[d] = _stage(wd, folder / "clf", reporter, "--clf-set", finetune_clf, cs["finetune-clf"], ft, p.train,
                         text_col=p.text_col, label_col=p.label_col, caller=p.caller)  # fmt: skip
        walls[d] = {r.path.name: r.manifest.get("wall_s") for r in (lm, ft, clfs[d]) if r.path.parent == folder}
    members = [str(clfs[d].path.relative_to(p.out)) for d in directions(p)]
    write_json(p.out / ENSEMBLE, {"format": ENSEMBLE_FORMAT, "runs": members})
    summary = {"out": str(p.out), "runs": {d: str(c.path) for d, c in clfs.items()}, "wall_s": walls}
    student = None
    if p.student_parent is not None:  # the teachers: every direction's classifier, averaged
        student = _stage(wd, p.out / STUDENT, reporter, "--distill-set", _distil, student_config(p), p,
                         list(clfs.values()), caller=p.caller)  # fmt: skip
        summary["student"] = str(student.path)
    if p.test is not None:
        summary["test"] = _scores(p, clfs, reporter, student)
    summary["pipeline_wall_s"] = round(time.time() - started, 1)
    return summary


def _stage(wd: Workdir, out: Path, reporter, sets: str, fn, *args, caller: artifacts.Caller, **kwargs) -> artifacts.Run:
    def call(resume: bool, overwrite: bool, caller: artifacts.Caller):
        fn(*args, out, resume=resume, overwrite=overwrite, reporter=reporter, caller=caller, **kwargs)

    return wd.stage(out, call, "pipeline", reporter, sets, caller=caller)


def _distil(cfg: RunConfig, p: Pipeline, teachers: list, out: Path, **run) -> None:
    """The student of `teachers` from --distill-into over finetune-lm's texts (TRAIN's when no --texts), with
    TRAIN's labels: `ulmfit distill` as a stage of the pipeline."""
    from ..data.tokencache import cache_root
    from ..training.distill import teaching
    from ..training.stages import finetune_clf

    taught = teaching(teachers, p.texts or [p.train], cfg, p.text_col, cache_root(p.cache_dir), "torch", 64,
                      run["reporter"])  # fmt: skip
    finetune_clf(cfg, p.student_parent, p.train, out, text_col=p.text_col, label_col=p.label_col, teaching=taught,
                 **run)  # fmt: skip


def _scores(p: Pipeline, clfs: dict, reporter, student: artifacts.Run | None = None) -> dict:
    """Each classifier's test metrics, the ensemble's (the mean of their probabilities), and the student's."""
    from ..inference.predictor import evaluate

    keep = ("accuracy", "macro_f1", "micro_f1", "mae", "rmse", "n")
    sets = {d: [c] for d, c in clfs.items()}
    if len(clfs) > 1:
        sets["ensemble"] = list(clfs.values())
    if student is not None:
        sets[STUDENT] = [student]
    scores = {}
    for name, runs in sets.items():
        result = evaluate(runs, p.test, p.text_col, p.label_col)
        scores[name] = {k: result[k] for k in keep if k in result}
        shown = ", ".join(f"{k} {v:.4f}" for k, v in scores[name].items() if k != "n")
        reporter.info(f"pipeline: {name} on {p.test}: {shown}")
    return scores
