"""What `--track` costs a training step (issue 28): the same finetune-clf run without tracking and with `--track
tensorboard` (and `--track mlflow` to a local SQLite store), alternating, each in its own process; the run's own
training-loop time (the --json summary's train_s: every step and validation pass, not the start-up), whose
ratio is the per-step cost since every run takes the same steps.

    python bench/track_cost.py PARENT TRAIN [--rounds 3] [--preset tiny] [--flag=--epochs=4 ...] [--mlflow]

Run it alone on the machine: it measures time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run(args: list[str], env: dict) -> dict:
    p = subprocess.run([sys.executable, "-m", "ulmfit_cli", *args], capture_output=True, text=True, env=env)
    if p.returncode:
        sys.exit(f"failed: {p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("parent")
    ap.add_argument("train")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--flag", action="append", default=[])
    ap.add_argument("--mlflow", action="store_true", help="also --track mlflow (a SQLite store in a temp folder)")
    a = ap.parse_args()
    extra = [p for f in a.flag for p in f.split("=", 1)]
    kinds = {"none": [], "tensorboard": ["--track", "tensorboard"]}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db", "ULMFIT_CACHE": f"{tmp}/cache"}
        if a.mlflow:
            kinds["mlflow"] = ["--track", "mlflow"]
        loop: dict[str, list[float]] = {k: [] for k in kinds}
        for r in range(a.rounds):
            for kind, flags in kinds.items():
                out = Path(tmp) / f"{kind}-{r}"
                s = run(["finetune-clf", a.parent, a.train, "--out", str(out), "--preset", a.preset, "--json",
                         "--quiet", *flags, *extra], env)  # fmt: skip
                loop[kind].append(s["train_s"])
                print(f"round {r + 1} {kind}: training loop {s['train_s']} s", file=sys.stderr, flush=True)
    base = statistics.median(loop["none"])
    print("| tracking | training loop s (median) | each round | vs none |\n|---|---|---|---|")
    for kind, xs in loop.items():
        med = statistics.median(xs)
        print(f"| {kind} | {med:.2f} | {', '.join(f'{x:.2f}' for x in xs)} | {med / base:.3f}x |")


if __name__ == "__main__":
    main()
