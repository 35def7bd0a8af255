"""`--config FILE` (issue 28): a file of flags gives the same resolved settings as the same flags on the command
line, flags override the file, every mistake in a file is one line naming the file, the key and the closest valid
name before any work, and a run records the file and can be reproduced from `info RUN --config`."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import pytest
import tomllib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SAMPLE, one_line_error
from ulmfit_cli.configfile import toml_value

TRAIN = SAMPLE / "trec_train.csv"


def floats(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


# finetune-clf settings and valid values (max_len >= bptt always: bptt <= 64, max_len >= 128)
CLF = {
    "epochs": st.integers(0, 30),
    "lr": floats(1e-6, 1.0),
    "bs": st.integers(2, 128),
    "bptt": st.integers(8, 64),
    "max_len": st.integers(128, 3000),  # above every preset's bptt (small: 70) and the bptt drawn
    "drop_mult": floats(0.0, 2.0),
    "wd": floats(0.0, 0.1),
    "lr_factor": floats(1.0, 5.0),
    "cut_frac": floats(0.01, 0.9),
    "ratio": floats(1.0, 100.0),
    "clip": floats(0.0, 2.0),
    "beta1": floats(0.0, 0.95),
    "beta2": floats(0.0, 0.999),
    "seed": st.integers(0, 2**32 - 1),
    "valid_pct": floats(0.0, 0.5),
    "lin_ftrs": st.integers(1, 200),
    "patience": st.integers(0, 5),
    "keep": st.sampled_from(["auto", "best", "last"]),
    "metric": st.sampled_from(["auto", "accuracy", "macro_f1", "valid_loss"]),
    "class_weights": st.sampled_from(["none", "balanced"]),
    "gradual_unfreezing": st.booleans(),
    "text_col": st.sampled_from(["text", "sentence"]),
    "label_col": st.sampled_from(["label", "y"]),
}
SWITCHES = {"gradual_unfreezing": ("--gradual-unfreezing", "--no-gradual-unfreezing")}


def as_flags(values: dict) -> list[str]:
    out = []
    for k, v in values.items():
        if k in SWITCHES:
            out.append(SWITCHES[k][0] if v else SWITCHES[k][1])
        else:
            out += [f"--{k.replace('_', '-')}", str(v)]
    return out


def as_file(values: dict, path: Path, table: str | None = None) -> Path:
    lines = [f"[{table}]"] if table else []
    path.write_text("\n".join(lines + [f"{k} = {toml_value(v)}" for k, v in values.items()]) + "\n")
    return path


def settings_only(text: str) -> str:
    """--print-config's output without its comment lines (they name the file it came from)."""
    return "\n".join(line for line in text.splitlines() if not line.startswith("#"))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.fixed_dictionaries({}, optional=CLF), data=st.data())
def test_a_file_resolves_as_the_same_flags_do(pipeline, ulmfit, values, data):
    """Any valid settings, some in a file (under [finetune-clf] or at the top) and the rest on the command line,
    where the file also holds other values for them: the flags win, and the resolved settings are exactly those
    of every setting given as a flag."""
    on_line = {k: v for k, v in values.items() if data.draw(st.booleans(), label=f"{k} on the command line")}
    in_file = {k: v for k, v in values.items() if k not in on_line}
    overridden = {k: data.draw(CLF[k], label=f"file's {k}") for k in on_line}
    table = data.draw(st.sampled_from([None, "finetune-clf", "finetune_clf"]), label="table")
    args = ("finetune-clf", pipeline["ft"], TRAIN, "--print-config")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = as_file({**in_file, **overridden}, Path(tmp) / "c.toml", table)
        direct = ulmfit(*args, *as_flags(values))
        from_file = ulmfit(*args, "--config", cfg, *as_flags(on_line))
    assert direct.returncode == 0, direct.stderr
    assert from_file.returncode == 0, from_file.stderr
    assert settings_only(from_file.stdout) == settings_only(direct.stdout)
    resolved = tomllib.loads(direct.stdout)
    for k, v in values.items():
        assert resolved[k] == v, k


@pytest.mark.parametrize(
    ("command", "text", "fragments"),
    [
        ("finetune-clf", "lrr = 0.1\n", ["`lrr`", "did you mean `lr`"]),
        ("finetune-clf", "epochs = 2.5\n", ["`epochs` must be an integer", "2.5"]),
        ("finetune-clf", 'lr = "fast"\n', ["`lr` must be a number"]),
        ("finetune-clf", "gradual_unfreezing = 1\n", ["`gradual_unfreezing` must be true or false"]),
        ("finetune-clf", "vocab_size = 900\n", ["`vocab_size` is a setting of pretrain", "[pretrain]"]),
        ("finetune-lm", "max_len = 100\n", ["`max_len` is a setting of finetune-clf"]),
        ("finetune-clf", "[finetune-clf]\ndrop_mul = 0.1\n", ["`drop_mul`", "did you mean `drop_mult`"]),
        ("finetune-clf", "[finetun-clf]\nlr = 0.1\n", ["[finetun-clf]", "did you mean [finetune-clf]"]),
        ("pipeline", "lr = 0.1\n", ["`lr` is a stage setting", "[finetune-clf]"]),
        ("pipeline", "[finetune-lm]\nmax_len = 100\n", ["`max_len` in [finetune-lm]", "finetune-clf's"]),
        ("pipeline", "[finetune-lm]\nepoch = 2\n", ["`epoch` in [finetune-lm]", "did you mean `epochs`"]),
        ("learning-curve", "[pretrain]\nlr = 0.1\n", ["runs no pretrain stage"]),
        ("finetune-clf", "lr = [0.1, 0.2]\n", ["takes one value"]),
        ("finetune-clf", "checkpoint_every = -1\n", ["`checkpoint_every` must be at least 0"]),
        ("finetune-clf", "lr = \n", ["not a TOML file"]),
        ("finetune-clf", "epochs = -1\n", ["`--epochs` must be >= 0", "a key of --config"]),
    ],
)
def test_a_mistake_in_the_file_is_one_line_before_any_work(pipeline, ulmfit, tmp_path, command, text, fragments):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    out = tmp_path / "out"
    args = {
        "finetune-clf": (pipeline["ft"], TRAIN, "--out", out),
        "finetune-lm": (pipeline["lm"], TRAIN, "--out", out),
        "pipeline": (TRAIN, "--corpus", SAMPLE / "books.txt", "--out", out),
        "learning-curve": (pipeline["lm"], TRAIN, "--test", TRAIN, "--out", out),
    }[command]
    r = ulmfit(command, *args, "--config", cfg)
    one_line_error(r, 2, str(cfg), *fragments)
    assert not out.exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_a_missing_file_is_one_line(pipeline, ulmfit, tmp_path):
    r = ulmfit("finetune-clf", pipeline["ft"], TRAIN, "--config", tmp_path / "none.toml")
    one_line_error(r, 2, "none.toml", "cannot read it")


def test_the_run_records_the_file_and_info_reproduces_it(pipeline, ulmfit, tmp_path):
    """The manifest holds the file's text and hash beside the resolved settings; `info RUN --config` is a file
    that resolves to exactly the run's settings again."""
    cfg = as_file({"epochs": 1, "lr": 0.03, "drop_mult": 0.2, "metric": "macro_f1"}, tmp_path / "c.toml")
    run = tmp_path / "clf"
    r = ulmfit("finetune-clf", pipeline["ft"], TRAIN, "--out", run, "--preset", "tiny", "--config", cfg,
               "--bs", "16", "--quiet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    m = json.loads((run / "manifest.json").read_text())
    assert m["config_file"]["text"] == cfg.read_text()
    assert m["config_file"]["sha256"] == hashlib.sha256(cfg.read_bytes()).hexdigest()
    assert (m["config"]["epochs"], m["config"]["lr"], m["config"]["bs"], m["config"]["metric"]) == (
        1,
        0.03,
        16,
        "macro_f1",
    )
    assert m["selection"]["metric"] == "macro_f1"
    info = ulmfit("info", run, "--config")
    assert info.returncode == 0, info.stderr
    again = tmp_path / "again.toml"
    again.write_text(info.stdout)
    resolved = ulmfit("finetune-clf", pipeline["ft"], TRAIN, "--config", again, "--print-config")
    assert resolved.returncode == 0, resolved.stderr
    settings_again = tomllib.loads(resolved.stdout)
    for k, v in settings_again.items():
        if k in m["config"]:
            assert m["config"][k] == v, k
    assert settings_again["bs"] == 16 and settings_again["preset"] == "tiny"


def test_pipeline_reads_a_table_per_stage_and_its_set_flags_win(ulmfit, tmp_path):
    cfg = tmp_path / "p.toml"
    cfg.write_text(
        'preset = "tiny"\n[pretrain]\nmax_tokens = 20000\nepochs = 1\n[finetune-lm]\nlr = 0.005\n'
        '[finetune-clf]\nepochs = 2\nclass_weights = "balanced"\nlin_ftrs = 30\n'
    )
    out = tmp_path / "p"
    r = ulmfit("pipeline", TRAIN, "--corpus", SAMPLE / "books.txt", "--out", out, "--config", cfg,
               "--clf-set", "epochs=1", "--quiet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    config = {s: json.loads((out / "fwd" / s / "config.json").read_text()) for s in ("lm", "lm-ft", "clf")}
    assert config["lm"]["max_tokens"] == 20000 and config["lm"]["preset"] == "tiny"
    assert config["lm-ft"]["lr"] == 0.005
    assert (config["clf"]["epochs"], config["clf"]["class_weights"], config["clf"]["lin_ftrs"]) == (1, "balanced", 30)
    m = json.loads((out / "fwd" / "clf" / "manifest.json").read_text())
    assert m["config_file"]["sha256"] == hashlib.sha256(cfg.read_bytes()).hexdigest()
