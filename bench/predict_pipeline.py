"""`ulmfit predict` as a pipeline stage (issue 12): time to the first output line, and peak memory against the
length of the input.

(a) Time from starting `ulmfit predict RUN -` to reading the answer to one line written on its stdin, against
    the wall time of `python -c 'import torch'` on the same machine: runs alternate, the median of each is taken,
    and the ratio of the medians reported (a shared machine slows both sides alike).
(b) Peak RSS (os.wait4's ru_maxrss of the ulmfit process alone) of
    `yes 'what is the capital of france ?' | head -n N | ulmfit predict RUN -` for N = 10k and 1M, and their ratio.

    python bench/predict_pipeline.py [--run RUN] [--repeats 5] [--big 1000000] [--small 10000] [--out DIR]

Without --run, a tiny run is trained first on sample_data (pretrain -> finetune-lm -> finetune-clf, --preset
tiny) into DIR (a temporary folder by default). Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ULMFIT = [sys.executable, "-m", "ulmfit_cli"]
QUESTION = "what is the capital of france ?"


def tiny_run(out: Path) -> Path:
    steps = [
        ("pretrain", ROOT / "sample_data/books.txt", "--out", out / "lm"),
        ("finetune-lm", out / "lm", ROOT / "sample_data/trec_train.csv", "--out", out / "ft"),
        ("finetune-clf", out / "ft", ROOT / "sample_data/trec_train.csv", "--out", out / "clf"),
    ]
    for step in steps:
        subprocess.run([*ULMFIT, *map(str, step), "--preset", "tiny", "--quiet", "--overwrite"], check=True)
    return out / "clf"


def first_line_s(run: Path) -> float:
    t0 = time.perf_counter()
    p = subprocess.Popen([*ULMFIT, "predict", str(run), "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    p.stdin.write((QUESTION + "\n").encode())
    p.stdin.flush()
    select.select([p.stdout], [], [], 300)
    line = p.stdout.readline()
    elapsed = time.perf_counter() - t0
    p.stdin.close()
    p.wait()
    assert line.startswith(b"{"), line
    return elapsed


def wall_s(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def peak_rss(run: Path, n: int) -> dict:
    """Peak RSS (MB) and wall time of `ulmfit predict RUN -` fed n copies of QUESTION by `yes | head`."""
    yes = subprocess.Popen(["yes", QUESTION], stdout=subprocess.PIPE)
    head = subprocess.Popen(["head", "-n", str(n)], stdin=yes.stdout, stdout=subprocess.PIPE)
    yes.stdout.close()
    t0 = time.perf_counter()
    p = subprocess.Popen([*ULMFIT, "predict", str(run), "-"], stdin=head.stdout, stdout=subprocess.PIPE)
    head.stdout.close()
    lines = sum(1 for _ in p.stdout)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    yes.wait(), head.wait()
    assert status == 0 and lines == n, (status, lines, n)
    return {
        "lines": n,
        "max_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "wall_s": round(wall, 1),
        "lines_per_s": round(n / wall),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--small", type=int, default=10_000)
    ap.add_argument("--big", type=int, default=1_000_000)
    args = ap.parse_args()
    run = args.run or tiny_run(args.out or Path(tempfile.mkdtemp(prefix="predict-bench-")))
    first, torch_import, help_s = [], [], []
    for _ in range(args.repeats):  # alternate, so both sides see the same load on a shared machine
        torch_import.append(wall_s([sys.executable, "-c", "import torch"]))
        first.append(first_line_s(run))
        help_s.append(wall_s([*ULMFIT, "--help"]))
    small, big = peak_rss(run, args.small), peak_rss(run, args.big)
    result = {
        "run": str(run),
        "first_line_s": [round(x, 2) for x in first],
        "import_torch_s": [round(x, 2) for x in torch_import],
        "help_s_median": round(statistics.median(help_s), 2),
        "first_line_over_import_torch": round(statistics.median(first) / statistics.median(torch_import), 2),
        "rss": [small, big],
        "rss_ratio_big_over_small": round(big["max_rss_mb"] / small["max_rss_mb"], 3),
        "cpus": os.cpu_count(),
        "threads": os.environ.get("OMP_NUM_THREADS", "torch default"),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
