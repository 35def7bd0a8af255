"""Every shell example in the docs runs (issue 29): each line of each ```bash block of docs/index.md and the guides
runs in a scratch folder, in the page's order, and must exit 0, unless the line itself says why it cannot run
here (a comment naming the network, a GPU, something that runs until stopped, or files of the reader's own).

The scratch folder holds what the pages name: `train.csv`/`tickets.csv` (TREC-6's sample), `test.csv`, text
files, the `clf.toml` of a page's ```toml block, and tiny runs at `runs/lm`, `runs/lm-ft`, `runs/clf`. `ulmfit` is a
shim for this checkout that adds `--preset tiny` to a command that trains (unless the line sets a preset or a
config file) and `--overwrite` where it writes a run, so each example runs in seconds and a page may write a
folder an earlier line wrote."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLE, _env

DOCS = ROOT / "docs"
PAGES = [DOCS / "index.md", *sorted((DOCS / "guides").glob("*.md"))]
# a line that cannot run here says so in its own comment: the reader sees why, and the test skips it
NOT_HERE = re.compile(r"#.*\b(network|GPU|GPUs|until stopped|your own|not run here)\b")
TRAINS = ("pretrain", "finetune-lm", "finetune-clf", "distill", "pipeline", "learning-curve", "tune", "lr-find")
WRITES = (*TRAINS[:-1], "import-fastai", "import-hf")

SHIM = f"""#!/usr/bin/env bash
# `ulmfit` for the docs' examples: this checkout, the tiny preset for training, --overwrite where a run is written
args=("$@"); cmd=""
for a in "$@"; do case "$a" in --*) ;; *) cmd="$a"; break;; esac; done
if [[ " {" ".join(TRAINS)} " == *" $cmd "* && " $* " != *" --preset "* && " $* " != *" --config "* ]]; then
  args+=(--preset tiny)
fi
if [[ " {" ".join(WRITES)} " == *" $cmd "* && " $* " != *" --print-config "* && " $* " == *" --out "* ]]; then
  args+=(--overwrite)
fi
exec "{sys.executable}" -m ulmfit_cli "${{args[@]}}"
"""


def commands(page: Path) -> list[str]:
    """The page's shell lines in order (a trailing backslash joins the next line)."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(encoding="utf-8"), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip():
                lines.append(line.strip())
    return lines


def toml_files(page: Path) -> dict[str, str]:
    """A page's ```toml blocks whose first line names their file (`# clf.toml`)."""
    out = {}
    for block in re.findall(r"```toml\n(.*?)```", page.read_text(encoding="utf-8"), re.S):
        first = block.splitlines()[0]
        m = re.match(r"#\s*(\S+\.toml)", first)
        if m:
            out[m.group(1)] = block
    return out


@pytest.fixture(scope="module")
def scratch_template(pipeline, tmp_path_factory) -> Path:
    """The files and runs every page starts from (copied per page)."""
    root = tmp_path_factory.mktemp("docs-template")
    (root / "bin").mkdir()
    shim = root / "bin" / "ulmfit"
    shim.write_text(SHIM)
    shim.chmod(0o755)
    os.symlink(SAMPLE, root / "sample_data")
    for name in ("train.csv", "tickets.csv"):
        shutil.copy(SAMPLE / "trec_train.csv", root / name)
    shutil.copy(SAMPLE / "trec_test.csv", root / "test.csv")
    shutil.copy(SAMPLE / "trec_test.csv", root / "new.csv")
    shutil.copy(SAMPLE / "books.txt", root / "books.txt")
    shutil.copy(SAMPLE / "books.txt", root / "corpus.txt")
    rows = list(csv.DictReader((SAMPLE / "trec_test.csv").open(encoding="utf-8")))
    questions = "".join(r["text"] + "\n" for r in rows[:40])
    for name in ("texts.txt", "questions.txt", "q.txt", "new.txt", "unlabelled.txt"):
        (root / name).write_text(questions, encoding="utf-8")
    with (root / "emails.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "body"])
        w.writerows([i, r["text"]] for i, r in enumerate(rows[:20]))
    train = list(csv.DictReader((SAMPLE / "trec_train.csv").open(encoding="utf-8")))
    for name, part in (("reviews.csv", train[:400]), ("reviews_test.csv", rows[:100])):
        with (root / name).open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows([r["text"], 1 + len(r["text"]) % 5] for r in part)  # a number per review
    (root / "runs").mkdir()
    for name, run in (("lm", pipeline["lm"]), ("lm-ft", pipeline["ft"]), ("clf", pipeline["clf"])):
        shutil.copytree(run, root / "runs" / name)
    return root


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_every_shell_line_runs_or_says_why_not(page, scratch_template, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(scratch_template, work, symlinks=True)
    for name, text in toml_files(page).items():
        (work / name).write_text(text, encoding="utf-8")
    env = {**_env(tmp_path), "PATH": f"{work / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    for line in commands(page):
        if NOT_HERE.search(line):
            continue
        r = subprocess.run(["bash", "-o", "pipefail", "-c", line], cwd=work, env=env, capture_output=True,
                           text=True, timeout=600)  # fmt: skip
        assert r.returncode == 0, f"{page.relative_to(ROOT)}: `{line}` exited {r.returncode}:\n{r.stderr[-2000:]}"
