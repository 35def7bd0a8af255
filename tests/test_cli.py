"""The whole pipeline and every user-facing error, through the real CLI (a subprocess, offline, tiny models)."""

import json
import shutil

import pytest

from conftest import SAMPLE
from conftest import one_line_error as _one_line_error


def test_pipeline_runs_and_the_run_folders_are_complete(pipeline):
    for stage, key in (("pretrain", "lm"), ("finetune-lm", "ft"), ("finetune-clf", "clf")):
        m = json.loads((pipeline[key] / "manifest.json").read_text())
        assert m["stage"] == stage and m["complete"] and m["backbone"] == "awd-lstm"
        assert {"config.json", "manifest.json", "tokenizer.json", "model.safetensors"} <= {
            p.name for p in pipeline[key].iterdir()
        }
        assert m["history"] and m["seed"] == 42 and m["versions"]["torch"]
        assert m["inputs"][0]["fingerprint"].startswith("sha256:")
    ft = json.loads((pipeline["ft"] / "manifest.json").read_text())
    assert ft["parent"]["stage"] == "pretrain"
    # the tokenizer is reused unchanged by the later stages
    assert (pipeline["clf"] / "tokenizer.json").read_bytes() == (pipeline["lm"] / "tokenizer.json").read_bytes()
    assert not list(pipeline["clf"].parent.glob(".*partial*")), "temporary folders left behind"


def test_lm_fine_tuning_lowers_the_target_domain_loss(pipeline):
    lm = json.loads((pipeline["lm"] / "manifest.json").read_text())["final"]
    ft = json.loads((pipeline["ft"] / "manifest.json").read_text())["final"]
    assert ft["valid_loss"] < lm["valid_loss"] + 5  # sanity: finite and in range
    assert ft["perplexity"] > 1


def test_predict_from_stdin_writes_one_json_object_per_line(cli, pipeline):
    r = cli("predict", pipeline["clf"], "-", stdin="What is the capital of France ?\nWho wrote Hamlet ?\n")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(lines) == 2
    for obj in lines:
        assert obj["label"] in {"ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"}
        assert sum(obj["probs"].values()) == pytest.approx(1, abs=1e-4)
        assert obj["label"] == max(obj["probs"], key=obj["probs"].get)


def test_predict_file_keeps_input_order(cli, ulmfit, pipeline, tmp_path):
    p = tmp_path / "q.txt"
    p.write_text("short ?\n" + "a much longer question about many things and more things ?\n" * 1 + "mid size one ?\n")
    r = ulmfit("predict", pipeline["clf"], p)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 3
    # same texts one by one give the same answers: batching by length must not reorder outputs
    for i, line in enumerate(p.read_text().splitlines()):
        single = cli("predict", pipeline["clf"], "-", stdin=line + "\n")
        assert json.loads(single.stdout)["label"] == json.loads(r.stdout.splitlines()[i])["label"]


def test_evaluate_reports_accuracy_macro_f1_and_per_class(ulmfit, pipeline):
    r = ulmfit("evaluate", pipeline["clf"], SAMPLE / "trec_test.csv", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["n"] == 500 and 0 <= res["accuracy"] <= 1 and 0 <= res["macro_f1"] <= 1
    assert sum(c["support"] for c in res["per_class"]) == 500
    table = ulmfit("evaluate", pipeline["clf"], SAMPLE / "trec_test.csv")
    assert f"accuracy {res['accuracy']:.4f}" in table.stdout and "HUM" in table.stdout


def test_json_summary_is_the_only_thing_on_stdout(cli, pipeline, tmp_path):
    r = cli(
        "finetune-clf",
        pipeline["ft"],
        SAMPLE / "trec_train.csv",
        "--out",
        tmp_path / "c",
        "--preset",
        "tiny",
        "--epochs",
        "1",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["stage"] == "finetune-clf" and summary["epochs"] == 1 and "accuracy" in summary["final"]
    assert "finetune-clf" in r.stderr  # progress went to stderr


def test_same_seed_gives_identical_metrics(ulmfit, pipeline, tmp_path):
    finals = []
    for name in ("a", "b"):
        r = ulmfit(
            "finetune-clf",
            pipeline["ft"],
            SAMPLE / "trec_train.csv",
            "--out",
            tmp_path / name,
            "--preset",
            "tiny",
            "--epochs",
            "2",
            "--json",
            "--quiet",
        )
        assert r.returncode == 0, r.stderr
        finals.append({k: v for k, v in json.loads(r.stdout)["final"].items() if k != "time_s"})
    assert finals[0] == finals[1]


def test_pretraining_is_repeatable_too(ulmfit, pipeline, tmp_path):
    r = ulmfit("pretrain", SAMPLE / "books.txt", "--out", tmp_path / "lm", "--preset", "tiny", "--quiet")
    assert r.returncode == 0, r.stderr
    again, first = (json.loads((p / "manifest.json").read_text()) for p in (tmp_path / "lm", pipeline["lm"]))
    assert again["history"] == first["history"]
    assert (tmp_path / "lm" / "tokenizer.json").read_bytes() == (pipeline["lm"] / "tokenizer.json").read_bytes()


def test_print_schedule_shows_groups_and_discriminative_peaks(ulmfit, pipeline):
    r = ulmfit("finetune-clf", pipeline["ft"], "--preset", "tiny", "--epochs", "5", "--lr", "0.01", "--print-schedule")
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.strip().startswith("│")]
    assert len(rows) == 5
    # tiny has 2 LSTM layers: 4 groups; epoch 1 trains the head only, epoch 4 and 5 everything
    assert "head" in rows[0] and "frozen" in rows[0] and "0.01" in rows[0]
    assert "embed,lstm1,lstm2,head" in rows[3] and "frozen" not in rows[4]
    assert f"{0.01 / 2.6**3:.3g}" in rows[4]  # the embedding's peak: three groups below the head


def test_no_pretraining_baseline_starts_from_random_weights(ulmfit, pipeline, tmp_path):
    r = ulmfit(
        "finetune-clf",
        pipeline["lm"],
        SAMPLE / "trec_train.csv",
        "--out",
        tmp_path / "r",
        "--preset",
        "tiny",
        "--epochs",
        "1",
        "--init",
        "random",
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["init"] == "random"


def test_help_does_not_import_torch(cli):
    import subprocess
    import sys

    code = "import sys; from ulmfit_cli.cli.main import app; print('torch' in sys.modules, 'fastai' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "False False"
    assert cli("--help").returncode == 0


def test_every_commands_help_text_is_wrapped_as_prose(monkeypatch):
    # typer keeps a docstring's line breaks after its first paragraph and rich wraps each source line by itself:
    # ragged lines (a full line, then a short one) unless main.reflow joins each paragraph into one line
    import typer.main
    import typer.rich_utils
    from typer.testing import CliRunner

    from ulmfit_cli.cli.main import app

    # 80 columns for this test only: typer reads TERMINAL_WIDTH once, when rich_utils is first imported, so setting
    # it in the environment here made every later help in the process 80 wide (test_help's then cut its options)
    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", 80)
    names = list(typer.main.get_command(app).commands)
    assert len(names) >= 12
    for name in names:
        r = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "80"})
        assert r.exit_code == 0, r.output
        text = r.output.split("Usage:", 1)[1].split("\u256d", 1)[0]  # between the usage line and the first box
        description = [line.strip() for line in text.splitlines()[1:]]
        paragraphs = "\n".join(description).strip().split("\n\n")
        assert paragraphs and paragraphs[0], name
        for paragraph in paragraphs:
            lines = paragraph.splitlines()
            assert all(len(line) >= 55 for line in lines[:-1]), f"{name}: ragged help text {lines}"


# ---- user-facing errors: exit code 2, one line on stderr, no traceback, nothing written -----------------------


def test_missing_corpus(ulmfit, tmp_path):
    r = ulmfit("pretrain", tmp_path / "nope.txt", "--out", tmp_path / "lm", "--preset", "tiny")
    _one_line_error(r, 2, "nope.txt", "no such file")
    assert not (tmp_path / "lm").exists()


def test_empty_corpus(ulmfit, tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    r = ulmfit("pretrain", tmp_path / "empty.txt", "--out", tmp_path / "lm", "--preset", "tiny")
    _one_line_error(r, 2, "empty.txt", "no usable text")
    assert not any(tmp_path.glob(".lm*"))


def test_flags_out_of_range(ulmfit, tmp_path):
    r = ulmfit("pretrain", SAMPLE / "books.txt", "--out", tmp_path / "lm", "--lr", "-1", "--cut-frac", "2")
    _one_line_error(r, 2, "`--lr` must be > 0", "`--cut-frac`")


def test_unknown_column(ulmfit, pipeline, tmp_path):
    r = ulmfit("finetune-clf", pipeline["ft"], SAMPLE / "trec_train.csv", "--out", tmp_path / "c", "--label-col", "y")
    _one_line_error(r, 2, "no column 'y'", "--label-col")


def test_single_class(ulmfit, pipeline, tmp_path):
    p = tmp_path / "one.csv"
    p.write_text("text,label\nwhat ?,A\nwho ?,A\nwhere ?,A\n")
    r = ulmfit("finetune-clf", pipeline["ft"], p, "--out", tmp_path / "c", "--preset", "tiny")
    _one_line_error(r, 2, "single class")


def test_validation_labels_never_seen_in_training(ulmfit, pipeline, tmp_path):
    p = tmp_path / "v.csv"
    p.write_text("text,label\nwhat is it ?,ZZZ\n")
    r = ulmfit("finetune-clf", pipeline["ft"], SAMPLE / "trec_train.csv", "--valid", p, "--out", tmp_path / "c")
    _one_line_error(r, 2, "'ZZZ'", "never seen in training")


def test_test_labels_never_seen_in_training(ulmfit, pipeline, tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("text,label\nwhat is it ?,ZZZ\n")
    _one_line_error(ulmfit("evaluate", pipeline["clf"], p), 2, "'ZZZ'", "never seen in training")


def test_wrong_kind_of_parent(cli, ulmfit, pipeline, tmp_path):
    r = ulmfit("finetune-lm", pipeline["clf"], SAMPLE / "trec_train.csv", "--out", tmp_path / "x")
    _one_line_error(r, 2, "is a finetune-clf run", "pretrain or finetune-lm")
    r = cli("predict", pipeline["lm"], "-", stdin="hello\n")
    _one_line_error(r, 2, "is a pretrain run")


def test_missing_parent(ulmfit, tmp_path):
    r = ulmfit("finetune-clf", tmp_path / "nothing", SAMPLE / "trec_train.csv", "--out", tmp_path / "c")
    _one_line_error(r, 2, "no such run folder")


def test_incomplete_parent(ulmfit, pipeline, tmp_path):
    broken = tmp_path / "lm"
    shutil.copytree(pipeline["lm"], broken)
    (broken / "model.safetensors").unlink()
    r = ulmfit("finetune-lm", broken, SAMPLE / "trec_train.csv", "--out", tmp_path / "x")
    _one_line_error(r, 2, "model.safetensors is missing")


def test_tokenizer_that_does_not_match(ulmfit, pipeline, tmp_path):
    broken = tmp_path / "lm"
    shutil.copytree(pipeline["lm"], broken)
    tok = json.loads((broken / "tokenizer.json").read_text())
    tok["normalizer"] = None
    (broken / "tokenizer.json").write_text(json.dumps(tok))
    r = ulmfit("finetune-lm", broken, SAMPLE / "trec_train.csv", "--out", tmp_path / "x")
    _one_line_error(r, 2, "tokenizer.json does not match")


def test_existing_output_is_never_overwritten_without_the_flag(ulmfit, pipeline, tmp_path):
    out = tmp_path / "c"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    r = ulmfit("finetune-clf", pipeline["ft"], SAMPLE / "trec_train.csv", "--out", out, "--preset", "tiny")
    _one_line_error(r, 2, "already exists", "--overwrite")
    assert (out / "keep.txt").read_text() == "precious"


def test_overwrite_replaces_a_run_folder(ulmfit, pipeline, tmp_path):
    out = tmp_path / "c"
    shutil.copytree(pipeline["clf"], out)
    before = json.loads((out / "manifest.json").read_text())["created"]
    r = ulmfit(
        "finetune-clf",
        pipeline["ft"],
        SAMPLE / "trec_train.csv",
        "--out",
        out,
        "--preset",
        "tiny",
        "--epochs",
        "1",
        "--overwrite",
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert len(m["history"]) == 1 and (m["created"] != before or m["history"][0]["epoch"] == 1)


def test_debug_shows_the_traceback(cli, tmp_path):
    r = cli("--debug", "pretrain", tmp_path / "nope.txt", "--out", tmp_path / "lm")
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_binary_file(ulmfit, tmp_path):
    (tmp_path / "b.txt").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 20)
    _one_line_error(ulmfit("pretrain", tmp_path / "b.txt", "--out", tmp_path / "lm"), 2, "b.txt", "binary")


def test_a_folder_that_is_not_a_dataset(ulmfit, tmp_path):
    (tmp_path / "d").mkdir()
    r = ulmfit("pretrain", tmp_path / "d", "--out", tmp_path / "lm", "--preset", "tiny")
    _one_line_error(r, 2, "not one written by `save_to_disk`")


def test_missing_label_through_the_cli(ulmfit, pipeline, tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("text,label\nwhat ?,A\nwho ?,\nwhere ?,B\n")
    r = ulmfit("finetune-clf", pipeline["ft"], p, "--out", tmp_path / "c", "--preset", "tiny")
    _one_line_error(r, 2, "no label", "row 2")


def test_non_utf8_is_replaced_counted_and_not_fatal(ulmfit, tmp_path):
    (tmp_path / "l1.txt").write_bytes("caf\xe9 cr\xe8me br\xfbl\xe9e and more words here\n".encode("latin-1") * 300)
    r = ulmfit("pretrain", tmp_path / "l1.txt", "--out", tmp_path / "lm", "--preset", "tiny", "--epochs", "0")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("1200 byte(s) are not UTF-8") == 1  # once per file (data.source_of), not per reader
    again = ulmfit("pretrain", tmp_path / "l1.txt", "--out", tmp_path / "lm2", "--preset", "tiny", "--epochs", "0")
    assert "reusing" in again.stderr and again.stderr.count("1200 byte(s) are not UTF-8") == 1  # said every time


def test_a_document_of_millions_of_characters_is_handled(ulmfit, tmp_path):
    (tmp_path / "big.txt").write_text("word " * 600_000 + "\n" + "a short line of text\n" * 300)
    r = ulmfit(
        "pretrain", tmp_path / "big.txt", "--out", tmp_path / "lm", "--preset", "tiny", "--epochs", "0", "--json"
    )
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "lm" / "manifest.json").read_text())
    assert m["tokens"]["train"] + m["tokens"]["valid"] > 600_000


def test_a_flag_that_does_nothing_here_warns_on_the_command_line_not_from_a_config_file(ulmfit, pipeline, tmp_path):
    """`--lora-rank` without `--adapter lora` changes nothing: said once on stderr, the command goes on; the same
    setting in a --config file (as `info --config` writes every setting) says nothing."""
    base = ("finetune-clf", pipeline["ft"], "--preset", "tiny", "--print-schedule")
    r = ulmfit(*base, "--lora-rank", "4")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("warning:") == 1 and "`--lora-rank` has no effect without --adapter lora" in r.stderr
    (tmp_path / "c.toml").write_text("lora_rank = 4\n")
    r = ulmfit(*base, "--config", tmp_path / "c.toml")
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    assert "warning" not in ulmfit(*base).stderr
