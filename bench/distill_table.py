"""The distillation table of bench/README.md from bench/distill.py's results.jsonl: per task and seed the teacher,
each student alone and distilled, the share of the gap to the teacher that distilling recovered, and the cost.

    python bench/distill_table.py WORK/results.jsonl

The gap a seed's distilled student closes is measured to the teacher it learned from (distill.py's first teacher
seed); "mean" rows average the seeds. A gap under half a point is reported but left out of the average share: there
is nothing to recover, and the ratio of two small differences is noise.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from statistics import mean


def main(path: str) -> None:
    rows = [json.loads(x) for x in open(path)]
    by = {r["key"]: r for r in rows}  # the last row of a key wins (a rerun)
    tasks = sorted({r["task"] for r in rows}, key=lambda t: (t != "trec6", t))
    shares: list[float] = []
    print(
        "| task | student | seed | alone | distilled (all texts) | teacher | gap recovered | student s (labelling s) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for task in tasks:
        teachers = {r["seed"]: r["accuracy"] for r in by.values() if r["task"] == task and r["system"] == "teacher"}
        students = sorted({r["system"].rsplit("-", 1)[0] for r in by.values() if r["task"] == task
                           and r["system"].endswith(("-alone", "-distilled"))})  # fmt: skip
        for st in students:
            per = defaultdict(dict)
            for r in by.values():
                if r["task"] != task or r["system"] not in (f"{st}-alone", f"{st}-distilled"):
                    continue
                kind = r["system"].rsplit("-", 1)[1]
                if kind == "distilled" and "/distilled-all/" not in r["key"]:
                    continue
                per[r["seed"]][kind] = r
            for seed in sorted(per):
                a, d = per[seed].get("alone"), per[seed].get("distilled")
                if not (a and d):
                    continue
                t = teachers.get(d.get("teacher_seed", 42))
                if t is None:  # its teacher not scored (yet)
                    continue
                gap = t - a["accuracy"]
                share = (d["accuracy"] - a["accuracy"]) / gap if gap and gap >= 0.005 else None
                if share is not None:
                    shares.append(share)
                cost = f"{d['train_wall_s']:,.0f}" + (f" ({d['labelling_s']:,.0f})" if d.get("labelling_s") else "")
                print(f"| {task} | {st} | {seed} | {100 * a['accuracy']:.1f} | {100 * d['accuracy']:.1f} | "
                      f"{100 * t:.1f} | " + (f"{100 * share:.0f}% of {100 * gap:.1f}" if share is not None else
                      f"({100 * gap:+.1f} gap)") + f" | {cost} |")  # fmt: skip
        for seed, acc in sorted(teachers.items()):
            print(f"| {task} | teacher | {seed} | | | {100 * acc:.1f} | | |")
    if shares:
        lo, hi = 100 * min(shares), 100 * max(shares)
        print(f"\nmean share of the gap recovered, over the {len(shares)} student-task-seeds with a gap of half a "
              f"point or more: {100 * mean(shares):.0f}% (from {lo:.0f}% to {hi:.0f}%)")  # fmt: skip
    curve = sorted((r["unlabelled"], r["accuracy"], r["task"], f"{r['system']} s{r['seed']}") for r in by.values()
                   if r["system"].endswith("-distilled") and r.get("unlabelled"))  # fmt: skip
    if curve:
        print("\nunlabelled texts -> accuracy:", "; ".join(f"{t} {s} {n:,}: {100 * a:.1f}" for n, a, t, s in curve))


if __name__ == "__main__":
    main(sys.argv[1])
