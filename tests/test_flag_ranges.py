"""Every numeric setting of the training commands has a range, checked with the flag's name before any work:
values outside it (negative, zero where it matters, huge, NaN, infinity) are exit 2 and one line, never a
traceback (issue 27, case 8)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SAMPLE, one_line_error

BAD = {  # flag -> values outside its range
    "--seed": ["-1", "4294967296", "99999999999999999999"],
    "--epochs": ["-1"],
    "--bs": ["0", "-4"],
    "--bptt": ["0"],
    "--max-len": ["0"],
    "--lr": ["0", "-0.1", "nan", "inf"],
    "--wd": ["-1", "nan"],
    "--drop-mult": ["-0.5", "nan", "inf"],
    "--lr-factor": ["0.5", "nan"],
    "--cut-frac": ["0", "1", "nan"],
    "--ratio": ["0.5", "inf"],
    "--valid-pct": ["1", "-0.1", "nan"],
    "--patience": ["-1"],
    "--clip": ["-1", "nan"],
    "--beta1": ["1", "nan"],
    "--beta2": ["-0.1"],
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flag=st.sampled_from(sorted(BAD)), data=st.data(), command=st.sampled_from(["finetune-clf", "finetune-lm"]))
def test_out_of_range_values_are_one_line(pipeline, ulmfit, tmp_path, flag, data, command):
    value = data.draw(st.sampled_from(BAD[flag]))
    if command == "finetune-lm" and flag == "--max-len":  # the LM stages have no --max-len
        return
    out = tmp_path / f"out-{abs(hash((flag, value, command)))}"
    r = ulmfit(command, pipeline["ft"], SAMPLE / "trec_train.csv", "--out", out, "--preset", "tiny", f"{flag}={value}")
    one_line_error(r, 2, flag)
    assert not out.exists()


@pytest.mark.parametrize("value", ["-1", "4294967296"])
def test_pretrain_seed_out_of_range(ulmfit, tmp_path, value):
    r = ulmfit("pretrain", SAMPLE / "books.txt", "--out", tmp_path / "lm", "--preset", "tiny", "--seed", value)
    one_line_error(r, 2, "--seed")


OTHER = [  # (command, its arguments, flag, bad value): every command's own numeric flags
    ("predict", ["{clf}", "{test}"], "--batch-size", "0"),
    ("predict", ["{clf}", "{test}"], "--batch-size", "-3"),
    ("predict", ["{clf}", "{test}"], "--threads", "0"),
    ("predict", ["{clf}", "{test}"], "--threads", "100000000000"),
    ("predict", ["{clf}", "{test}"], "--top-k", "0"),
    ("predict", ["{clf}", "{test}"], "--max-wait", "-1"),
    ("evaluate", ["{clf}", "{test}"], "--batch-size", "0"),
    ("evaluate", ["{clf}", "{test}"], "--threads", "-2"),
    ("pretrain", ["{books}", "--out", "{out}"], "--vocab-size", "-5"),
    ("pretrain", ["{books}", "--out", "{out}"], "--emb-sz", "0"),
    ("pretrain", ["{books}", "--out", "{out}"], "--max-tokens", "-1"),
    ("finetune-lm", ["{ft}", "{books}", "--out", "{out}"], "--max-steps", "-1"),
    ("finetune-clf", ["{ft}", "{train}", "--out", "{out}"], "--checkpoint-every", "-1"),
    ("learning-curve", ["{ft}", "{train}", "--test", "{test}", "--out", "{out}"], "--seeds", "0"),
    ("learning-curve", ["{ft}", "{train}", "--test", "{test}", "--out", "{out}"], "--sizes", "-5"),
    ("lr-find", ["{ft}", "{train}", "--stage", "finetune-clf"], "--bs", "0"),
]


@pytest.mark.parametrize("command,args,flag,value", OTHER)
def test_every_commands_numeric_flags_are_one_line(pipeline, ulmfit, tmp_path, command, args, flag, value):
    fill = {"{clf}": pipeline["clf"], "{ft}": pipeline["ft"], "{test}": SAMPLE / "trec_test.csv",
            "{train}": SAMPLE / "trec_train.csv", "{books}": SAMPLE / "books.txt",
            "{out}": tmp_path / "out"}  # fmt: skip
    preset = [] if command in ("predict", "evaluate") else ["--preset", "tiny"]
    r = ulmfit(command, *[fill.get(a, a) for a in args], *preset, f"{flag}={value}")
    one_line_error(r, 2, flag)
    assert not (tmp_path / "out").exists()
