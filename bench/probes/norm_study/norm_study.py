"""Pre-LN, Post-LN and ResiDual where they differ in theory: depth and warm-up (issue 15).

For every seed, depth (--depths), STLR --cut-frac (--cut-fracs) and --norm-position, one ULMFiT pipeline:
pretrain on a slice of the book corpus -> LM validation perplexity; finetune-lm on TREC-6's training texts ->
fine-tuned perplexity; finetune-clf -> TREC-6 test accuracy; and a second classifier on a sample of SST-2,
straight from the pretrained LM (no LM fine-tuning on SST-2: the budget) -> SST-2 test accuracy. Each seed also
gets an AWD-LSTM pipeline whose pretraining runs as long (wall time) as the median transformer pretraining of
that seed, as the reference line. Every command is the real CLI, called in-process (one interpreter per
pipeline, so torch is imported once); `--workers` pipelines run side by side, each on one thread.

A pipeline "diverged" when pretraining stopped on a non-finite loss (exit 1), or its final LM validation loss
is no better than a uniform guess over the vocabulary (ln V), or worse than after its first epoch.

    PYTHONPATH=. python bench/probes/norm_study/norm_study.py run WORK [--workers 2] [--depths 4 8 12] ...
    PYTHONPATH=. python bench/probes/norm_study/norm_study.py report WORK \\
        [--png bench/probes/norm_study/norm_study.png]   # markdown on stdout

Results are appended to WORK/results.jsonl as each pipeline ends; `run` skips pipelines already there or
started (a run folder exists), counting the unfinished ones against --workers, so a study can be continued or
given more workers while its pipelines run; `report` summarises whatever has run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

DATA = Path("/work/shared/data")
VARIANTS = ("pre", "post", "residual")


def prepare(work: Path, corpus_lines: int, sample: int) -> None:
    """The corpus slice and the task samples (seeded), written once into WORK."""
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "corpus.txt").exists():
        lines = []
        with open(DATA / "gutenberg/train_000.txt", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    lines.append(line)
                if len(lines) >= corpus_lines:
                    break
        (work / "corpus.txt").write_text("".join(lines), encoding="utf-8")
    import pandas as pd

    for name, src in (("trec_train.csv", "trec/train.csv"), ("sst2_train.csv", "sst2/train.csv")):
        if not (work / name).exists():
            df = pd.read_csv(DATA / src, keep_default_na=False, dtype=str)
            df.sample(n=min(sample, len(df)), random_state=0).to_csv(work / name, index=False)


def configs(a) -> list[dict]:
    """In the order they run: --depths seed by seed, each seed's AWD-LSTM, then --later-depths seed by seed (so
    that a study cut short by its deadline has whole seeds of the first depths)."""
    out = []
    for depths in (a.depths, a.later_depths):
        for seed in a.seeds:
            for depth, cut, norm in itertools.product(depths, a.cut_fracs, VARIANTS):
                out.append({"seed": seed, "backbone": "transformer", "depth": depth, "cut_frac": cut, "norm": norm})
            if depths is a.depths:
                out.append({"seed": seed, "backbone": "awd-lstm", "depth": 3, "cut_frac": 0.1, "norm": "-"})
    return out


def key(c: dict) -> str:
    return f"{c['backbone']}-{c['norm']}-d{c['depth']}-c{c['cut_frac']}-s{c['seed']}"


# ---- one pipeline (a worker process) -----------------------------------------------------------------------


def cli(*args) -> tuple[int, str]:
    """The real CLI in this process: (exit code, stdout)."""
    from ulmfit_cli.cli.main import app

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            rc = app([str(a) for a in args], standalone_mode=False)
        except SystemExit as e:
            rc = e.code
    return int(rc or 0), buf.getvalue()


def manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def one(c: dict, work: Path, a) -> dict:
    out = work / "runs" / key(c)
    out.mkdir(parents=True, exist_ok=True)
    common = ("--preset", "small", "--seed", c["seed"], "--quiet", "--overwrite", "--checkpoint-every", 0)
    if c["backbone"] == "transformer":
        arch = ["--backbone", "transformer", "--emb-sz", a.width, "--n-hid", 4 * a.width, "--n-heads", 4]
        arch += ["--n-layers", c["depth"], "--norm-position", c["norm"], "--cut-frac", c["cut_frac"]]
        steps = a.steps
    else:  # the reference: fastai's AWD-LSTM, 3 layers, for as long as the transformers' pretraining took
        arch = ["--backbone", "awd-lstm", "--emb-sz", 2 * a.width, "--n-hid", 6 * a.width, "--n-layers", 3]
    lm_args = ["--vocab-size", a.vocab, "--tokenizer-sample-lines", 5000, "--bs", 32, "--epochs", 2]
    lm_args += ["--max-tokens", a.max_tokens, "--lr", a.lr]  # the last 10% of the tokens is the validation text
    lm_args += ["--cache-dir", work / "cache"]
    if c["backbone"] != "transformer":  # two short runs give the step time s and the fixed cost f: t = f + n s
        probe = []
        for n in (4, 24):
            t0 = time.time()
            cli("pretrain", work / "corpus.txt", *arch, *lm_args, "--max-steps", n, "--out", out / "probe", *common)
            probe.append(time.time() - t0)
        per = max((probe[1] - probe[0]) / 20, 1e-3)
        steps = max(10, int((c["target_s"] - (probe[0] - 4 * per)) / per))
    lm_args += ["--max-steps", steps]
    row = dict(c, steps=steps)
    t0 = time.time()
    rc, _ = cli("pretrain", work / "corpus.txt", *arch, *lm_args, "--out", out / "lm", *common)
    row["pretrain_s"] = round(time.time() - t0, 1)
    if rc != 0:
        return dict(row, diverged=True, failed="pretrain", rc=rc)
    hist = manifest(out / "lm")["history"]
    last = hist[-1]
    row.update(lm_ppl=last["perplexity"], lm_loss_first=hist[0]["valid_loss"], lm_loss=last["valid_loss"])
    row.update(grad_norm=last.get("grad_norm"), layer_cos=last.get("layer_cos"))
    diverged = not math.isfinite(last["valid_loss"]) or last["valid_loss"] > math.log(a.vocab)
    diverged = diverged or last["valid_loss"] > hist[0]["valid_loss"] + 0.05
    row["diverged"] = diverged
    return downstream(row, out, work, a, common, t0)


def downstream(row: dict, out: Path, work: Path, a, common: tuple, t0: float) -> dict:
    """finetune-lm on TREC-6, the TREC-6 classifier from it, the SST-2 classifier from the pretrained LM."""
    ft_args = ["--epochs", 1, "--max-steps", a.ft_steps, "--cache-dir", work / "cache"]
    rc, _ = cli("finetune-lm", out / "lm", work / "trec_train.csv", *ft_args, "--out", out / "ft", *common)
    if rc == 0:
        row["ft_ppl"] = manifest(out / "ft")["final"]["perplexity"]
    for task, parent, test in (("trec", out / "ft", "trec/test.csv"), ("sst2", out / "lm", "sst2/test.csv")):
        if not (parent / "manifest.json").exists():
            continue
        clf = out / f"clf_{task}"
        clf_args = ["--epochs", a.clf_epochs, "--lr", a.clf_lr]
        rc, _ = cli("finetune-clf", parent, work / f"{task}_train.csv", *clf_args, "--out", clf, *common)
        if rc != 0:
            row[f"{task}_failed"] = rc
            continue
        rc, js = cli("evaluate", clf, DATA / test, "--json")
        if rc == 0:
            row[f"{task}_acc"] = json.loads(js)["accuracy"]
    row["wall_s"] = round(time.time() - t0, 1)
    return row


# ---- the study ---------------------------------------------------------------------------------------------


def done(work: Path) -> list[dict]:
    """One row per pipeline: a later line for the same pipeline (`redo`) replaces an earlier one."""
    path = work / "results.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return list({key(r): r for r in rows}.values())


def redo(a) -> None:
    """Run again the fine-tuning steps of the AWD-LSTM pipelines that have no TREC-6 result, on their pretrained
    LM (used once: load_weights refused a valid safetensors file whose first byte was 0x80, since fixed)."""
    work = Path(a.work)
    common = ("--preset", "small", "--quiet", "--overwrite", "--checkpoint-every", 0)
    for r in done(work):
        if r["backbone"] == "awd-lstm" and "trec_acc" not in r and not r.get("failed"):
            out = work / "runs" / key(r)
            r = {k: v for k, v in r.items() if not k.endswith("_failed")}
            row = downstream(r, out, work, a, (*common, "--seed", r["seed"]), time.time() - r["pretrain_s"])
            with open(work / "results.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")


def run(a) -> None:
    work = Path(a.work)
    prepare(work, a.corpus_lines, a.sample)
    started = {p.name for p in (work / "runs").iterdir()} if (work / "runs").exists() else set()
    todo = [c for c in configs(a) if key(c) not in {key(r) for r in done(work)} | started]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    running: list[tuple[subprocess.Popen, dict]] = []
    passthrough = [f"--{k.replace('_', '-')}={v}" for k, v in vars(a).items() if k in ONE_FLAGS]
    while todo or running:
        # pipelines started by an earlier `run` of this WORK and still going count against --workers
        elsewhere = len(started - {key(r) for r in done(work)})
        while todo and len(running) + elsewhere < a.workers:
            ready = [i for i, c in enumerate(todo) if c["backbone"] != "awd-lstm" or lstm_ready(c, work, a)]
            if not ready:
                break
            c = todo.pop(ready[0])  # the first that can start; an AWD-LSTM waits for its seed's transformers
            if c["backbone"] == "awd-lstm":
                walls = [r["pretrain_s"] for r in done(work) if r["seed"] == c["seed"] and r["depth"] in a.depths]
                c = dict(c, target_s=statistics.median(walls))
            cmd = [sys.executable, __file__, "one", str(work), "--config", json.dumps(c), *passthrough]
            running.append((subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL), c))
            print(f"{time.strftime('%H:%M:%S')} start {key(c)}", file=sys.stderr, flush=True)
        time.sleep(2)
        for p, c in list(running):
            if p.poll() is not None:
                running.remove((p, c))
                print(f"{time.strftime('%H:%M:%S')} end {key(c)} rc {p.returncode}", file=sys.stderr, flush=True)


ONE_FLAGS = (
    "width",
    "vocab",
    "steps",
    "max_tokens",
    "lr",
    "ft_steps",
    "clf_epochs",
    "clf_lr",
    "corpus_lines",
    "sample",
)


def lstm_ready(c: dict, work: Path, a) -> bool:
    """The AWD-LSTM of a seed starts once that seed's transformers of --depths have all ended: the median of their
    pretraining wall times is its budget."""
    finished = {key(r) for r in done(work)}
    mine = [t for t in configs(a) if t["seed"] == c["seed"] and t["backbone"] != "awd-lstm" and t["depth"] in a.depths]
    return all(key(t) in finished for t in mine)


def main_one(a) -> None:
    import torch

    torch.set_num_threads(1)
    prepare(Path(a.work), a.corpus_lines, a.sample)  # already there when `run` started this worker
    row = one(json.loads(a.config), Path(a.work), a)
    with open(Path(a.work) / "results.jsonl", "a") as f:  # one short line per pipeline: appends do not interleave
        f.write(json.dumps(row) + "\n")


# ---- the report ----------------------------------------------------------------------------------------------


def _ms(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(statistics.mean(values), fmt)} ± {format(statistics.stdev(values), fmt)}"


def unpause(rows: list[dict], work: Path, pauses: str) -> None:
    """Take out of each pipeline's pretraining wall time the parts of the pauses listed in `pauses` (lines
    "HH:MM:SS HH:MM:SS", UTC, the day the pretraining ended: every process of the study stopped with SIGSTOP
    while the machine was needed quiet) that fell inside it. A pretraining ends when its manifest is written
    (`created`), so it ran over [created - pretrain_s, created]."""
    from datetime import datetime, timezone

    spans = [line.split() for line in Path(pauses).read_text().splitlines() if line.strip()]
    for r in rows:
        end = datetime.fromisoformat(manifest(work / "runs" / key(r) / "lm")["created"].replace("Z", "+00:00"))
        start = end.timestamp() - r["pretrain_s"]
        day = end.astimezone(timezone.utc).strftime("%Y-%m-%d")
        cut = 0.0
        for a, b in spans:
            t = [datetime.fromisoformat(f"{day}T{x}+00:00").timestamp() for x in (a, b)]
            cut += max(0.0, min(t[1], end.timestamp()) - max(t[0], start))
        r["pretrain_s"] = round(r["pretrain_s"] - cut, 1)


def report(a) -> None:
    rows = done(Path(a.work))
    if a.pauses:
        unpause(rows, Path(a.work), a.pauses)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["backbone"], r["depth"], r["cut_frac"], r["norm"]), []).append(r)
    print("| backbone | depth | cut-frac | norm | seeds | diverged | LM ppl | fine-tuned ppl | TREC-6 acc | SST-2 acc |"
          " top-block cos | grad norm block 1 / top | pretrain s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (bb, depth, cut, norm), rs in sorted(groups.items(), key=lambda kv: (kv[0][0] != "transformer", *kv[0][1:])):
        ok = [r for r in rs if not r.get("failed")]
        cos = [r["layer_cos"][-1] for r in ok if r.get("layer_cos")]
        ratio = [r["grad_norm"][0] / r["grad_norm"][-1] for r in ok if r.get("grad_norm") and r["grad_norm"][-1]]
        cells = [
            bb, depth if bb == "transformer" else "3 (LSTM)", cut, norm, len(rs), sum(bool(r["diverged"]) for r in rs),
            _ms([r["lm_ppl"] for r in ok], ".1f"), _ms([r["ft_ppl"] for r in ok if "ft_ppl" in r], ".1f"),
            _ms([r["trec_acc"] for r in ok if "trec_acc" in r], ".3f"),
            _ms([r["sst2_acc"] for r in ok if "sst2_acc" in r], ".3f"),
            _ms(cos, ".3f"), _ms(ratio, ".2f"), _ms([r["pretrain_s"] for r in rs], ".0f"),
        ]  # fmt: skip
        print("| " + " | ".join(map(str, cells)) + " |")
    if a.png:
        draw(rows, Path(a.png))


def draw(rows: list[dict], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tr = [r for r in rows if r["backbone"] == "transformer" and not r.get("failed")]
    cuts = sorted({r["cut_frac"] for r in tr})
    metrics = (("lm_ppl", "LM validation perplexity"), ("trec_acc", "TREC-6 accuracy"), ("sst2_acc", "SST-2 accuracy"))
    fig = Figure(figsize=(12, 3.6 * len(cuts)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(cuts), len(metrics), squeeze=False)
    lstm = [r for r in rows if r["backbone"] == "awd-lstm" and not r.get("failed")]
    for i, cut in enumerate(cuts):
        for j, (m, label) in enumerate(metrics):
            ax = axes[i][j]
            for k, norm in enumerate(VARIANTS):
                pts = sorted((r["depth"], r[m]) for r in tr if r["cut_frac"] == cut and r["norm"] == norm and m in r)
                depths = sorted({d for d, _ in pts})
                means = [statistics.mean(v for d2, v in pts if d2 == d) for d in depths]
                ax.plot([d + (k - 1) * 0.15 for d, _ in pts], [v for _, v in pts], ".", color=f"C{k}", alpha=0.5)
                ax.plot(depths, means, "o-", color=f"C{k}", label=norm)
            ref = [r[m] for r in lstm if m in r]
            if ref:
                ax.axhline(statistics.mean(ref), color="grey", linestyle="--", label="AWD-LSTM (same wall time)")
            ax.set(xlabel="blocks", ylabel=label, title=f"{label}, cut-frac {cut}")
            if m == "lm_ppl":
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    fig.savefig(path, dpi=90)
    draw_blocks(tr, path.with_name(path.stem + "_blocks.png"))


def draw_blocks(tr: list[dict], path: Path) -> None:
    """The deepest model's diagnostics at the end of pretraining, per block: why the variants differ."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    depth = max(r["depth"] for r in tr)
    fig = Figure(figsize=(11, 4), layout="constrained")
    FigureCanvasAgg(fig)
    grad_ax, cos_ax = fig.subplots(1, 2)
    for r in sorted((r for r in tr if r["depth"] == depth and r.get("grad_norm")), key=lambda r: r["seed"]):
        style = dict(color=f"C{VARIANTS.index(r['norm'])}", linestyle="-" if r["cut_frac"] > 0.1 else "--")
        label = f"{r['norm']}, cut-frac {r['cut_frac']}" if r["seed"] == min(x["seed"] for x in tr) else None
        blocks = range(1, depth + 1)
        grad_ax.plot(blocks, [v or float("nan") for v in r["grad_norm"]], marker=".", label=label, **style)
        cos_ax.plot(blocks, r["layer_cos"], marker=".", **style)
    grad_ax.set_yscale("log")
    grad_ax.set(xlabel="block", ylabel="gradient norm", title=f"{depth} blocks: gradient norm, last pretraining epoch")
    cos_ax.set(xlabel="block", ylabel="cos(output, input)", title="similarity of consecutive layers' outputs")
    grad_ax.legend(fontsize="small")
    for ax in (grad_ax, cos_ax):
        ax.grid(alpha=0.3, which="both")
    fig.savefig(path, dpi=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=("run", "one", "report", "redo"))
    ap.add_argument("work")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--depths", type=int, nargs="+", default=[4, 12])
    ap.add_argument("--later-depths", type=int, nargs="*", default=[8])
    ap.add_argument("--lr", type=float, default=5e-3, help="pretraining peak rate (the small preset's is 1e-3)")
    ap.add_argument("--clf-lr", type=float, default=5e-3)
    ap.add_argument("--cut-fracs", type=float, nargs="+", default=[0.02, 0.3])
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=120, help="pretraining steps (bs 32 x bptt 70 tokens each)")
    ap.add_argument("--max-tokens", type=int, default=300_000)
    ap.add_argument("--ft-steps", type=int, default=30)
    ap.add_argument("--clf-epochs", type=int, default=3)
    ap.add_argument("--corpus-lines", type=int, default=12000)
    ap.add_argument("--sample", type=int, default=2000, help="training examples of each task (seeded sample)")
    ap.add_argument("--config")
    ap.add_argument("--png")
    ap.add_argument("--pauses", help="report: pauses to take out of the pretraining wall times (see unpause)")
    a = ap.parse_args()
    random.seed(0)
    {"run": run, "one": main_one, "report": report, "redo": redo}[a.cmd](a)


if __name__ == "__main__":
    main()
