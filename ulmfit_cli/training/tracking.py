"""`--track tensorboard|mlflow`: a training run's losses, learning rates, validation metrics and settings in the
experiment trackers practitioners already use (the Hugging Face Trainer's `report_to`, fastai's callbacks).

The Reporter carries a `Tracking` (the CLI attaches it); the stages call it through the Reporter: `run_start`
when the run folder holds its resolved settings, a step and an epoch at a time from the training loop, `run_end`
once the manifest and pictures are written (before the folder is published), `run_failed` when the run stops.
`pipeline` and `learning-curve` open a parent first (`group`), so each stage or point is a child: an MLflow run
nested under the command's run, a TensorBoard folder under the command's.

Tracking never fails a run: every call into a tracker is guarded, and a tracker that raises (a server gone
away, a full disk) is said once on stderr and dropped for the rest of the command while training goes on.
Both libraries are optional extras (`pip install 'ulmfit-cli[tracking]'`); asking for one that is not installed
is one line and exit 2 before any work.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import math
import os
import re
import sys
from pathlib import Path

from ..errors import ConfigError

KINDS = {"tensorboard": "tensorboard", "mlflow": "mlflow"}  # --track value: the module it needs
EXPERIMENT = "ulmfit"  # the MLflow experiment when $MLFLOW_EXPERIMENT_NAME is not set
NAME_CHARS = re.compile(r"[^\w\-. :/]")  # what MLflow refuses in a metric name (a layer group "embed+decoder")
FLUSH_EVERY = 100  # MLflow: step metrics are sent in batches of this many values (one request each)


def check(kinds: list[str] | None) -> list[str]:
    """The --track values, known and installed (ConfigError before any work); duplicates dropped."""
    out = []
    for k in kinds or []:
        if k not in KINDS:
            raise ConfigError(f"`--track` must be {' or '.join(KINDS)}, got {k!r}")
        if importlib.util.find_spec(KINDS[k]) is None:
            raise ConfigError(
                f"`--track {k}` needs the {KINDS[k]} package: pip install 'ulmfit-cli[tracking]' (or {KINDS[k]})"
            )
        if k not in out:
            out.append(k)
    return out


def settings_of(config: dict) -> dict:
    """The resolved settings as flat hyperparameters (the checkpoint's own config and the free-form extras left out)."""
    return {k: v for k, v in config.items() if k not in ("hf_config", "extra") and not isinstance(v, dict | list)}


class Tracking:
    """The trackers of one command. `track_dir`: TensorBoard's root (None: inside each run folder, or the
    parent command's folder)."""

    def __init__(self, kinds: list[str], track_dir: Path | None, warn):
        self.kinds, self.track_dir, self._warn = kinds, track_dir, warn
        self.live: list = []  # the backends of the run in progress
        self.dead: set[str] = set()  # trackers dropped after a failure: not tried again in this command
        self.parent: dict | None = None  # pipeline / learning-curve: {"name", "out", "mlflow": run id}
        self._parent_backends: list = []
        self.step = 0

    # -- guarded calls -----------------------------------------------------------------------------------------

    def _call(self, backend, what: str, *args) -> None:
        if backend.kind in self.dead:
            return
        try:
            with contextlib.redirect_stdout(sys.stderr):  # stdout carries results only (MLflow prints run links)
                getattr(backend, what)(*args)
        except Exception as e:  # noqa: BLE001 - a tracker must never fail the run
            self.dead.add(backend.kind)
            with contextlib.suppress(Exception), contextlib.redirect_stdout(sys.stderr):
                backend.abandon()  # best effort: an MLflow run marked FAILED rather than left RUNNING
            reason = " ".join(str(e).split())[:200] or type(e).__name__
            self._warn(f"--track {backend.kind}: {reason}; no more tracking there for this command, training goes on")

    def _each(self, what: str, *args) -> None:
        for b in self.live:
            self._call(b, what, *args)

    def _make(self) -> list:
        out = []
        for k in self.kinds:
            if k in self.dead:
                continue
            try:
                out.append(TensorBoard(self) if k == "tensorboard" else MLflow(self))
            except Exception as e:  # noqa: BLE001
                self.dead.add(k)
                self._warn(f"--track {k}: {' '.join(str(e).split())[:200]}; training goes on without it")
        return out

    # -- what the commands and stages call ---------------------------------------------------------------------

    def group(self, command: str, out: Path, settings: dict) -> None:
        """pipeline / learning-curve: one parent for the stages or points that follow."""
        self.parent = {"name": out.name, "out": out, "command": command}
        self._parent_backends = self._make()
        for b in self._parent_backends:
            self._call(b, "start_parent", command, out, settings)

    def group_end(self, summary: dict | None, failed: bool = False) -> None:
        for b in self._parent_backends:
            self._call(b, "end_parent", summary or {}, failed)
        self._parent_backends = []

    def run_start(self, stage: str, out: Path, folder: Path, config: dict) -> None:
        self.step = 0
        self.live = self._make()
        self._each("start", stage, out, folder, settings_of(config))

    def log(self, metrics: dict, step: int | None = None, flush: bool = False) -> None:
        """Scalars at `step` (default: the last step logged); `flush` at an epoch's end (MLflow batches steps)."""
        if step is not None:
            self.step = step
        self._each("log", _scalars(metrics), self.step, flush)

    def run_end(self, manifest: dict, folder: Path) -> None:
        kept = manifest.get("best") if manifest.get("kept_epoch") == manifest.get("best_epoch") else None
        final = {f"final/{k}": v for k, v in (kept or manifest.get("final") or {}).items() if k != "epoch"}
        files = [folder / name for name in ("manifest.json", *manifest.get("plots", {}).values())]
        self._each("end", _scalars(final), [f for f in files if f.exists()], "")
        self.live = []

    def run_failed(self, e: BaseException) -> None:
        status = "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED"
        self._each("end", {}, [], status)
        self.live = []

    def tb_dir(self, out: Path, folder: Path) -> Path:
        """Where a run's TensorBoard events go: TRACK_DIR/[PARENT/]RUN, else PARENT/tensorboard/RUN under a
        pipeline or learning curve, else the run folder's tensorboard/."""
        if self.parent is not None:
            rel = _relative(out, self.parent["out"])
            root = self.track_dir / self.parent["name"] if self.track_dir else self.parent["out"] / "tensorboard"
            return root / rel
        return self.track_dir / out.name if self.track_dir else folder / "tensorboard"


def _scalars(metrics: dict) -> dict:
    """The finite numbers of `metrics` as floats, under names every tracker takes."""
    return {_name(k): float(v) for k, v in metrics.items() if _number(v)}


@functools.lru_cache(maxsize=1024)
def _name(key: str) -> str:
    return NAME_CHARS.sub("_", key)


def _relative(out: Path, parent: Path) -> Path:
    try:
        return out.resolve().relative_to(parent.resolve())
    except ValueError:
        return Path(out.name)


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


class TensorBoard:
    """Event files through torch's SummaryWriter: per-step loss and rates, per-epoch validation rows, the settings
    as text and as the HParams plugin's hyperparameters (with the final metrics, at the end)."""

    kind = "tensorboard"

    def __init__(self, tracking: Tracking):
        self.t, self.w, self.settings = tracking, None, {}

    def start(self, stage: str, out: Path, folder: Path, settings: dict) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.settings = {"stage": stage, **settings}
        self.w = SummaryWriter(str(self.t.tb_dir(out, folder)), max_queue=100, flush_secs=30)
        self.w.add_text("settings", "```\n" + json.dumps(self.settings, indent=1, default=str) + "\n```", 0)

    def log(self, metrics: dict, step: int, flush: bool) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        # one event for every scalar of the step (add_scalar writes one event per value: 1.2x the time of a tiny step)
        values = [Summary.Value(tag=k, simple_value=v) for k, v in metrics.items()]
        self.w.file_writer.add_summary(Summary(value=values), step)
        if flush:
            self.w.flush()

    def end(self, final: dict, files: list, status: str) -> None:
        if self.w is None:
            return
        if not status:  # finished: the settings and the final metrics for the HParams dashboard
            from torch.utils.tensorboard.summary import hparams

            hp = {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in self.settings.items()}
            for s in hparams(hp, final):
                self.w.file_writer.add_summary(s)
            self.log(final, self.t.step, flush=False)
        self.w.close()
        self.w = None

    def start_parent(self, command: str, out: Path, settings: dict) -> None:
        pass

    def abandon(self) -> None:
        if self.w is not None:
            self.w.close()
            self.w = None

    def end_parent(self, summary: dict, failed: bool) -> None:
        pass


class MLflow:
    """A run per stage through MlflowClient (no global active run): parameters, step metrics in batches, the final
    metrics, the manifest and plots as artifacts; nested under the command's run for pipeline/learning-curve.
    The tracking URI is MLflow's own choice ($MLFLOW_TRACKING_URI, else its local default)."""

    kind = "mlflow"

    def __init__(self, tracking: Tracking):
        # a server that went away: one short retry, not MLflow's default minutes of back-off per call
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        from mlflow.tracking import MlflowClient

        self.t, self.client, self.run_id, self.buffer = tracking, MlflowClient(), None, []

    def _experiment(self) -> str:
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
        exp = self.client.get_experiment_by_name(name)
        return exp.experiment_id if exp is not None else self.client.create_experiment(name)

    def _params(self, settings: dict) -> None:
        from mlflow.entities import Param

        params = [Param(k, str(v)[:6000]) for k, v in sorted(settings.items())]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters a request
            self.client.log_batch(self.run_id, params=params[i : i + 100])

    def start(self, stage: str, out: Path, folder: Path, settings: dict) -> None:
        parent = (self.t.parent or {}).get("mlflow")
        tags = {"ulmfit.stage": stage, "ulmfit.out": str(out.resolve())}
        if parent:
            tags["mlflow.parentRunId"] = parent
        name = str(_relative(out, self.t.parent["out"])) if self.t.parent else out.name
        self.run_id = self.client.create_run(self._experiment(), run_name=name, tags=tags).info.run_id
        self._params({"stage": stage, **settings})

    def log(self, metrics: dict, step: int, flush: bool = False) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.buffer += [Metric(k, v, now, step) for k, v in metrics.items()]
        if flush or len(self.buffer) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        while self.buffer:
            batch, self.buffer = self.buffer[:1000], self.buffer[1000:]  # MLflow: 1,000 metrics a request at most
            self.client.log_batch(self.run_id, metrics=batch)

    def end(self, final: dict, files: list, status: str) -> None:
        if self.run_id is None:
            return
        try:
            self.flush()
            if final:
                self.log(final, self.t.step, flush=True)
            for f in files:
                self.client.log_artifact(self.run_id, str(f))
        finally:
            self.buffer = []
            run_id, self.run_id = self.run_id, None
            self.client.set_terminated(run_id, status or "FINISHED")

    def abandon(self) -> None:
        self.buffer = []
        if self.run_id is not None:
            run_id, self.run_id = self.run_id, None
            self.client.set_terminated(run_id, "FAILED")

    def start_parent(self, command: str, out: Path, settings: dict) -> None:
        tags = {"ulmfit.command": command, "ulmfit.out": str(out.resolve())}
        self.run_id = self.client.create_run(self._experiment(), run_name=out.name, tags=tags).info.run_id
        self._params({"command": command, **settings})
        self.t.parent["mlflow"] = self.run_id

    def end_parent(self, summary: dict, failed: bool) -> None:
        if self.run_id is None:
            return
        metrics = _flat_numbers(summary.get("test", {}), "test")
        if metrics:
            self.log(metrics, 0, flush=True)
        run_id, self.run_id = self.run_id, None
        self.client.set_terminated(run_id, "FAILED" if failed else "FINISHED")


def _flat_numbers(d: dict, prefix: str) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat_numbers(v, f"{prefix}/{k}"))
        elif _number(v):
            out[f"{prefix}/{k}"] = float(v)
    return out
