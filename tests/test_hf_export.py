"""`finetune-clf --head hf` and `ulmfit export RUN --hf DIR` (inference/hf_export.py) on the tiny random checkpoints
of hf_tiny: the folder loads in transformers' own pipeline("text-classification") without custom code and gives
predict's probabilities; what transformers cannot express is refused with one line before any work."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import hf_tiny
import numpy as np
import pytest

from conftest import one_line_error

DECODERS, ENCODERS = ("gpt2", "llama"), ("bert", "roberta", "distilbert")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hfexport")
    for family in DECODERS:
        hf_tiny.write_model(root / family, family, seed=1)
    for family in ENCODERS:
        hf_tiny.write_encoder(root / family, family, seed=4)
    with open(root / "train.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows((t, "the" if " the " in f" {t.lower()} " else "other") for t in hf_tiny.CORPUS * 4)
    return root


def _classifier(work, ulmfit, tmp_path, family: str, *flags) -> Path:
    lm, clf = tmp_path / "lm", tmp_path / "clf"
    assert ulmfit("import-hf", work / family, "--out", lm, "-q").returncode == 0
    r = ulmfit("finetune-clf", lm, work / "train.csv", "--out", clf, "--preset", "tiny", "--epochs", "2",
               "--max-len", "60", *flags, "-q")  # fmt: skip
    assert r.returncode == 0, r.stderr
    return clf


@pytest.mark.parametrize(
    "family, flags",
    [("gpt2", ()), ("llama", ("--adapter", "lora")), ("bert", ()), ("roberta", ("--adapter", "lora")),
     ("distilbert", ())],
)  # fmt: skip
def test_export_hf_loads_in_transformers_pipeline_with_predicts_probabilities(work, ulmfit, tmp_path, family, flags):
    from transformers import AutoModelForSequenceClassification, pipeline

    clf = _classifier(work, ulmfit, tmp_path, family, "--head", "hf", *flags)
    out = tmp_path / "hf"
    r = ulmfit("export", clf, "--hf", out)
    assert r.returncode == 0, r.stderr
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and 'pipeline_tag: "text-classification"' in card and "train.csv" in card
    made = card.split("## How it was made")[1]  # lines that reproduce each run: the flags it differed by
    assert "ulmfit import-hf" in made and "--head hf" in made and "--max-len 60" in made
    assert ("--adapter lora" in made) == ("--adapter" in flags)
    # the card names what the schedule did: a LoRA classifier trains all at once by default, full fine-tuning does not
    said = card.split("ULMFiT's recipe")[1].split(")")[0]
    assert ("gradual unfreezing" in said) == ("discriminative" in said) == ("--adapter" not in flags), said
    texts = hf_tiny.CORPUS[:12]
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n")
    pred = ulmfit("predict", clf, tmp_path / "texts.txt", "--format", "jsonl")
    assert pred.returncode == 0, pred.stderr
    want = [json.loads(x)["probs"] for x in pred.stdout.splitlines()]
    model = AutoModelForSequenceClassification.from_pretrained(str(out))
    assert type(model).__name__.endswith("ForSequenceClassification")
    classify = pipeline("text-classification", model=str(out), top_k=None, device="cpu")
    for scores, w in zip(classify(texts), want):
        got = {d["label"]: d["score"] for d in scores}
        assert set(got) == set(w)
        np.testing.assert_allclose([got[c] for c in w], list(w.values()), atol=1e-5, rtol=0)
    r = ulmfit("export", clf, "--onnx", tmp_path / "m.onnx")  # the other readers take a --head hf run too
    assert r.returncode == 0, r.stderr
    r = ulmfit("info", clf, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["backbone"] == "hf", r.stderr


def test_what_transformers_cannot_express_is_one_line(work, ulmfit, tmp_path):
    clf = _classifier(work, ulmfit, tmp_path, "gpt2")
    one_line_error(ulmfit("export", clf, "--hf", tmp_path / "hf"), 2, "--head hf")
    assert not (tmp_path / "hf").exists()
    one_line_error(ulmfit("export", clf), 2, "--onnx", "--hf")
    (tmp_path / "taken").write_text("x")
    one_line_error(ulmfit("export", clf, "--hf", tmp_path / "taken"), 2, "new or empty folder")
    one_line_error(ulmfit("export", clf, "--onnx", tmp_path / "m.onnx", "--push-to-hub", "me/model"), 2, "--hf")
    lm = tmp_path / "lm"
    r = ulmfit("finetune-clf", lm, work / "train.csv", "--out", tmp_path / "c2", "--head", "hf", "--pooling", "mean")
    one_line_error(r, 2, "--pooling")


def test_push_to_hub_offline_is_one_line_before_any_work(work, ulmfit, tmp_path):
    clf = _classifier(work, ulmfit, tmp_path, "gpt2", "--head", "hf")
    r = ulmfit("export", clf, "--hf", tmp_path / "hf", "--push-to-hub", "me/model")
    one_line_error(r, 2, "HF_HUB_OFFLINE")
    assert not (tmp_path / "hf").exists()


def test_a_multi_label_run_exports_with_sigmoid_scores(work, ulmfit, tmp_path):
    from transformers import pipeline

    train = tmp_path / "multi.csv"
    with open(train, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for t in hf_tiny.CORPUS * 4:
            tags = [x for x, on in (("the", " the " in f" {t.lower()} "), ("long", len(t) > 40)) if on]
            w.writerow([t, " ".join(tags or ["none"])])
    lm, clf = tmp_path / "lm", tmp_path / "clf"
    assert ulmfit("import-hf", work / "bert", "--out", lm, "-q").returncode == 0
    r = ulmfit("finetune-clf", lm, train, "--out", clf, "--preset", "tiny", "--epochs", "2", "--head", "hf",
               "--label-delim", " ", "-q")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert ulmfit("export", clf, "--hf", tmp_path / "hf").returncode == 0
    texts = hf_tiny.CORPUS[:8]
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n")
    pred = ulmfit("predict", clf, tmp_path / "texts.txt", "--format", "jsonl")
    assert pred.returncode == 0, pred.stderr
    want = [json.loads(x)["probs"] for x in pred.stdout.splitlines()]
    classify = pipeline("text-classification", model=str(tmp_path / "hf"), top_k=None, device="cpu")
    for scores, w in zip(classify(texts), want):
        got = {d["label"]: d["score"] for d in scores}
        np.testing.assert_allclose([got[c] for c in w], list(w.values()), atol=1e-5, rtol=0)
