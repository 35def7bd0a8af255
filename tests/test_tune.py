"""`ulmfit tune` (issue 41): the space file's checks (table-driven and property tests), a tiny study end to end
through the CLI (three trials, one pruned; best.toml reproduces the best trial exactly; `info DIR`), Ctrl-C in a
trial and the rerun that resumes it, two worker processes on one study on a real PostgreSQL server (where the
pgserver package is installed: the dev extra), and two on one SQLite study, one SIGKILLed mid-trial, whose trial
the other retries from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SAMPLE, one_line_error
from ulmfit_cli.errors import ConfigError
from ulmfit_cli.workflows import space as spaces

TRAIN = SAMPLE / "trec_train.csv"  # 2,000 questions: 200 validate each trial, enough to tell lr 1e-6 from 0.05
# lr 1e-6 learns nothing in an epoch: with the median pruner such a trial stops after its first epoch. patience
# changes nothing in 3 epochs, so the trials of one rate score alike (none is pruned for a worse draw of it)
SPACE = "[lr]\nchoices = [1e-6, 0.05]\n\n[patience]\nchoices = [0, 4]\n"
FLAGS = ["--preset", "tiny", "--epochs", "3", "--sampler", "random", "--quiet"]


def _space(tmp_path: Path, text: str = SPACE) -> Path:
    path = tmp_path / "space.toml"
    path.write_text(text, encoding="utf-8")
    return path


# ---- the space file ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[lrr]\nlow = 1e-4\nhigh = 1e-2\n", "`lrr` is not a finetune-clf setting; did you mean `lr`?"),
        ("[alpha]\nlow = 0.0\nhigh = 2.0\n", "`alpha` is a finetune-lm setting"),
        ("[device]\nchoices = ['cpu']\n", "`device` is how a trial runs"),
        ("[seed]\nlow = 1\nhigh = 9\n", "`seed` would be searched for luck"),
        ("[lr]\nlow = 0.1\nhigh = 0.01\n", "[lr]: low 0.1 is above high 0.01"),
        ("[drop_mult]\nlow = 0.0\nhigh = 1.0\nlog = true\n", "[drop_mult]: a log range must lie above 0"),
        ("[drop_mult]\nlow = -1.0\nhigh = 1.0\n", "`--drop-mult` must be >= 0"),
        ("[pooling]\nchoices = []\n", "[pooling]: choices must be a non-empty list"),
        ("[epochs]\nlow = 2.5\nhigh = 4\n", "[epochs]: low must be an integer"),
        ("[gradual_unfreezing]\nlow = 0\nhigh = 1\n", "a switch takes choices"),
        ("[lr]\nlo = 0.1\nhigh = 1\n", "has no key `lo`; did you mean `low`?"),
        ("lr = 0.01\n", "`lr` must be a table"),
        ("", "searches nothing"),
        ("[lr\n", "not a TOML file"),
    ],
)
def test_a_bad_space_is_one_line_before_any_work(pipeline, ulmfit, tmp_path, text, fragment):
    out = tmp_path / "tune"
    r = ulmfit("tune", pipeline["ft"], TRAIN, "--trials", "2", "--space", _space(tmp_path, text), "--out", out)
    one_line_error(r, 2, fragment)
    assert not out.exists()


def test_a_flag_and_the_space_cannot_both_set_a_setting(pipeline, ulmfit, tmp_path):
    r = ulmfit("tune", pipeline["ft"], TRAIN, "--trials", "2", "--space", _space(tmp_path), "--lr", "0.01")
    one_line_error(r, 2, "[lr] is searched but `--lr` fixes it")
    r = ulmfit("tune", pipeline["ft"], TRAIN, "--trials", "2", "--alpha", "1")  # finetune-lm's, not the stage's
    one_line_error(r, 2, "`--alpha` is not a finetune-clf setting")
    r = ulmfit("tune", pipeline["ft"], TRAIN, "--trials", "2", "--storage", tmp_path / "s.db", "--out", tmp_path / "t")
    one_line_error(r, 2, "an SQLite file is given as sqlite:///")


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--space-preset", "nope"], "`--space-preset` must be one of awd-lstm, transformer, hf"),
        (["--space-preset", "hf", "--space", "s.toml"], "give --space or --space-preset, not both"),
        (["--sampler", "cmaes"], "`--sampler` must be tpe or random or grid"),
        (
            ["--sampler", "grid"],
            "the default awd-lstm space: `--sampler grid` tries every combination of listed "
            "values, and [lr] is a range",
        ),  # fmt: skip
        (["--sampler", "grid", "--space", "s.toml"], "s.toml: `--sampler grid` tries every combination"),
        (["--pruner", "hyperband"], "`--pruner` must be median or halving or none"),
        (["--stage", "pretrain"], "`--stage` must be finetune-clf or finetune-lm"),
        (["--valid-pct", "0"], "scores each trial on validation data: give --valid"),
        (["--storage", "nosuchdb://x"], "`--storage nosuchdb://x`: cannot open it"),
        (["--storage", "not a url://"], "not a database URL"),
    ],
)
def test_bad_options_are_one_line_and_make_no_folder(pipeline, ulmfit, tmp_path, flags, fragment):
    out = tmp_path / "tune"
    (tmp_path / "s.toml").write_text("[drop_mult]\nlow = 0.1\nhigh = 0.5\n", encoding="utf-8")
    flags = [str(tmp_path / f) if f.endswith(".toml") else f for f in flags]
    r = ulmfit("tune", pipeline["ft"], TRAIN, "--trials", "2", *flags, "--out", out)
    one_line_error(r, 2, fragment)
    assert not out.exists()


def test_the_default_space_is_the_parents_family_less_the_flags_given(pipeline, ulmfit):
    r = ulmfit("tune", pipeline["ft"], TRAIN, "--trials", "2", "--epochs", "3", "--print-space")
    assert r.returncode == 0, r.stderr
    printed = spaces.parse(r.stdout, "stdout", "finetune-clf")
    wanted = spaces.tables(spaces.PRESETS["awd-lstm"]["finetune-clf"], "preset", "finetune-clf")
    assert printed == [d for d in wanted if d.name != "epochs"]
    r = ulmfit("tune", pipeline["ft"], TRAIN, "--trials", "2", "--stage", "finetune-lm", "--space-preset", "hf",
               "--print-space")  # fmt: skip
    assert [d.name for d in spaces.parse(r.stdout, "stdout", "finetune-lm")] == ["lr", "epochs", "lr_factor"]


def test_a_lora_classifiers_default_space_moves_its_rate_with_the_default(ulmfit, tmp_path):
    """--adapter lora trains at 5x the rate by default (config.ADAPTER_CLF): the hf space's rate range moves with it,
    else a search of a LoRA classifier would try only rates below its own default."""
    import hf_tiny

    hf_tiny.write_model(tmp_path / "gpt2", "gpt2", seed=1)
    assert ulmfit("import-hf", tmp_path / "gpt2", "--out", tmp_path / "lm", "-q").returncode == 0
    ranges = {}
    for flags in ((), ("--adapter", "lora")):
        r = ulmfit("tune", tmp_path / "lm", TRAIN, "--trials", "2", "--print-space", *flags)
        assert r.returncode == 0, r.stderr
        ranges[flags] = {d.name: d for d in spaces.parse(r.stdout, "stdout", "finetune-clf")}
    full, lora = ranges[()], ranges[("--adapter", "lora")]
    assert (lora["lr"].low, lora["lr"].high) == pytest.approx((5 * full["lr"].low, 5 * full["lr"].high))
    assert lora["lr"].log and {k: v for k, v in lora.items() if k != "lr"} == {
        k: v for k, v in full.items() if k != "lr"
    }


def test_every_preset_is_a_valid_space_of_its_stage():
    for family, stages in spaces.PRESETS.items():
        assert set(stages) == set(spaces.STAGES), family
        for stage, tables in stages.items():
            space = spaces.tables(tables, family, stage)
            assert {"lr", "epochs"} <= {d.name for d in space}, (family, stage)
            assert spaces.parse(spaces.render(space), family, stage) == space


def test_the_guide_lists_the_default_spaces_as_they_are():
    guide = (Path(__file__).resolve().parents[1] / "docs" / "guides" / "tune.md").read_text(encoding="utf-8")
    for family, stages in spaces.PRESETS.items():
        for stage, tables in stages.items():
            assert f"| {family} | {stage} | {spaces.summary(spaces.tables(tables, family, stage))} |" in guide


numbers = st.floats(1e-6, 1e3, allow_nan=False)


@settings(max_examples=80, deadline=None)
@given(a=numbers, b=numbers, log=st.booleans(), lo=st.integers(0, 50), span=st.integers(0, 50))
def test_a_valid_range_round_trips_and_a_reversed_one_is_refused(a, b, log, lo, span):
    """Any ranges within the settings' rules parse, render and parse back to the same space; swapped bounds fail
    on the one line that names the table."""
    low, high = min(a, b), max(a, b)
    text = (
        f"[lr]\nlow = {low!r}\nhigh = {high!r}\nlog = {str(log).lower()}\n\n[epochs]\nlow = {lo}\nhigh = {lo + span}\n"
    )
    space = spaces.parse(text, "s.toml", "finetune-clf")
    assert [(d.name, d.low, d.high) for d in space] == [("lr", low, high), ("epochs", lo, lo + span)]
    assert spaces.parse(spaces.render(space), "s.toml", "finetune-clf") == space
    if low < high:
        with pytest.raises(ConfigError, match=r"^s.toml: \[lr\]: low .* is above high"):
            spaces.parse(f"[lr]\nlow = {high!r}\nhigh = {low!r}\n", "s.toml", "finetune-clf")


@settings(max_examples=80, deadline=None)
@given(lo=st.integers(1, 30), span=st.integers(0, 40), step=st.integers(1, 7), drops=st.lists(
    st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=5, unique=True), log=st.booleans())  # fmt: skip
def test_a_grid_lists_every_value_optuna_would_draw_and_refuses_a_float_range(lo, span, step, drops, log):
    """--sampler grid over any int range (with a step) and any choices: each value lies on the range's steps,
    every step is there once, the choices are kept as given; a float range is the one line naming the space."""
    text = f"[epochs]\nlow = {lo}\nhigh = {lo + span}\nstep = {step}\n\n[drop_mult]\nchoices = {drops!r}\n"
    grid = spaces.grid(spaces.parse(text, "s.toml", "finetune-clf"), "s.toml")
    assert grid["drop_mult"] == drops
    assert grid["epochs"][0] == lo and len(grid["epochs"]) == span // step + 1 == len(set(grid["epochs"]))
    assert all(lo <= e <= lo + span and (e - lo) % step == 0 for e in grid["epochs"])
    floats = spaces.parse(f"[lr]\nlow = 1e-5\nhigh = 1e-3\nlog = {str(log).lower()}\n", "s.toml", "finetune-clf")
    with pytest.raises(ConfigError, match=r"^s.toml: `--sampler grid` tries every combination .* \[lr\] is a range"):
        spaces.grid(floats, "s.toml")


# ---- a study end to end ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def study(pipeline, ulmfit, tmp_path_factory) -> dict:
    """Three trials in-process: the JSON summary, stderr, and the folder."""
    tmp = tmp_path_factory.mktemp("tune")
    out = tmp / "tune"
    r = ulmfit("tune", pipeline["ft"], TRAIN, "--trials", "3", "--space", _space(tmp), *FLAGS[:-1], "--out", out,
               "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    return {"summary": json.loads(r.stdout), "stderr": r.stderr, "out": out, "tmp": tmp}


def test_three_trials_one_pruned_the_table_and_the_results(study):
    s, out = study["summary"], study["out"]
    states = {t["number"]: t["state"] for t in s["trials"]}
    assert sorted(states) == [0, 1, 2] and s["counts"]["complete"] + s["counts"]["pruned"] == 3
    assert "pruned" in states.values()  # the random sampler's draws from seed 42 give lr 1e-6 after the first trial
    for t in s["trials"]:  # never the first (nothing to compare with); a trial that learns nothing, after its epoch 1
        slow = t["params"]["lr"] == 1e-6
        assert t["state"] == ("pruned" if slow and t["number"] > 0 else "complete"), t
        assert t["epochs"] == (1 if t["state"] == "pruned" else 3), t
    complete = [t for t in s["trials"] if t["state"] == "complete"]
    best = max(complete, key=lambda t: t["value"])
    assert s["best"]["number"] == best["number"] and s["best"]["value"] == best["value"]
    assert sorted(p.name for p in (out / "trials").iterdir()) == [f"trial-{best['number']:04d}"]  # the rest removed
    lines = study["stderr"].splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["trial", "state", "accuracy"])
    rows = [line.split() for line in lines[header + 1 : header + 4]]
    assert [row[:2] for row in rows] == [[str(n), states[n]] for n in range(3)]  # a row as each trial finished
    assert rows[-1][-5:-2] == [f"{best['value']:.4g}", f"({best['number']})", "3/3"]  # best so far, trials done
    for name in ("history.png", "importances.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((out / "trials.csv").read_text().splitlines()) == 4


def test_best_toml_reproduces_the_best_trial(study, pipeline, ulmfit):
    """`finetune-clf --config best.toml` resolves to the best trial's settings, and trains to its score exactly."""
    out, best = study["out"], study["summary"]["best"]
    kept = json.loads((Path(best["run"]) / "config.json").read_text())
    r = ulmfit("finetune-clf", pipeline["ft"], TRAIN, "--config", out / "best.toml", "--print-config")
    assert r.returncode == 0, r.stderr
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    printed = tomllib.loads(r.stdout)
    assert {k: printed[k] for k in best["params"]} == best["params"]
    same = [k for k in printed if k in kept and k != "head"]  # finetune-clf records --head auto as what it chose
    assert {k: printed[k] for k in same} == {k: kept[k] for k in same}
    assert printed["head"] == "auto" and kept["head"] == "ulmfit"  # many rows: the paper's head
    final = study["tmp"] / "final"
    r = ulmfit("finetune-clf", pipeline["ft"], TRAIN, "--config", out / "best.toml", "--out", final, "--quiet")
    assert r.returncode == 0, r.stderr
    m = json.loads((final / "manifest.json").read_text())
    assert m["history"][m["kept_epoch"] - 1]["accuracy"] == best["value"]


def test_info_shows_the_study(study, ulmfit):
    r = ulmfit("info", study["out"])
    assert r.returncode == 0, r.stderr
    best = study["summary"]["best"]
    for fragment in ("finetune-clf study 'tune'", "validation accuracy (maximize)", "study.db", "2 complete, 1 pruned",
                     f"trial {best['number']}: accuracy", "lr 0.05", best["run"], "best.toml"):  # fmt: skip
        assert fragment in r.stdout, (fragment, r.stdout)
    r = ulmfit("info", study["out"], "--config")
    assert r.stdout == (study["out"] / "best.toml").read_text()


def test_a_study_is_joined_only_with_the_same_settings(study, pipeline, ulmfit, tmp_path):
    """Another folder on the same storage is another worker: with another shared setting it is refused, naming
    what differs; a study Optuna holds that tune did not start is refused too."""
    import optuna

    storage = f"sqlite:///{study['out'] / 'study.db'}"
    r = ulmfit("tune", pipeline["ft"], TRAIN, "--trials", "3", "--space", _space(tmp_path), *FLAGS, "--lr-factor",
               "2", "--storage", storage, "--out", tmp_path / "other")  # fmt: skip
    one_line_error(r, 2, "study 'tune' in sqlite:///", "was started with other settings or data (changed: settings)")
    foreign = f"sqlite:///{tmp_path / 'foreign.db'}"
    optuna.create_study(study_name="tune", storage=foreign).optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    r = ulmfit("tune", pipeline["ft"], TRAIN, "--trials", "3", "--space", _space(tmp_path), *FLAGS,
               "--storage", foreign, "--out", tmp_path / "third")  # fmt: skip
    one_line_error(r, 2, "was not started by `ulmfit tune`; give another --study")


def test_a_rerun_with_another_space_is_refused_and_a_full_study_runs_nothing(study, pipeline, ulmfit):
    out = study["out"]
    before = (out / "best.toml").read_text()
    r = ulmfit("tune", pipeline["ft"], TRAIN, "--trials", "3", "--space", _space(study["tmp"], SPACE + "\n[wd]\n"
               "low = 0.0\nhigh = 0.1\n"), *FLAGS, "--out", out)  # fmt: skip
    one_line_error(r, 2, "holds a tune started with other settings or data (changed: space)")
    r = ulmfit("tune", pipeline["ft"], TRAIN, "--trials", "3", "--space", _space(study["tmp"]), *FLAGS[:-1],
               "--out", out)  # fmt: skip
    assert r.returncode == 0 and "none to run" in r.stderr, r.stderr
    assert (out / "best.toml").read_text() == before


def test_a_journal_file_holds_the_study_and_keep_all_keeps_every_complete_run(pipeline, ulmfit, tmp_path):
    """Optuna's journal file (for a shared file system) as --storage; --keep-all: every complete trial's run."""
    out, journal = tmp_path / "tune", tmp_path / "study.log"
    space = _space(tmp_path, "[drop_mult]\nchoices = [0.1, 0.5]\n")
    r = ulmfit("tune", pipeline["ft"], TRAIN, "--trials", "2", "--space", space, "--storage", journal, "--keep-all",
               "--pruner", "none", *FLAGS, "--out", out, "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["storage"] == str(journal) and journal.stat().st_size > 0 and not (out / "study.db").exists()
    assert [t["state"] for t in s["trials"]] == ["complete", "complete"]
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["trial-0000", "trial-0001"]
    r = ulmfit("info", out, "--json")
    assert json.loads(r.stdout)["counts"]["complete"] == 2


def test_grid_runs_every_combination_once_and_the_study_ends_there(pipeline, ulmfit, tmp_path):
    """--sampler grid: a switch's choices times an int range, 4 combinations; --trials 10 runs the 4, each once."""
    out = tmp_path / "tune"
    space = _space(tmp_path, "[gradual_unfreezing]\nchoices = [true, false]\n\n[epochs]\nlow = 1\nhigh = 2\n")
    r = ulmfit("tune", pipeline["ft"], TRAIN, "--trials", "10", "--space", space, "--sampler", "grid", "--pruner",
               "none", "--preset", "tiny", "--out", out, "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "the grid has 4 combinations; the study ends after them" in r.stderr
    s = json.loads(r.stdout)
    tried = sorted((t["params"]["gradual_unfreezing"], t["params"]["epochs"]) for t in s["trials"])
    assert tried == [(False, 1), (False, 2), (True, 1), (True, 2)] and s["counts"]["complete"] == 4
    assert [t["epochs"] for t in s["trials"]] == [t["params"]["epochs"] for t in s["trials"]]


def test_failed_trials_are_rows_with_their_reason_and_a_study_of_failures_ends(pipeline, ulmfit, tmp_path):
    """A rate that makes the loss NaN fails its trial (its reason in the table, its folder removed) and the search
    goes on; a worker stops after as many failures as --trials, and with no trial complete the command fails."""
    out = tmp_path / "tune"
    r = ulmfit("tune", pipeline["ft"], TRAIN, "--trials", "2", "--space", _space(tmp_path, "[lr]\nchoices = [1e30]\n"),
               "--preset", "tiny", "--epochs", "1", "--out", out)  # fmt: skip
    one_line_error(r, 1, "no trial of study 'tune' completed")
    assert r.stderr.count("failed: loss became nan") == 2 and "or below, in the space or as --lr" in r.stderr
    assert list((out / "trials").iterdir()) == [] and not (out / "best.toml").exists()


def test_ctrl_c_in_a_trial_keeps_the_study_and_the_rerun_resumes_that_trial(pipeline, ulmfit, tmp_path, monkeypatch):
    """Interrupted at the end of trial 1's second epoch (as Ctrl-C stops training, after a checkpoint): exit 130,
    trial 0 and best.toml kept, the trial's checkpoint kept; the rerun runs that trial again from its checkpoint."""
    from ulmfit_cli.workflows import tune

    out, seen = tmp_path / "tune", []
    real = tune.Judged.epoch_end

    def epoch_end(self, row):
        seen.append(row["epoch"])
        if len(seen) == 5:  # trial 0's three epochs, then trial 1's second
            raise KeyboardInterrupt
        real(self, row)

    monkeypatch.setattr(tune.Judged, "epoch_end", epoch_end)
    args = ["tune", pipeline["ft"], TRAIN, "--trials", "2", "--space", _space(tmp_path, "[drop_mult]\nlow = 0.1\n"
            "high = 0.5\n"), *FLAGS, "--pruner", "none", "--out", out]  # fmt: skip
    r = ulmfit(*args)
    assert r.returncode == 130 and "rerun the same command to continue" in r.stderr, r.stderr
    assert (out / "best.toml").exists() and (out / "trials" / ".trial-0001.partial" / "ckpt").is_dir()
    monkeypatch.setattr(tune.Judged, "epoch_end", real)
    r = ulmfit(*args[:-2], "--json", "--out", out)
    assert r.returncode == 0, r.stderr
    trials = json.loads(r.stdout)["trials"]
    assert [(t["number"], t["state"]) for t in trials] == [(0, "complete"), (1, "fail"), (2, "complete")]
    assert trials[2]["params"] == trials[1]["params"] and trials[2].get("resumed") is True
    assert not list((out / "trials").glob(".*partial"))


# ---- several workers ---------------------------------------------------------------------------------------


def _worker(cli_env, ft: Path, out: Path, storage: str, trials: int, *more, train: Path = TRAIN,
            space_text: str = "[drop_mult]\nlow = 0.1\nhigh = 0.6\n") -> subprocess.Popen:  # fmt: skip
    space = out.parent / "space.toml"
    space.write_text(space_text)
    args = [sys.executable, "-m", "ulmfit_cli", "tune", str(ft), str(train), "--trials", str(trials), "--space",
            str(space), "--storage", storage, "--out", str(out), "--preset", "tiny", "--epochs", "3", "--pruner",
            "none", "--json", *more]  # fmt: skip
    return subprocess.Popen(args, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _rows(stderr: str) -> list[int]:
    """The trials a worker ran: the rows of its progress table."""
    return [int(line.split()[0]) for line in stderr.splitlines() if line.split()[:1] and line.split()[0].isdigit()]


def _two_workers(cli_env, ft: Path, out: Path, storage: str, trials: int = 4, *more, **space) -> list[tuple[dict, str]]:
    """Two processes started together on one study (a trial takes longer than one process's head start), on 600
    questions: trials of a second or two. Each one's (summary, stderr)."""
    train = out.parent / "train.csv"
    train.write_text("".join(TRAIN.read_text(encoding="utf-8").splitlines(keepends=True)[:601]), encoding="utf-8")
    workers = [_worker(cli_env, ft, out, storage, trials, *more, train=train, **space) for _ in range(2)]
    done = [p.communicate(timeout=600) for p in workers]
    assert all(p.returncode == 0 for p in workers), [e for _, e in done]
    return [(json.loads(o), e) for o, e in done]


def _check_results(summary: dict, study) -> None:
    """The worker that finished last reports the study's best, best.toml holds its settings, and only its run
    folder is left."""
    from optuna.trial import TrialState

    values = [t.value for t in study.get_trials(states=(TrialState.COMPLETE,))]
    assert study.best_value == max(values)
    assert summary["best"]["number"] == study.best_trial.number and summary["best"]["value"] == max(values)
    out = Path(summary["out"])
    assert f"drop_mult = {study.best_params['drop_mult']!r}" in (out / "best.toml").read_text()
    assert sorted(p.name for p in (out / "trials").iterdir()) == [f"trial-{study.best_trial.number:04d}"]


@pytest.mark.slow
def test_two_workers_share_one_postgresql_study(pipeline, cli_env, tmp_path):
    """A real PostgreSQL server, started here by the pgserver package (its own binaries), through psycopg: two
    processes on one study run each trial once between them, and reach the study's total."""
    pgserver = pytest.importorskip("pgserver")
    pytest.importorskip("psycopg")
    import tempfile

    import optuna
    from optuna.trial import TrialState

    data = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp"))  # short: the server's socket lives there
    server = pgserver.get_server(data, cleanup_mode="delete")
    try:
        storage = server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
        # six trials: the worker that lost the race to create Optuna's tables starts a moment later
        (first, first_err), (second, second_err) = _two_workers(cli_env, pipeline["ft"], tmp_path / "tune", storage, 6)
        study = optuna.load_study(study_name="tune", storage=storage)
        finished = study.get_trials(states=(TrialState.COMPLETE,))
        assert 6 <= len(finished) <= 7 and len(study.trials) == len(finished), [
            (t.number, t.state.name, t.user_attrs) for t in study.trials
        ]  # one more: the trial the other worker was running when the study got there
        ran = [_rows(first_err), _rows(second_err)]
        assert ran[0] and ran[1] and not set(ran[0]) & set(ran[1]), (first_err, second_err)  # both; none twice
        assert sorted(ran[0] + ran[1]) == [t.number for t in finished]
        assert len({t.user_attrs["worker"] for t in finished}) == 2
        _check_results(max((first, second), key=lambda s: s["counts"]["complete"]), study)
    finally:
        server.cleanup()


def test_a_grid_is_taken_once_every_combination_runs_or_ran():
    """A worker stops once each combination has a trial, running ones included: GridSampler's next trial would
    run a combination that another worker is running."""
    import optuna

    from ulmfit_cli.workflows import study as studies

    study = optuna.create_study(sampler=studies.sampler("grid", 0, {"drop_mult": [0.1, 0.2, 0.3]}))
    running = [study.ask() for _ in range(2)]
    for trial in running:
        trial.suggest_categorical("drop_mult", [0.1, 0.2, 0.3])
    assert not studies.grid_taken(study, 3)
    study.tell(running[0], 0.5)  # one done, one running, one never started
    assert not studies.grid_taken(study, 3)
    last = study.ask()
    last.suggest_categorical("drop_mult", [0.1, 0.2, 0.3])
    assert studies.grid_taken(study, 3)  # two running, one done: nothing left to start
    assert sorted(t.params["drop_mult"] for t in study.trials) == [0.1, 0.2, 0.3]


@pytest.mark.slow
def test_two_workers_on_a_grid_run_each_combination_once(pipeline, cli_env, tmp_path):
    """--sampler grid on two processes: the study's trials are the grid's five combinations, each run once, by
    either worker (GridSampler alone would give a worker that finds every combination taken a running one again)."""
    import optuna

    storage, grid = f"sqlite:///{tmp_path / 'study.db'}", [0.1, 0.2, 0.3, 0.4, 0.5]
    done = _two_workers(cli_env, pipeline["ft"], tmp_path / "tune", storage, 20, "--sampler", "grid",
                        space_text=f"[drop_mult]\nchoices = {grid}\n")  # fmt: skip
    study = optuna.load_study(study_name="tune", storage=storage)
    assert sorted(t.params["drop_mult"] for t in study.trials) == grid, [(t.number, t.params) for t in study.trials]
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    ran = [_rows(err) for _, err in done]
    assert sorted(ran[0] + ran[1]) == list(range(5)), ran  # each trial in one worker's table
    _check_results(max((s for s, _ in done), key=lambda s: s["counts"]["complete"]), study)


def _checkpoint_of(proc: subprocess.Popen, out: Path, timeout: float = 120) -> int:
    """Wait until `proc` has checkpointed a trial (its run folder's lock file names its pid): that trial's number."""
    t0 = time.time()
    while True:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() - t0 < timeout, "no checkpoint"
        for lock in (out / "trials").glob(".trial-*.lock") if (out / "trials").exists() else []:
            number = lock.name.split("-")[1].split(".")[0]
            held = lock.read_text().split()[:1] if lock.exists() else []
            if held == [str(proc.pid)] and (lock.parent / f".trial-{number}.partial/ckpt/position.json").exists():
                return int(number)
        time.sleep(0.02)


@pytest.mark.slow
def test_two_workers_on_sqlite_one_killed_mid_trial(pipeline, cli_env, tmp_path):
    """Two processes on one SQLite study; one is SIGKILLed after its first epoch (nothing of its own cleanup runs).
    Its heartbeat (1 s here) stops, so the other fails that trial, runs it again with the same settings from the
    checkpoint it left, and finishes the study: each trial run by one worker, none lost, the best the best."""
    import optuna
    from optuna.trial import TrialState

    storage, out = f"sqlite:///{tmp_path / 'study.db'}", tmp_path / "tune"
    killed, survivor = (_worker(cli_env, pipeline["ft"], out, storage, 4, "--heartbeat", "1", "--epochs", "4")
                        for _ in range(2))  # fmt: skip
    number = _checkpoint_of(killed, out)
    os.kill(killed.pid, signal.SIGKILL)
    killed.communicate()
    stdout, stderr = survivor.communicate(timeout=600)
    assert survivor.returncode == 0, stderr
    study = optuna.load_study(study_name="tune", storage=storage)
    lost = study.trials[number]
    assert lost.state == TrialState.FAIL and lost.user_attrs["worker"].endswith(f":{killed.pid}")
    (retry,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == number]  # Optuna's retry
    assert retry.state == TrialState.COMPLETE and retry.params == lost.params and retry.user_attrs["resumed"]
    finished = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(finished) == 4 and len(study.trials) == 5  # the killed trial and the study's four
    assert sorted(_rows(stderr)) == [t.number for t in finished]  # the survivor ran each of them, once
    _check_results(json.loads(stdout), study)
    assert not list((out / "trials").glob(".trial-*"))  # the checkpoint went with its retry, the lock with it
