"""Wall and CPU time (user + system, of the command and its children) of shell commands, interleaved round by
round (the machine is shared: every command sees the same load), medians of the rounds and the ratios to the
first command. CPU time is the steadier figure on a loaded machine; wall time is what a user waits. Also each
command's peak resident memory (the largest of its processes', from wait4), the largest over the rounds.

  python bench/start_time.py --rounds 7 \\
      "torch=python -c 'import torch'" \\
      "predict=echo 'what is x ?' | python -m ulmfit_cli predict RUN -"

Each argument is NAME=COMMAND (run with bash). Prints one JSON line per command on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("commands", nargs="+", help="NAME=COMMAND")
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args(argv)
    named = [c.split("=", 1) for c in args.commands]
    times: dict[str, list[float]] = {n: [] for n, _ in named}
    cpu: dict[str, list[float]] = {n: [] for n, _ in named}
    peak: dict[str, float] = {n: 0.0 for n, _ in named}
    for _ in range(args.rounds):
        for name, cmd in named:
            t, c = time.perf_counter(), _children_cpu()
            p = subprocess.Popen(["bash", "-c", cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            err = p.stderr.read()
            _, status, usage = os.wait4(p.pid, 0)
            times[name].append(time.perf_counter() - t)
            cpu[name].append(_children_cpu() - c)
            peak[name] = max(peak[name], usage.ru_maxrss / 1024)
            if (rc := os.waitstatus_to_exitcode(status)) != 0:
                sys.exit(f"{name} failed ({rc}): {err.strip()[-500:]}")
    first = named[0][0]
    base, base_cpu = statistics.median(times[first]), statistics.median(cpu[first])
    for name, _ in named:
        med, med_cpu = statistics.median(times[name]), statistics.median(cpu[name])
        print(json.dumps({"name": name, "wall_s": round(med, 3), "wall_ratio": round(med / base, 2),
                          "cpu_s": round(med_cpu, 3), "cpu_ratio": round(med_cpu / base_cpu, 2),
                          "peak_rss_mb": round(peak[name]), "peak_ratio": round(peak[name] / peak[first], 2),
                          "all_wall_s": [round(t, 3) for t in times[name]]}))  # fmt: skip


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


if __name__ == "__main__":
    main()
