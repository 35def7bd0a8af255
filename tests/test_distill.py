"""`ulmfit distill`: the teacher's outputs cached by what they depend on and resumable, the soft targets and the
mixed loss, a student that learns its teacher's decisions beyond what its few labels teach, across tokenizers and
for every task (multi-label, regression), a student killed mid-training resumed exactly, and mismatched settings
refused in one line."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SAMPLE, one_line_error
from ulmfit_cli import tasks


def _texts(path: Path, src: Path, n: int | None = None) -> None:
    """The texts of a CSV's first `n` rows, one a line (a Reuters story's newlines become spaces)."""
    rows = list(csv.DictReader(open(src, encoding="utf-8")))[:n]
    path.write_text("".join(" ".join(r["text"].split()) + "\n" for r in rows), encoding="utf-8")


def _few(path: Path, per_class: int) -> None:
    """`per_class` labelled TREC questions of each class, from the sample's first rows."""
    seen: dict[str, int] = {}
    keep = []
    for r in csv.DictReader(open(SAMPLE / "trec_train.csv", encoding="utf-8")):
        if seen.get(r["label"], 0) < per_class:
            seen[r["label"]] = seen.get(r["label"], 0) + 1
            keep.append(r)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["text", "label"])
        w.writeheader()
        w.writerows(keep)


def _answers(ulmfit, run: Path, texts: Path) -> list[str]:
    r = ulmfit("predict", run, texts)
    assert r.returncode == 0, r.stderr
    return [json.loads(line)["label"] for line in r.stdout.splitlines()]


def test_the_student_learns_its_teachers_decisions_beyond_its_few_labels(pipeline, ulmfit, tmp_path):
    """The teacher (trained on 2,000 labelled questions) labels the sample's questions; a student from the same LM
    with 2 labels a class alone agrees with it on the test questions far less than the student distilled over the
    unlabelled questions with those same labels."""
    _texts(tmp_path / "texts.txt", SAMPLE / "trec_train.csv")
    _texts(tmp_path / "test.txt", SAMPLE / "trec_test.csv")
    _few(tmp_path / "few.csv", 2)
    tiny = ("--preset", "tiny", "--quiet")
    r = ulmfit("finetune-clf", pipeline["ft"], tmp_path / "few.csv", "--out", tmp_path / "alone", *tiny)
    assert r.returncode == 0, r.stderr
    r = ulmfit("distill", pipeline["clf"], pipeline["ft"], tmp_path / "texts.txt", "--train", tmp_path / "few.csv",
               "--out", tmp_path / "student", "--cache-dir", tmp_path / "cache", *tiny)  # fmt: skip
    assert r.returncode == 0, r.stderr
    teacher = _answers(ulmfit, pipeline["clf"], tmp_path / "test.txt")
    alone = np.mean([a == b for a, b in zip(_answers(ulmfit, tmp_path / "alone", tmp_path / "test.txt"), teacher)])
    taught = np.mean([a == b for a, b in zip(_answers(ulmfit, tmp_path / "student", tmp_path / "test.txt"), teacher)])
    assert taught > 0.75 and taught > alone + 0.2, (taught, alone)
    m = json.loads((tmp_path / "student" / "manifest.json").read_text())
    assert (
        m["stage"] == "finetune-clf"
        and m["classes"] == json.loads((pipeline["clf"] / "manifest.json").read_text())["classes"]
    )
    assert m["distilled"]["texts"]["rows"] == 2000 and m["distilled"]["teachers"][0]["path"] == str(
        pipeline["clf"].resolve()
    )
    assert ulmfit("evaluate", tmp_path / "student", SAMPLE / "trec_test.csv").returncode == 0  # an ordinary run
    info = ulmfit("info", tmp_path / "student")
    assert "distilled" in info.stdout and "2,000 texts" in info.stdout


class Counting:
    """A stand-in predictor: each text's outputs from its length, and how many texts it was asked about."""

    def __init__(self):
        self.asked = 0

    def __call__(self, texts):
        self.asked += len(texts)
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)


def test_the_teachers_outputs_are_computed_once_and_resume_at_the_chunk_missing(tmp_path):
    from ulmfit_cli.cli.report import Reporter
    from ulmfit_cli.training.distill import CHUNK, teacher_outputs

    texts = [f"text {'x' * (i % 7)} {i}" for i in range(2 * CHUNK + 5)]
    folder = tmp_path / "key"
    first = Counting()
    out = teacher_outputs(first, texts, folder, Reporter(quiet=True))
    assert first.asked == len(texts) and out.shape == (len(texts), 2)
    assert (out[:, 0] == [len(t) for t in texts]).all()  # in the texts' order
    again = Counting()
    assert (teacher_outputs(again, texts, folder, Reporter(quiet=True)) == out).all() and again.asked == 0
    (folder / "000001.npy").unlink()  # an interrupted labelling: the chunks saved before are kept
    resumed = Counting()
    assert (teacher_outputs(resumed, texts, folder, Reporter(quiet=True)) == out).all() and resumed.asked == CHUNK
    assert not list(folder.glob(".*.tmp"))


def test_the_cache_key_follows_the_teachers_the_texts_and_the_engine(pipeline, tmp_path):
    from ulmfit_cli.runfolder.artifacts import open_run
    from ulmfit_cli.training.distill import teacher_identities, teacher_key

    clf = open_run(pipeline["clf"], ("finetune-clf",), "test")
    other = tmp_path / "other"
    shutil.copytree(pipeline["clf"], other)
    weights = other / "model.safetensors"
    if not weights.exists():
        weights = next(p for p in other.iterdir() if p.suffix in (".safetensors", ".pth"))
    from safetensors.torch import load_file, save_file

    state = load_file(weights)
    name = next(iter(state))
    state[name] = state[name] + 1.0
    save_file(state, weights)
    changed = open_run(other, ("finetune-clf",), "test")
    clf, changed, both = (teacher_identities(r) for r in ([clf], [changed], [clf, changed]))
    key = teacher_key(clf, "texts-a", "torch")
    assert key == teacher_key(clf, "texts-a", "torch")
    keys = {key, teacher_key(clf, "texts-b", "torch"), teacher_key(clf, "texts-a", "onnx"),
            teacher_key(changed, "texts-a", "torch"), teacher_key(both, "texts-a", "torch")}  # fmt: skip
    assert len(keys) == 5


probs = st.integers(2, 6).flatmap(
    lambda c: st.lists(st.lists(st.floats(0.01, 1.0), min_size=c, max_size=c), min_size=1, max_size=8)
)


@settings(max_examples=60, deadline=None)
@given(rows=probs, t=st.floats(1.0, 8.0))
def test_soft_targets_are_distributions_that_a_higher_temperature_flattens(rows, t):
    from ulmfit_cli.training.distill import Teaching

    p = np.array(rows, dtype=np.float64)
    p /= p.sum(1, keepdims=True)

    def at(temp):
        teach = Teaching([], tasks.SINGLE, [f"c{i}" for i in range(p.shape[1])], None, [], p, temp, 0.5)
        teach.train_outputs = p
        return teach.soft_targets(np.zeros((0, p.shape[1])))

    one, hot = at(1.0), at(t)
    assert np.allclose(one, p, atol=1e-5) and np.allclose(hot.sum(1), 1.0, atol=1e-5)

    def entropy(q):
        return -(q * np.log(np.clip(q, 1e-12, 1))).sum(1)

    assert (entropy(hot) >= entropy(one) - 1e-5).all()


@pytest.mark.parametrize("task", [tasks.SINGLE, tasks.MULTI, tasks.REGRESSION])
def test_the_loss_mixes_the_labels_and_the_teacher_by_the_hard_weight(task):
    """--hard-weight 1 on labelled rows is the classifier's own loss; rows without a label learn the teacher alone."""
    import torch

    from ulmfit_cli.training.distill import loss

    torch.manual_seed(0)
    logits = torch.randn(6, 3 if task != tasks.REGRESSION else 1)
    if task == tasks.SINGLE:
        soft, hard = torch.softmax(torch.randn(6, 3), 1), torch.tensor([0, 2, 1, 0, -1, -1])
    elif task == tasks.MULTI:
        soft, hard = torch.rand(6, 3), (torch.rand(6, 3) > 0.5).float()
    else:
        soft, hard = torch.randn(6), torch.randn(6)
    labelled = torch.tensor([True] * 4 + [False] * 2)
    only_labels = loss(task, logits[:4], soft[:4], hard[:4], labelled[:4], 2.0, 1.0)
    assert torch.allclose(only_labels, tasks.loss(task, logits[:4], hard[:4]), atol=1e-6)
    teacher_only = loss(task, logits, soft, hard, torch.zeros(6, dtype=torch.bool), 2.0, 1.0)
    assert torch.allclose(teacher_only, loss(task, logits, soft, hard, labelled, 2.0, 0.0), atol=1e-6)


def test_an_hf_teacher_distils_into_an_awd_lstm_student(pipeline, ulmfit, tmp_path):
    """Different tokenizers: each model reads the texts with its own."""
    import hf_tiny

    hf_tiny.write_encoder(tmp_path / "bert", "bert", seed=4)
    tiny = ("--preset", "tiny", "--quiet")
    assert ulmfit("import-hf", tmp_path / "bert", "--out", tmp_path / "hf").returncode == 0
    r = ulmfit("finetune-clf", tmp_path / "hf", SAMPLE / "trec_train.csv", "--out", tmp_path / "teacher", *tiny,
               "--epochs", "1")  # fmt: skip
    assert r.returncode == 0, r.stderr
    _texts(tmp_path / "texts.txt", SAMPLE / "trec_train.csv", 300)
    r = ulmfit("distill", tmp_path / "teacher", pipeline["ft"], tmp_path / "texts.txt", "--out", tmp_path / "s",
               "--cache-dir", tmp_path / "cache", *tiny, "--epochs", "2")  # fmt: skip
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert m["backbone"] == "awd-lstm" and len(m["history"]) == 2
    assert "accuracy" in m["history"][-1]  # agreement with the teacher, on a share of the texts


def test_mismatched_settings_are_one_line(pipeline, ulmfit, tmp_path):
    _texts(tmp_path / "texts.txt", SAMPLE / "trec_train.csv", 50)
    base = ("distill", pipeline["clf"], pipeline["ft"], tmp_path / "texts.txt", "--out", tmp_path / "s",
            "--preset", "tiny", "--cache-dir", tmp_path / "cache")  # fmt: skip
    one_line_error(ulmfit(*base, "--regression"), 2, "--regression", "teacher's task")
    one_line_error(ulmfit(*base, "--valid", SAMPLE / "trec_test.csv"), 2, "--valid", "--train")
    odd = tmp_path / "odd.csv"
    odd.write_text("text,label\nwhat is it ?,NOPE\nwho is he ?,HUM\n", encoding="utf-8")
    one_line_error(ulmfit(*base, "--train", odd), 2, "NOPE", "teacher's classes")
    _texts(tmp_path / "one.txt", SAMPLE / "trec_train.csv", 2)  # one text trains, one validates: no step
    one_line_error(ulmfit(*base[:3], tmp_path / "one.txt", *base[4:]), 2, "the texts", "too few to train")
    reuters = tmp_path / "r"
    r = ulmfit("finetune-clf", pipeline["ft"], SAMPLE / "reuters_train.csv", "--out", reuters, "--preset", "tiny",
               "--quiet", "--epochs", "1", "--label-delim", " ")  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = ulmfit(*base, "--teacher", reuters)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "s").exists()


@settings(max_examples=40, deadline=None)
@given(n=st.integers(5, 60), c=st.integers(2, 5), cut=st.floats(0.0, 0.95), seed=st.integers(0, 2**16),
       multi=st.booleans())  # fmt: skip
def test_min_confidence_keeps_exactly_the_teachers_sure_answers_and_validates_on_all(n, c, cut, seed, multi):
    from ulmfit_cli.config import resolve
    from ulmfit_cli.errors import InputError
    from ulmfit_cli.training.distill import Teaching, confidence

    rng = np.random.default_rng(seed)
    out = rng.random((n, c)) if multi else rng.dirichlet(np.ones(c), n)
    task = tasks.MULTI if multi else tasks.SINGLE
    texts = [f"text {i}" for i in range(n)]
    cfg = resolve("finetune-clf", "tiny", {"min_confidence": cut, "valid_pct": 0.2})
    teach = Teaching([], task, [f"c{i}" for i in range(c)], None, texts, out.astype(np.float32), 2.0, 0.5)
    teach.teachers = [type("Run", (), {"manifest": {}})()]  # thresholds: none (0.5)
    from ulmfit_cli.data.batches import split_valid

    tr, va = split_valid(n, cfg.valid_pct, cfg.seed)  # the texts' share the student trains on
    sure = [i for i in tr if confidence(task, out[[i]])[0] >= cut]
    if not sure:
        with pytest.raises(InputError, match="--min-confidence"):
            teach.tables(cfg, None, None, "text", "label")
        return
    if len(sure) < 2:  # sure answers, but too few to make a step of two: one line, as finetune-clf says it
        with pytest.raises(InputError, match="too few to train"):
            teach.tables(cfg, None, None, "text", "label")
        return
    _, (train_texts, labels), (vtexts, _) = teach.tables(cfg, None, None, "text", "label")
    assert labels == [] and vtexts == [texts[i] for i in va]  # validation: the teacher's answers on all its share
    assert train_texts == [texts[i] for i in sure]  # every sure answer kept, no unsure one
    assert np.allclose(teach.train_outputs, out[sure], atol=1e-6)


def test_a_multi_label_teacher_makes_a_multi_label_student(pipeline, ulmfit, tmp_path):
    """The student answers the teacher's question: the same label set, sigmoid outputs, its own thresholds, and
    predict lists the labels above them, as for any multi-label run."""
    tiny = ("--preset", "tiny", "--quiet")
    r = ulmfit("finetune-clf", pipeline["ft"], SAMPLE / "reuters_train.csv", "--label-delim", " ", "--out",
               tmp_path / "teacher", "--epochs", "3", *tiny)  # fmt: skip
    assert r.returncode == 0, r.stderr
    _texts(tmp_path / "texts.txt", SAMPLE / "reuters_train.csv")
    r = ulmfit("distill", tmp_path / "teacher", pipeline["ft"], tmp_path / "texts.txt", "--out", tmp_path / "s",
               "--cache-dir", tmp_path / "cache", "--epochs", "3", *tiny)  # fmt: skip
    assert r.returncode == 0, r.stderr
    teacher, student = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("teacher", "s"))
    assert student["task"] == "multi-label" and student["classes"] == teacher["classes"]
    assert set(student["thresholds"]) == set(student["classes"])
    assert all("micro_f1" in row and "accuracy" not in row for row in student["history"])
    r = ulmfit("predict", tmp_path / "s", SAMPLE / "reuters_test.csv")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(lines) == 100
    for obj in lines:
        assert set(obj["probs"]) == set(student["classes"])
        assert obj["labels"] == [c for c, p in obj["probs"].items() if p >= student["thresholds"][c]]
    r = ulmfit("evaluate", tmp_path / "s", SAMPLE / "reuters_test.csv", "--json")
    assert r.returncode == 0 and 0 <= json.loads(r.stdout)["micro_f1"] <= 1, r.stderr


def test_a_regression_teacher_makes_a_student_that_tracks_its_values(pipeline, ulmfit, tmp_path):
    """Regression: the student learns the teacher's value (there is no temperature to apply) and follows it far
    closer than any constant could: its distance to the teacher's values is under half their spread."""
    tiny = ("--preset", "tiny", "--quiet")
    rows = list(csv.DictReader(open(SAMPLE / "trec_train.csv", encoding="utf-8")))
    with open(tmp_path / "counts.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows((r["text"], len(r["text"].split())) for r in rows)
    r = ulmfit("finetune-clf", pipeline["ft"], tmp_path / "counts.csv", "--regression", "--out", tmp_path / "teacher",
               "--epochs", "6", *tiny)  # fmt: skip
    assert r.returncode == 0, r.stderr
    _texts(tmp_path / "texts.txt", SAMPLE / "trec_train.csv")
    r = ulmfit("distill", tmp_path / "teacher", pipeline["ft"], tmp_path / "texts.txt", "--out", tmp_path / "s",
               "--cache-dir", tmp_path / "cache", "--epochs", "6", *tiny)  # fmt: skip
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert m["task"] == "regression" and m["classes"] is None
    _texts(tmp_path / "test.txt", SAMPLE / "trec_test.csv")
    values = {}
    for run in ("teacher", "s"):
        r = ulmfit("predict", tmp_path / run, tmp_path / "test.txt")
        assert r.returncode == 0, r.stderr
        values[run] = np.array([json.loads(x)["value"] for x in r.stdout.splitlines()])
    teacher, student = values["teacher"], values["s"]
    spread = np.abs(teacher - np.median(teacher)).mean()  # the best a constant answer does, in mean absolute error
    assert spread > 0.5  # the teacher learned something to follow
    assert np.abs(student - teacher).mean() < 0.5 * spread, (np.abs(student - teacher).mean(), spread)


def test_a_student_killed_mid_training_resumes_to_the_uninterrupted_result(pipeline, ulmfit, cli_env, tmp_path):
    """The second phase: SIGKILL while the student trains (the teacher's labels already cached), then `--resume`
    ends with exactly the history of a distillation that was never stopped, and no half-written folder between."""
    import signal
    import subprocess
    import sys
    import time

    _texts(tmp_path / "texts.txt", SAMPLE / "trec_train.csv", 600)
    args = ["distill", str(pipeline["clf"]), str(pipeline["ft"]), str(tmp_path / "texts.txt"), "--cache-dir",
            str(tmp_path / "cache"), "--preset", "tiny", "--epochs", "3", "--bs", "4", "--checkpoint-every", "25",
            "--quiet"]  # fmt: skip
    r = ulmfit(*args, "--out", tmp_path / "whole")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "ulmfit_cli", *args, "--out", str(out)], env=cli_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    position = tmp_path / ".run.partial" / "ckpt" / "position.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        try:
            p = json.loads(position.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            p = None
        if p and p["epoch"] == 1 and p["step"] > 0:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    assert proc.wait(timeout=120) == -signal.SIGKILL, proc.stderr.read()
    assert not out.exists()
    r = ulmfit(*args, "--out", out, "--resume")
    assert r.returncode == 0, r.stderr
    history = [json.loads((d / "manifest.json").read_text())["history"] for d in (tmp_path / "whole", out)]
    assert history[0] == history[1]
    assert not (tmp_path / ".run.partial").exists()


@pytest.mark.parametrize("classes,per_class", [(2, 4), (5, 2), (6, 8), (2, 64), (3, 65), (4, 100)])
def test_few_labelled_rows_all_train_and_the_teacher_validates(classes, per_class, tmp_path):
    """Self-training from a few-label teacher: --train's rows, 64 a class or fewer on average, are too few to
    validate on and each is a label the student needs, so every one trains and the teacher's answers on a share of
    the texts validate; with more, --valid-pct of them is held out as before."""
    from ulmfit_cli.config import resolve
    from ulmfit_cli.data.batches import split_valid
    from ulmfit_cli.training.distill import Teaching

    rows = [(f"labelled {c} {i}", f"c{c}") for c in range(classes) for i in range(per_class)]
    with open(tmp_path / "few.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    texts = [f"text {i}" for i in range(300)]
    out = np.random.default_rng(0).dirichlet(np.ones(classes), len(texts)).astype(np.float32)
    cfg = resolve("finetune-clf", "tiny", {"valid_pct": 0.1})
    teach = Teaching([], tasks.SINGLE, [f"c{c}" for c in range(classes)], None, texts, out, 2.0, 0.5)
    from ulmfit_cli.data.readers import source_of

    src = source_of(tmp_path / "few.csv")
    _, (train_texts, labels), (vtexts, vlabels) = teach.tables(cfg, src, None, "text", "label")
    if per_class <= 64:
        _, va = split_valid(len(texts), cfg.valid_pct, cfg.seed)
        assert train_texts[: len(rows)] == [t for t, _ in rows] and labels == [y for _, y in rows]
        assert vtexts == [texts[i] for i in va] and vlabels == [f"c{int(np.argmax(out[i]))}" for i in va]
    else:
        _, va = split_valid(len(rows), cfg.valid_pct, cfg.seed)
        assert len(va) > 0 and vtexts == [rows[i][0] for i in va] and vlabels == [rows[i][1] for i in va]
        assert len(labels) == len(rows) - len(va)
