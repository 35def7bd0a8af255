"""Progress and tables on stderr (rich); results and JSON on stdout. The core never prints by itself: it
calls a Reporter, and the CLI chooses which one."""

from __future__ import annotations

import json
import sys
import time


def emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Reporter:
    """Rich progress bar per epoch and a table of epoch metrics, all on stderr."""

    def __init__(self, quiet: bool = False):
        from rich.console import Console

        self.console = Console(stderr=True, quiet=quiet)
        self._progress = None
        self.rows: list[dict] = []
        self.estimate_s: float | None = None  # the first estimate of the training time, made after TIMED steps
        self.train_s: float | None = None  # training's real time: the loop's steps and validation, and any outside it
        self._outside = 0.0  # seconds of training outside loop.fit: the contrastive step, a head fitted whole
        self.estimates: list[dict] = []  # the first estimate and each one made when more layer groups unfroze
        self._total = 0
        self.tracking = None  # a tracking.Tracking (--track): what training logs to TensorBoard or MLflow

    # -- experiment tracking (tracking.py): no-ops without --track --------------------------------------------

    def run_start(self, stage: str, out, folder, config: dict) -> None:
        """A stage's run folder holds its resolved settings: open a tracked run. Its training is timed afresh."""
        self.train_s, self._outside = None, 0.0
        if self.tracking is not None:
            self.tracking.run_start(stage, out, folder, config)

    def run_end(self, manifest: dict, folder) -> None:
        """The run's manifest and pictures are written in `folder` (not yet published): close the tracked run."""
        if self.tracking is not None:
            self.tracking.run_end(manifest, folder)

    def run_failed(self, e: BaseException) -> None:
        if self.tracking is not None:
            self.tracking.run_failed(e)

    def trained_outside_loop(self, seconds: float) -> None:
        """Training that loop.fit does not time (the contrastive step, a head fitted whole) counts in train_s. It
        comes before the loop or instead of it, so until the loop's first epoch ends it is all of train_s."""
        self._outside += seconds
        self.train_s = round(self._outside, 1)

    TIMED = 5  # steps timed (after the first, which pays for warm-up) before the estimate is made

    def fit_start(self, total_steps: int) -> None:
        """Training begins: `total_steps` optimizer steps to run. The estimate follows after the first steps."""
        self._total, self._steps_done, self._fit_t0, self._evals = total_steps, 0, time.time(), []
        self._step_t: list[float] = []  # ends of the steps timed since training began or more groups unfroze
        self._per = 0.0  # seconds per step: of the timed steps, then of the last whole epoch
        self._groups, self._window = None, self.TIMED
        self.info(f"{total_steps} steps to run; estimating the time from the first {self.TIMED + 1}")

    def _remaining(self, evals_left: int) -> float:
        """Seconds still to go: the steps left at the mean time of the timed steps, plus `evals_left` validation
        passes at the time of the last one (unknown, so 0, until the first epoch ends)."""
        return (self._total - self._steps_done) * self._per + evals_left * (self._evals[-1] if self._evals else 0.0)

    def info(self, msg: str) -> None:
        self.console.print(msg, highlight=False)

    def line(self, msg: str) -> None:
        """A line kept whole however narrow the terminal or log (a row of a table that grows as work finishes)."""
        self.console.print(msg, highlight=False, soft_wrap=True)

    def notice(self, msg: str) -> None:
        """Something the user must see even with --quiet (where their work was kept)."""
        sys.stderr.write(f"ulmfit: {msg}\n")

    def warn(self, msg: str) -> None:
        self.console.print(f"[yellow]warning:[/] {msg}", highlight=False)

    def epoch_start(self, epoch: int, epochs: int, steps: int, groups: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        if self.tracking is not None:  # the unfreezing phase: how many layer groups train from here
            self.tracking.log({"train/trainable_groups": len(groups.split(","))}, self.tracking.step + 1)

        self._epoch, self._epochs, self._steps, self._done, self._t0 = epoch, epochs, steps, 0, time.time()
        if self._total and groups != self._groups:  # gradual unfreezing: steps that train more groups cost more
            self._groups, self._step_t = groups, []
            self._window = self.TIMED if self.estimate_s is None else max(self.TIMED, min(50, steps // 4))
        if not self.console.is_terminal:  # a log file gets a plain line every 10% of the epoch instead of a bar
            return
        self._progress = Progress(
            TextColumn(f"epoch {epoch + 1}/{epochs} [dim]{groups}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeRemainingColumn(),
            TextColumn("[dim]{task.fields[whole]}[/]"),
            console=self.console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=steps, loss="-", whole="")

    def step(self, loss: float | None, lrs: dict | None = None, at: int | None = None) -> None:
        """One optimizer step done: its loss, each layer group's rate `lrs`, and `at`, the run's global step."""
        if self.tracking is not None:
            self.tracking.log({"train/loss": loss, **{f"lr/{k}": v for k, v in (lrs or {}).items()}}, at)
        self._done += 1
        if self._total:
            self._steps_done += 1
            now = time.time()
            if len(self._step_t) <= self._window:  # the first estimate times TIMED steps, later ones more
                self._step_t.append(now)  # the first step's end (it pays for warm-up), then the window
                if len(self._step_t) == self._window + 1:
                    self._per = (self._step_t[-1] - self._step_t[0]) / self._window
                    guess = round(now - self._fit_t0 + self._remaining(self._epochs - self._epoch), 1)
                    self.estimates.append({"after_steps": self._steps_done, "estimate_s": guess})
                    if self.estimate_s is None:
                        self.estimate_s = guess
                        self.info(f"estimate: {_dur(guess)} for {self._total} steps (validation not counted yet)")
                    else:
                        self.info(f"estimate with {self._groups} training: {_dur(guess)} in all")
            self._last = now
        if self._progress is None and self._done % max(1, self._steps // 10) == 0:
            self.console.print(
                f"epoch {self._epoch + 1}/{self._epochs} step {self._done}/{self._steps} loss "
                f"{loss:.3f} ({time.time() - self._t0:.0f} s)",
                highlight=False,
                soft_wrap=True,
            )
        if self._progress is not None:
            more = {"loss": f"{loss:.3f}"} if loss is not None else {}
            if self._total and self._per:
                more["whole"] = f"run: {_dur(self._remaining(self._epochs - self._epoch))} left"
            self._progress.update(self._task, advance=1, **more)

    def epoch_end(self, row: dict) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self._total:
            now = time.time()
            self._evals.append(now - getattr(self, "_last", now))  # the validation pass after the last step
            if self._done > self.TIMED:
                self._per = (getattr(self, "_last", now) - self._t0) / self._done
            self.train_s = round(self._outside + now - self._fit_t0, 1)
            if len(self._evals) == 1 and self._per and self._epochs > 1:
                left = self._remaining(self._epochs - self._epoch - 1)
                self.info(f"estimate with validation: {_dur(self.train_s + left)} in all")
        self.rows.append(row)
        if self.tracking is not None:
            skip = ("epoch", "time_s")
            self.tracking.log(
                {
                    ("train/loss_epoch" if k == "train_loss" else f"valid/{k}"): v
                    for k, v in row.items()
                    if k not in skip
                },
                flush=True,
            )
        self.console.print("  ".join(f"{k} {_fmt(v)}" for k, v in row.items()), highlight=False, soft_wrap=True)

    def table(self, rows: list[dict], title: str) -> None:
        from rich.table import Table

        if not rows:
            return
        t = Table(title=title)
        for k in rows[0]:
            t.add_column(k, justify="right")
        for r in rows:
            t.add_row(*(_fmt(v) for v in r.values()))
        self.console.print(t)


def _dur(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
