"""`ulmfit tune`: a search of a stage's settings on Optuna. Each trial is a real `finetune-clf` (or `finetune-lm`)
run with the trial's settings over the ones given, scored on the validation data by the metric that stage chooses
its epoch by (the classifier's --metric; an LM's perplexity); each epoch's score goes to Optuna's pruner, which may
stop a trial that is clearly behind.

Workers share the study through its storage (study.py): the same command started on several processes or
machines adds workers, Optuna hands each trial to one of them, and `--trials N` counts the study's finished trials
(complete or pruned), whoever ran them. A trial whose worker was killed is queued again (the storage's heartbeat)
and an interrupted one on Ctrl-C; its retry resumes from the checkpoint the run folder kept, where the folder is
shared. Under torchrun, rank 0 talks to the study and every process trains each trial.

The folder (--out, shared by the workers of one machine; tune_results.py writes the results):
- settings.json: what the study is: stage, metric, storage and study name, parent, data, shared settings, space;
- study.db: the study, when --storage is not given;
- trials/trial-NNNN: the best trial's run folder (every complete one's with --keep-all);
- best.toml, trials.csv, history.png, importances.png: the results.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import tasks
from ..config import RunConfig, resolve
from ..data.readers import Source
from ..errors import ConfigError, TrainingError, WriteError
from ..runfolder import artifacts
from ..runfolder.workdir import Workdir
from . import space as spaces
from . import study as studies
from . import tune_results as results
from .space import Dimension, suggest

HARDWARE = ("device", "precision", "compile")  # may differ between the workers of one study


@dataclass
class Tune:
    parent: artifacts.Run
    train: Source
    valid: Source | None
    stage: str  # finetune-clf | finetune-lm
    preset: str
    given: dict  # the settings given as flags (or by --config): every trial's
    base: RunConfig  # the stage's settings resolved from `given` alone: what the trials share
    space: list[Dimension]
    trials: int  # the study's finished trials (complete or pruned) to reach, across its workers
    out: Path
    trial_reporter: Callable  # () -> the reporter a trial's stage gets (quiet: the table is the progress)
    timeout: float | None = None  # no trial starts after this many seconds
    storage: str | None = None  # an RDB URL or a journal file; None: SQLite in `out`
    study: str = "tune"
    heartbeat: int = 60  # seconds between a running trial's heartbeats (RDB storages)
    sampler: str = "tpe"
    pruner: str = "median"
    keep_all: bool = False
    text_col: str = "text"
    label_col: str = "label"
    cache_dir: Path | None = None
    overwrite: bool = False
    caller: artifacts.Caller = artifacts.ON_ITS_OWN


class TrialFailed(Exception):
    """A trial that could not give a score (its settings do not go together, its loss became NaN): a failed trial
    of the study, which goes on."""


class Pruned(artifacts.Discard):
    """Optuna's pruner stopped the trial at an epoch end: its run folder is dropped."""


def scoring(t: Tune) -> tuple[str, str, dict]:
    """(the validation metric, minimize or maximize, the data's fingerprints), before any work: the labels are
    read, so a problem with them is one line now, not a failure of every trial."""
    from ..data.readers import open_corpus, read_table
    from ..training.stage_parts import few_rows

    if t.valid is None and t.base.valid_pct == 0:
        raise ConfigError("`ulmfit tune` scores each trial on validation data: give --valid, or --valid-pct above 0")
    if t.stage == "finetune-lm":
        prints = {"train": open_corpus(t.train, t.text_col).fingerprint}
        if t.valid is not None:
            prints["valid"] = open_corpus(t.valid, t.text_col).fingerprint
        return "perplexity", "minimize", prints
    table = read_table(t.train, t.text_col, t.label_col)
    task = tasks.detect(table.labels, t.base)
    labels = tasks.parse(table, t.train, t.label_col, task, t.base.label_delim)
    tasks.classes_of(task, labels, t.train, t.label_col)
    metric, higher = tasks.selection_metric(task, t.base.metric)
    if t.valid is None and few_rows(t.base, task, labels):
        raise ConfigError(
            "too few labelled rows to hold some out for scoring trials (the few-labels recipe trains on all of "
            "them): give --valid"
        )
    prints = {"train": table.fingerprint}
    if t.valid is not None:
        prints["valid"] = read_table(t.valid, t.text_col, t.label_col).fingerprint
    return metric, "maximize" if higher else "minimize", prints


def study_key(t: Tune, metric: str, direction: str, prints: dict) -> dict:
    """What the study's trials depend on: a worker that joins must train the same stage from the same parent on
    the same data, with the same shared settings and space (paths may differ between machines; contents may not)."""
    import json

    from ..data.tokenizer import file_sha256

    key = {
        "stage": t.stage,
        "metric": metric,
        "direction": direction,
        "parent_weights_sha256": file_sha256(t.parent.file("weights")),
        "data": prints,
        "columns": {"text": t.text_col, "label": t.label_col},
        "settings": {k: v for k, v in t.base.to_dict().items() if k not in HARDWARE},
        "space": [{"name": d.name, **d.table()} for d in t.space],
    }
    return json.loads(json.dumps(key))  # as the storage gives it back (lists, not tuples)


def run(t: Tune, reporter) -> dict:
    """Run trials of the study until it holds `t.trials` finished ones (or the timeout); the summary."""
    from .. import dist

    shown = studies.shown_url(t.storage, t.out)
    metric, direction, prints = scoring(t)
    if not dist.world().main:  # torchrun: rank 0 asks the study for each trial, every process trains it
        return _follow(t, metric)
    key = study_key(t, metric, direction, prints)
    here = {"storage": shown, "study": t.study, "parent": str(t.parent.path.resolve()), "train": str(t.train),
            "valid": str(t.valid) if t.valid else None}  # fmt: skip
    given = studies.open_storage(t.storage, t.out, t.heartbeat)[0] if t.storage else None  # before the folder
    Workdir(t.out, "tune", {**key, **here}, t.overwrite, results.OWNED, shared=True)
    (t.out / "trials").mkdir(exist_ok=True)
    with studies.quiet_optuna(reporter.warn):
        storage = given or studies.open_storage(None, t.out, t.heartbeat)[0]  # OUT/study.db
        study, created = studies.open_study(storage, shown, t.study, key, t.overwrite)
        seed = studies.sampler_seed(t.base.seed, created, t.sampler)
        grid = spaces.grid(t.space, "the space") if t.sampler == "grid" else None  # the CLI checked the space
        size = math.prod(map(len, grid.values())) if grid is not None else 0  # 0: not a grid
        study.sampler, study.pruner = studies.sampler(t.sampler, seed, grid), studies.pruner(t.pruner, t.trials)
        table = results.Table(t.space, metric, t.trials, t.timeout)
        reporter.line(
            f"tune: {t.stage} from {t.parent.path.name}, {metric} ({direction}), {t.trials} trials; {t.sampler} "
            f"sampler (seed {seed}), pruner {t.pruner}; study {t.study!r} in {shown}"
            + ("" if created else f", which holds {studies.finished(study)} finished trial(s)")
        )
        if size and size != t.trials:
            reporter.info(
                f"tune: the grid has {size} combinations; "
                + (f"--trials {t.trials} tries {t.trials} of them" if size > t.trials else "the study ends after them")
            )
        reporter.line(table.header())
        try:
            _optimize(t, study, metric, table, reporter, size)
        except KeyboardInterrupt:
            summary = results.finish(t, study, metric, reporter, drawn=False)
            best = f", the best's settings in {summary['best']['config']}" if summary["best"] else ""
            reporter.notice(
                f"tune: {studies.finished(study)} finished trial(s) kept in study {t.study!r} ({shown}){best}; rerun "
                "the same command to continue"
            )
            raise
        finally:
            dist.from_main(None)  # torchrun: the other processes stop waiting for trials
        summary = results.finish(t, study, metric, reporter, drawn=True)
    if summary["best"] is None and summary["counts"]["failed"]:
        raise TrainingError(f"no trial of study {t.study!r} completed; every one failed (the table above says why)")
    return summary


def _optimize(t: Tune, study, metric: str, table, reporter, grid: int) -> None:
    """This worker's trials, until the study holds t.trials finished ones or t.timeout has passed (or, `grid`
    combinations a --sampler grid study's, every one of them has its trial)."""
    import optuna
    from optuna.trial import TrialState

    from .. import dist

    done = studies.finished(study)
    if done >= t.trials:
        reporter.info(f"tune: the study holds {done} finished trials of the {t.trials} asked for; none to run")
        return
    if grid and studies.grid_taken(study, grid):
        reporter.info(f"tune: every one of the grid's {grid} combinations has its trial; none to run")
        return
    current = []  # the number of the trial running here, for Ctrl-C

    def objective(trial) -> float:
        current.append(trial.number)
        params = suggest(trial, t.space)
        out = t.out / "trials" / f"trial-{trial.number:04d}"
        resume = _adopt(trial.user_attrs.get("run"), out)  # a retry takes over its predecessor's checkpoint
        trial.set_user_attr("run", str(out.resolve()))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        if resume:
            trial.set_user_attr("resumed", True)
        dist.from_main((trial.number, params, resume))  # torchrun: the other processes train it too

        def judge(epoch: int, value: float | None) -> bool:
            prune = False
            if value is not None:
                trial.report(value, epoch)
                prune = trial.should_prune()
            return dist.from_main(prune)

        try:
            scored = _train(t, params, out, resume, metric, judge)
        except TrialFailed as e:
            trial.set_user_attr("error", str(e))
            raise
        except Pruned:
            raise optuna.TrialPruned() from None
        trial.set_user_attr("epochs", scored["epochs"])
        return scored["value"]

    failed = []  # this worker's failed trials: as many as --trials asks for, and it stops (they would go on failing)

    def progress(study, trial) -> None:
        results.update(t, study, metric)
        reporter.line(table.row(study, trial))
        if trial.state == TrialState.FAIL:
            failed.append(trial.number)
            if len(failed) >= t.trials:
                reporter.warn(f"tune: {len(failed)} trials failed here; stopping (their reasons are above)")
                study.stop()
        if grid and studies.grid_taken(study, grid):
            study.stop()

    def interrupted() -> None:  # the trial stopped by Ctrl-C runs again (from its checkpoint) on a rerun
        ft = next((x for x in study.get_trials(deepcopy=False) if current and x.number == current[-1]), None)
        if ft is not None and ft.state == TrialState.FAIL:
            studies.retry(study, ft)

    try:
        study.optimize(
            objective,
            timeout=t.timeout,
            catch=(TrialFailed,),
            callbacks=[optuna.study.MaxTrialsCallback(t.trials, states=studies.finished_states()), progress],
        )
    except KeyboardInterrupt:
        interrupted()
        raise


def _train(t: Tune, params: dict, out: Path, resume: bool, metric: str, judge) -> dict:
    """One trial's stage, in run folder `out`: {"value": its score, "epochs": how many it ran}."""
    import json

    from .. import dist
    from ..training.stages import finetune_clf, train_lm_stage

    try:
        cfg = resolve(t.stage, t.preset, {**t.given, **params}, t.parent.config)
    except ConfigError as e:
        raise TrialFailed(str(e)) from None
    reporter = Judged(t.trial_reporter(), metric, judge)
    caller = dataclasses.replace(
        t.caller, rerun="rerun the same command", keeps_failed=False,
        lower_lr="{lr} or below, in the space or as --lr",
    )  # fmt: skip
    common = dict(overwrite=True, resume=resume, reporter=reporter, caller=caller)
    try:
        if t.stage == "finetune-clf":
            finetune_clf(cfg, t.parent, t.train, out, valid=t.valid, text_col=t.text_col, label_col=t.label_col,
                         **common)  # fmt: skip
        else:
            train_lm_stage("finetune-lm", cfg, [t.train], out, text_col=t.text_col, valid=t.valid, parent=t.parent,
                           cache_dir=t.cache_dir, **common)  # fmt: skip
    except WriteError:
        raise  # the disk, not the settings: every trial would fail so
    except TrainingError as e:  # a NaN loss: these settings diverge
        raise TrialFailed(str(e)) from None
    if not dist.world().main:
        return {}
    manifest = json.loads((out / artifacts.MANIFEST).read_text(encoding="utf-8"))
    kept = manifest.get("kept_epoch")
    value = manifest["history"][kept - 1].get(metric) if kept else None
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise TrialFailed(f"no validation {metric} for the epoch kept")
    return {"value": float(value), "epochs": len(manifest["history"])}


class Judged:
    """The stage's reporter inside a trial: everything goes to `inner`, and each epoch's validation score also goes
    to `judge(epoch, score)`, which reports it to Optuna and says whether the pruner stops the trial there (the
    loop calls epoch_end with the epoch's validation metrics: loop._close_epoch)."""

    def __init__(self, inner, metric: str, judge: Callable[[int, float | None], bool]):
        self.inner, self.metric, self.judge = inner, metric, judge

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def epoch_end(self, row: dict) -> None:
        self.inner.epoch_end(row)
        v = row.get(self.metric)
        if self.judge(row["epoch"], float(v) if isinstance(v, int | float) and math.isfinite(v) else None):
            raise Pruned(f"pruned after epoch {row['epoch']}")


def _adopt(before: str | None, out: Path) -> bool:
    """A retried trial carries its predecessor's run folder (`before`, copied with its attributes): when that
    folder's checkpoint is here and nobody holds it, it becomes this trial's, to resume from. True if so."""
    from ..errors import RunFolderError

    if not before:
        return False
    old = Path(before)
    partial = old.parent / f".{old.name}.partial"
    if artifacts.find_checkpoint(partial) is None:
        return False
    try:
        lock = artifacts.OutputLock(old)
    except RunFolderError:  # its worker still writes it
        return False
    try:
        os.replace(partial, out.parent / f".{out.name}.partial")
    except OSError:  # another file system (a folder of another machine): start afresh
        return False
    finally:
        lock.release()
    return True


def _follow(t: Tune, metric: str) -> dict:
    """A torchrun process other than rank 0: train each trial rank 0 hands out, with its pruning decisions."""
    from .. import dist

    while (job := dist.from_main(None)) is not None:
        number, params, resume = job
        out = t.out / "trials" / f"trial-{number:04d}"
        try:
            _train(t, params, out, resume, metric, lambda epoch, value: dist.from_main(None))
        except (TrialFailed, Pruned):
            pass
    return {}
