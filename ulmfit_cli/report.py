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

    def info(self, msg: str) -> None:
        self.console.print(msg, highlight=False)

    def notice(self, msg: str) -> None:
        """Something the user must see even with --quiet (where their work was kept)."""
        sys.stderr.write(f"ulmfit: {msg}\n")

    def warn(self, msg: str) -> None:
        self.console.print(f"[yellow]warning:[/] {msg}", highlight=False)

    def epoch_start(self, epoch: int, epochs: int, steps: int, groups: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._epoch, self._epochs, self._steps, self._done, self._t0 = epoch, epochs, steps, 0, time.time()
        if not self.console.is_terminal:  # a log file gets a plain line every 10% of the epoch instead of a bar
            return
        self._progress = Progress(
            TextColumn(f"epoch {epoch + 1}/{epochs} [dim]{groups}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=steps, loss="-")

    def step(self, loss: float | None) -> None:
        self._done += 1
        if self._progress is None and self._done % max(1, self._steps // 10) == 0:
            self.console.print(
                f"epoch {self._epoch + 1}/{self._epochs} step {self._done}/{self._steps} loss "
                f"{loss:.3f} ({time.time() - self._t0:.0f} s)",
                highlight=False,
                soft_wrap=True,
            )
        if self._progress is not None:
            self._progress.update(self._task, advance=1, **({"loss": f"{loss:.3f}"} if loss is not None else {}))

    def epoch_end(self, row: dict) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self.rows.append(row)
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


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
