"""An --out that is, or lies under, a symbolic link leading nowhere (a loop of any length, or a missing target) is
refused before any work, in one line naming the link (issue 36, part 6): not a traceback, and not advice about
free space."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import SAMPLE, one_line_error


def _links(root: Path, kind: str) -> tuple[Path, str]:
    """A broken place to write and the words the refusal must hold."""
    if kind == "loop":
        os.symlink("loop", root / "loop")
        return root / "loop", "loops back on itself"
    if kind == "loop-of-two":
        os.symlink("b", root / "a")
        os.symlink("a", root / "b")
        return root / "a", "loops back on itself"
    if kind == "dangling":
        os.symlink("nowhere", root / "dangling")
        return root / "dangling", "does not exist"
    if kind == "under-a-loop":
        os.symlink("loop", root / "loop")
        return root / "loop" / "run", "a folder above --out"
    os.symlink(root / "gone" / "deeper", root / "up")  # under a dangling link
    return root / "up" / "run", "does not exist"


KINDS = ["loop", "loop-of-two", "dangling", "under-a-loop", "under-a-dangling-link"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_training_stage_refuses_an_out_that_leads_nowhere(ulmfit, tmp_path, kind):
    out, words = _links(tmp_path, kind)
    r = ulmfit("pretrain", SAMPLE / "books.txt", "--out", out, "--preset", "tiny", "--max-tokens", "2000")
    one_line_error(r, 2, "symbolic link", words)
    assert "free space" not in r.stderr and "--resume" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if not p.is_symlink()) == []  # nothing written


@pytest.mark.parametrize("kind", KINDS)
def test_commands_of_many_runs_and_export_refuse_it_too(pipeline, ulmfit, tmp_path, kind):
    out, words = _links(tmp_path, kind)
    r = ulmfit("learning-curve", pipeline["lm"], SAMPLE / "trec_train.csv", "--test", SAMPLE / "trec_test.csv",
               "--out", out, "--preset", "tiny")  # fmt: skip
    one_line_error(r, 2, "symbolic link", words)
    onnx = out if kind == "dangling" else out.parent / "m.onnx" if kind.startswith("under") else out / "m.onnx"
    r = ulmfit("export", pipeline["clf"], "--onnx", onnx)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
