"""What `ulmfit tune` leaves for the user to act on, written by every worker after its trials (each file whole,
several workers at once included): the best trial's settings as a `--config` file of its stage (best.toml), every
trial of the study (trials.csv), Optuna's pictures of the search, the run folders worth keeping, the summary, and
the progress table's rows. `describe` is the study as `ulmfit info DIR` shows it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import time
from pathlib import Path

from ..errors import ConfigError, RunFolderError
from ..runfolder import artifacts
from ..runfolder.workdir import KEY_FILE, write_atomic
from . import study as studies

BEST, CSV = "best.toml", "trials.csv"
HISTORY_PNG, IMPORTANCES_PNG = "history.png", "importances.png"
OWNED = ("trials", studies.STUDY_DB, BEST, CSV, HISTORY_PNG, IMPORTANCES_PNG)  # what --overwrite removes
RUN = re.compile(r"(\.?)trial-(\d+)(\.partial)?")  # trials/trial-0007, or .trial-0007.partial (interrupted)


def update(t, study, metric: str):
    """After each trial: best.toml and trials.csv as the study stands, and the run folders no longer needed removed
    (a long study keeps one model on disk, not one a trial). The best trial, or None."""
    best = studies.best(study)
    tidy(t, study, best)
    if best is not None:
        write_best(t, best, metric)
    write_atomic(t.out / CSV, _csv(study, t.space, metric))
    return best


def finish(t, study, metric: str, reporter, drawn: bool) -> dict:
    """The study's results in t.out (after this worker's trials, or on Ctrl-C without the pictures): the summary."""
    best = update(t, study, metric)
    config = t.out / BEST if best is not None else None
    plots = draw(t.out, study, metric, reporter) if drawn else {}
    trials = [_trial(x) for x in study.get_trials(deepcopy=False)]
    summary = {
        "out": str(t.out),
        "stage": t.stage,
        "metric": metric,
        "direction": study.direction.name.lower(),
        "storage": studies.shown_url(t.storage, t.out),
        "study": t.study,
        "asked": t.trials,
        "counts": studies.counts(study),
        "best": None if best is None else {**_trial(best), "config": str(config)},
        "trials": trials,
        "csv": str(t.out / CSV),
        "plots": plots,
    }
    if best is not None:
        reporter.line(
            f"tune: best trial {best.number}: {metric} {best.value:.4g}; train with its settings: ulmfit {t.stage} "
            f"{t.parent.path} {t.train} --config {config} --out runs/final"
        )
    return summary


def _trial(x) -> dict:
    run = x.user_attrs.get("run")
    return {
        "number": x.number,
        "state": x.state.name.lower(),
        "value": x.value,
        "params": x.params,
        "epochs": _epochs(x),
        "wall_s": _wall(x),
        "run": run if run and Path(run).is_dir() else None,
        **{k: x.user_attrs[k] for k in ("worker", "error", "resumed") if k in x.user_attrs},
    }


def _epochs(x) -> int | None:
    if "epochs" in x.user_attrs:
        return x.user_attrs["epochs"]
    return max(x.intermediate_values, default=None)  # pruned: the last epoch it reported


def _wall(x) -> float | None:
    if x.datetime_start is None or x.datetime_complete is None:
        return None
    return round((x.datetime_complete - x.datetime_start).total_seconds(), 1)


def write_best(t, best, metric: str) -> Path:
    """best.toml: every setting of the best trial, as `ulmfit STAGE --config` takes it (configfile.render: the
    settings resolved, so that a later change of a preset cannot change what it reproduces)."""
    from ..config import resolve
    from ..configfile import render

    cfg = resolve(t.stage, t.preset, {**t.given, **best.params}, t.parent.config)
    path = t.out / BEST
    header = [
        f"the settings of trial {best.number} of study {t.study!r}, the best by validation {metric} "
        f"({best.value:.6g}); train the final model with:",
        f"  ulmfit {t.stage} {t.parent.path} {t.train} --config {path} --out runs/final",
    ]
    more = {"text_col": t.text_col, **({"label_col": t.label_col} if t.stage == "finetune-clf" else {})}
    write_atomic(path, render(t.stage, cfg, header, more))
    return path


def _csv(study, space, metric: str) -> str:
    names = [d.name for d in space]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["trial", "state", metric, "epochs", "wall_s", *names, "worker", "error"])
    for x in study.get_trials(deepcopy=False):
        a = x.user_attrs
        w.writerow([x.number, x.state.name.lower(), x.value, _epochs(x), _wall(x),
                    *(x.params.get(n) for n in names), a.get("worker"), a.get("error")])  # fmt: skip
    return buf.getvalue()


def tidy(t, study, best) -> None:
    """Remove the run folders nobody needs: every finished trial's but the best's (unless --keep-all: every
    complete one's), and the checkpoints of interrupted trials that no queued retry will resume. A running trial's
    folder is never touched (it may be another worker's), nor one whose writer still holds it."""
    from optuna.trial import TrialState

    trials = {x.number: x for x in study.get_trials(deepcopy=False)}
    waiting = {x.user_attrs.get("run") for x in trials.values() if x.state == TrialState.WAITING}
    for p in sorted((t.out / "trials").iterdir()):
        m = RUN.fullmatch(p.name)
        x = trials.get(int(m[2])) if m and p.is_dir() else None
        if x is None or x.state in (TrialState.RUNNING, TrialState.WAITING):
            continue
        final = p.parent / f"trial-{m[2]}"
        if m[3] and x.state == TrialState.FAIL and str(final.resolve()) in waiting:
            continue  # its retry resumes from it
        if not m[3] and (x is best or (best is not None and x.number == best.number)):
            continue
        if not m[3] and t.keep_all and x.state == TrialState.COMPLETE:
            continue
        try:
            lock = artifacts.OutputLock(final)
        except RunFolderError:  # being written: not ours to remove
            continue
        try:
            shutil.rmtree(p, ignore_errors=True)
        finally:
            lock.release()


def draw(out: Path, study, metric: str, reporter) -> dict:
    """Optuna's pictures of the study: the best value over the trials, and how much each setting mattered (from
    two complete trials on). A picture that cannot be drawn is a warning: trials.csv holds the results."""
    import optuna.visualization.matplotlib as vis
    from optuna.trial import TrialState

    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    jobs = {"history": (HISTORY_PNG, vis.plot_optimization_history)} if complete else {}
    if complete >= 2:
        jobs["importances"] = (IMPORTANCES_PNG, vis.plot_param_importances)
    drawn = {}
    for kind, (name, plot) in jobs.items():
        try:
            _save(plot(study, target_name=metric).figure, out / name)
        except Exception as e:  # as stage_parts.draw_plots: never lose the results to a picture
            reporter.notice(f"warning: could not draw {name} ({type(e).__name__}: {e}); {CSV} holds the results")
        else:
            drawn[kind] = str(out / name)
    return drawn


def _save(fig, path: Path) -> None:
    """Written beside the target and renamed (per process: workers may draw at once), then closed (Optuna draws
    through pyplot, which keeps every figure until closed)."""
    import matplotlib.pyplot as plt

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fig.set_size_inches(8, 5)
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)


class Table:
    """The progress table on stderr, a row per trial as it finishes: its state and score, epochs and time, its
    settings, then the study's best so far, trials finished of those asked for, and the time left (the trials
    still to run at the study's mean time a trial, spread over the workers running now; within --timeout)."""

    def __init__(self, space, metric: str, trials: int, timeout: float | None):
        self.space, self.metric, self.trials, self.timeout, self.t0 = space, metric, trials, timeout, time.time()
        self.cols = [("trial", 5), ("state", 8), (metric, max(8, len(metric))), ("epochs", 6), ("time", 7)]
        self.cols += [(d.name, max(len(d.name), 8)) for d in space]
        self.cols += [("best (trial)", 14), ("done", 7), ("left", 9)]

    def header(self) -> str:
        return "  ".join(name.rjust(w) for name, w in self.cols)

    def row(self, study, x) -> str:
        best = studies.best(study)
        n = studies.counts(study)
        done = n["complete"] + n["pruned"]
        cells = [str(x.number), x.state.name.lower(), _num(x.value), _num(_epochs(x)), _dur(_wall(x))]
        cells += [_num(x.params.get(d.name)) for d in self.space]
        cells += ["-" if best is None else f"{best.value:.4g} ({best.number})", f"{done}/{self.trials}",
                  self._left(study, done, n["running"])]  # fmt: skip
        line = "  ".join(c.rjust(w) for c, (_, w) in zip(cells, self.cols))
        error = x.user_attrs.get("error")
        return line + (f"\n       failed: {error}" if error else "")

    def _left(self, study, done: int, running: int) -> str:
        walls = [w for w in map(_wall, study.get_trials(deepcopy=False, states=studies.finished_states())) if w]
        if done >= self.trials:
            return "0 s"
        if not walls:
            return "-"
        left = (self.trials - done) * sum(walls) / len(walls) / (1 + running)
        if self.timeout is not None:
            left = min(left, max(0.0, self.timeout - (time.time() - self.t0)))
        return "~" + _dur(left)


def _num(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v).lower()
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _dur(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def describe(out: Path) -> dict:
    """A tune folder's study as `ulmfit info DIR` shows it: what it searches and how it is scored (settings.json),
    and from its storage: trials in each state, the best value, settings and run folder."""
    import optuna

    saved = json.loads((out / KEY_FILE).read_text(encoding="utf-8"))
    d = {k: saved.get(k) for k in ("stage", "metric", "direction", "storage", "study", "parent", "train", "valid")}
    d.update(path=str(out), space=saved.get("space", []))
    try:
        if "***" in (d["storage"] or ""):
            raise ConfigError("its password is not recorded: give it to `ulmfit tune` again to see the study")
        with studies.quiet_optuna():
            storage, _ = studies.open_storage(d["storage"], out, 60)
            study = optuna.load_study(study_name=d["study"], storage=storage)
            best = studies.best(study)
            d["counts"] = studies.counts(study)
            d["best"] = None if best is None else _trial(best)
    except (ConfigError, KeyError) as e:
        d["error"] = f"cannot read the study: {e}"
    config = out / BEST
    d["config"] = str(config) if config.exists() else None
    return d
