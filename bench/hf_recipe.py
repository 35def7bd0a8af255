"""A pretrained Hugging Face decoder through ULMFiT's stages, and the recipe question (issue 30).

For each task: the same seeded subsample of the training set for every variant (bench/cross_task.py's
covering_sample: every class first, then seeded), `finetune-lm` on its texts once (from the import-hf parent), then
`finetune-clf` per variant and seed, scored by `ulmfit evaluate` on the whole test set. Variants:

  ulmfit       the recipe: gradual unfreezing, discriminative rates (--lr-factor 2.6), STLR (the defaults)
  all-at-once  the usual transformer recipe: --no-gradual-unfreezing --lr-factor 1 (STLR is warm-up then decay)
  no-lm-ft     the recipe straight from the parent (no LM fine-tuning stage)
  all-at-once-lr5e-5  all-at-once at the rate usual for fine-tuning a whole transformer (5e-5)
  lora, lora-all-at-once, lora-lr1e-3  `--adapter lora` with the recipe, all at once, and at --lr 1e-3
  lora-all-at-once-lr1e-3, lora-all-linear-all-at-once  all at once at --lr 1e-3; on every linear layer

    python bench/hf_recipe.py WORK --parent RUN [--tasks trec6 sst2] [--n 1000] [--seeds 42 43]
        [--variants ulmfit all-at-once no-lm-ft] [--clf-flag=--epochs=8 ...] [--lm-flag=--epochs=1 ...] [--no-lm]

Resumable: each finished (task, variant, seed) is a line of WORK/results.jsonl and is skipped when run again.
Prints a markdown table on stderr at the end. Wall times are of the whole command (each stage, stderr parsed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from cross_task import TASKS, covering_sample, read, write  # bench/ is on the path

AAO = ["--no-gradual-unfreezing", "--lr-factor", "1"]  # all at once
VARIANTS = {
    "ulmfit": [],
    "all-at-once": AAO,
    "no-lm-ft": [],
    "all-at-once-lr5e-5": [*AAO, "--lr", "5e-5"],  # the usual rate
    # issue 39: LoRA adapters (PEFT) through the recipe, all at once, and at the rate LoRA papers use for encoders
    "lora": ["--adapter", "lora"],
    "lora-all-at-once": ["--adapter", "lora", *AAO],
    "lora-lr1e-3": ["--adapter", "lora", "--lr", "1e-3"],
    "lora-all-at-once-lr1e-3": ["--adapter", "lora", *AAO, "--lr", "1e-3"],
    "lora-all-linear-all-at-once": ["--adapter", "lora", "--lora-targets", "all-linear", *AAO],
}


def sh(args: list[str], log: Path) -> tuple[dict, float]:
    """Run `ulmfit ARGS --json`; its JSON summary and wall seconds (stderr into `log`)."""
    t0 = time.time()
    with open(log, "w") as err:
        r = subprocess.run(["ulmfit", *args, "--json"], stdout=subprocess.PIPE, stderr=err, text=True)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): ulmfit {' '.join(args)}; see {log}")
    return json.loads(r.stdout.strip().splitlines()[-1]), round(time.time() - t0, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("work", type=Path)
    ap.add_argument("--parent", type=Path, required=True, help="the import-hf run folder")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--tasks", nargs="+", default=["trec6", "sst2"])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seeds", nargs="+", type=int, default=[42])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument(
        "--clf-flag", action="append", default=[], help="extra finetune-clf flag, e.g. --clf-flag=--epochs=8"
    )
    ap.add_argument("--lm-flag", action="append", default=[])
    ap.add_argument(
        "--eval-flag", action="append", default=[], help="e.g. --eval-flag=--engine=onnx (same accuracy, 2x faster)"
    )
    ap.add_argument("--preset", default="small")
    ap.add_argument("--max-test", type=int, default=0, help="score on a seeded subsample of this many test rows")
    ap.add_argument("--no-lm", action="store_true", help="every variant from the parent (no finetune-lm stage)")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    results = a.work / "results.jsonl"
    have = [json.loads(x) for x in results.read_text().splitlines()] if results.exists() else []
    done = {(r["task"], r["variant"], r["seed"]) for r in have}
    clf_extra = [p for f in a.clf_flag for p in f.split("=", 1)]
    lm_extra = [p for f in a.lm_flag for p in f.split("=", 1)]
    ev_extra = [p for f in a.eval_flag for p in f.split("=", 1)]
    for task in a.tasks:
        train, test, _ = TASKS[task]
        rows = read(a.data / train)
        data = a.work / f"{task}-train-n{a.n}-s42.csv"
        if not data.exists():
            write(data, covering_sample(rows, a.n, False, 42) if a.n < len(rows) else rows)
        test_file = a.data / test
        if a.max_test:  # as cross_task.prepare draws it: seed 43, sorted
            import random

            te = read(test_file)
            test_file = a.work / f"{task}-test-n{a.max_test}-s42.csv"
            if not test_file.exists():
                write(test_file, [te[i] for i in sorted(random.Random(43).sample(range(len(te)), a.max_test))])
        (a.work / task).mkdir(exist_ok=True)
        lm = a.work / task / "lm-ft"
        if not a.no_lm and not (lm / "manifest.json").exists() and any(v != "no-lm-ft" for v in a.variants):
            summary, wall = sh(["finetune-lm", str(a.parent), str(data), "--out", str(lm), "--preset", a.preset,
                                *lm_extra], a.work / f"{task}-lm.log")  # fmt: skip
            m = json.loads((lm / "manifest.json").read_text())
            with open(a.work / "lm.jsonl", "a") as f:
                f.write(json.dumps({"task": task, "wall_s": wall, "final": summary["final"],
                                    "tokens": m.get("tokens"), "flags": lm_extra}) + "\n")  # fmt: skip
        for seed in a.seeds:
            for variant in a.variants:
                if (task, variant, seed) in done:
                    continue
                out = a.work / task / f"{variant}-s{seed}"
                start = a.parent if variant == "no-lm-ft" or a.no_lm else lm
                args = ["finetune-clf", str(start), str(data), "--out", str(out), "--preset", a.preset,
                        "--seed", str(seed), "--overwrite", *VARIANTS[variant], *clf_extra]  # fmt: skip
                summary, wall = sh(args, a.work / f"{task}-{variant}-s{seed}.log")
                ev, ev_wall = sh(
                    ["evaluate", str(out), str(test_file), *ev_extra], a.work / f"{task}-{variant}-s{seed}-eval.log"
                )
                row = {"task": task, "variant": variant, "seed": seed, "accuracy": ev["accuracy"],
                       "macro_f1": ev.get("macro_f1"), "n_test": ev["n"], "train_rows": a.n, "clf_wall_s": wall,
                       "eval_wall_s": ev_wall, "kept_epoch": summary.get("kept_epoch"), "epochs": summary["epochs"],
                       "run_bytes": sum(f.stat().st_size for f in out.rglob("*") if f.is_file()),
                       "flags": VARIANTS[variant] + clf_extra}  # fmt: skip
                with open(results, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
    have = [json.loads(x) for x in results.read_text().splitlines()] if results.exists() else []
    print("| task | variant | seed | accuracy | classifier wall s |\n|---|---|---|---|---|", file=sys.stderr)
    for r in have:
        print(f"| {r['task']} | {r['variant']} | {r['seed']} | {100 * r['accuracy']:.1f} | {r['clf_wall_s']} |",
              file=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    main()
