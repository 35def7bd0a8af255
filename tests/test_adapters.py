"""--adapter lora on Hugging Face backbones (models/adapters.py, through PEFT), on the tiny random checkpoints of
hf_tiny, driven through the real commands offline: only the adapters and the classifier's head train, the
checkpoint's other weights stay bit for bit, and a reloaded classifier predicts what it did at the end of training
(the head is saved: PEFT's classic pitfall)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import hf_tiny
import pytest

from conftest import one_line_error

TARGETS = {"gpt2": ("c_attn",), "bert": ("query", "value")}  # PEFT's table for the family (--lora-targets auto)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("adapters")
    hf_tiny.write_model(root / "gpt2", "gpt2", seed=1)
    hf_tiny.write_encoder(root / "bert", "bert", seed=4)
    for family in ("gpt2", "bert"):
        with open(root / f"{family}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows((t, "the" if " the " in f" {t.lower()} " else "other") for t in hf_tiny.CORPUS * 4)
    return root


def _weights(run: Path) -> dict:
    """The state dict a reader loads from `run` (an adapter run's base with its adapters merged in)."""
    from ulmfit_cli.config import from_dict
    from ulmfit_cli.inference.predictor import load_classifier
    from ulmfit_cli.models import backbone
    from ulmfit_cli.runfolder import adapter_runs
    from ulmfit_cli.runfolder import artifacts as A

    r = A.open_run(run, ("pretrain", "finetune-lm", "finetune-clf"), "test")
    if r.stage == "finetune-clf":
        return load_classifier(r, "cpu")[2].state_dict()
    cfg = from_dict(r.config)
    return adapter_runs.load_lm(backbone("hf").build_lm(cfg, None), r, cfg).state_dict()


def _body_key(key: str) -> str:
    """A classifier's body weight under its LM's name (transformer.h.0... / bert.encoder...): the part after the
    base model's attribute."""
    return key.split(".", 1)[1]


def _check_only_adapters_changed(parent: dict, run: dict, family: str, rank: int, prefix: str) -> int:
    """Every weight of the run that the parent has is equal bit for bit, except the adapted layers', which moved by
    a matrix of rank <= --lora-rank (the merged B A); returns how many adapted weights moved."""
    import torch

    moved = 0
    for key, w in run.items():
        if not key.startswith(prefix):
            continue
        theirs = next((v for k, v in parent.items() if k.endswith(_body_key(key))), None)
        if theirs is None:
            continue
        adapted = any(f".{t}." in f".{key}" for t in TARGETS[family]) and key.endswith("weight")
        if not adapted:
            assert torch.equal(w, theirs), key
        elif not torch.equal(w, theirs):
            moved += 1
            assert torch.linalg.matrix_rank((w - theirs).double(), atol=1e-6) <= rank, key
    return moved


@pytest.mark.parametrize("family", ["gpt2", "bert"])
def test_a_lora_classifier_trains_adapters_and_head_only(work, ulmfit, tmp_path, family):
    lm, clf, train = tmp_path / "lm", tmp_path / "clf", work / f"{family}.csv"
    source = work / family
    assert ulmfit("import-hf", source, "--out", lm, "-q").returncode == 0
    r = ulmfit("finetune-clf", lm, train, "--valid", train, "--out", clf, "--preset", "tiny", "--epochs", "3",
               "--lr", "1e-2", "--adapter", "lora", "--lora-rank", "2", "--keep", "last", "-q")  # fmt: skip
    assert r.returncode == 0, r.stderr
    m = json.loads((clf / "manifest.json").read_text())
    assert m["config"]["adapter"] == "lora" and m["config"]["lora_rank"] == 2
    from safetensors.torch import load_file

    saved = load_file(str(clf / "adapter.safetensors"))  # the adapters and the head alone
    assert saved and all("lora_" in k or k.startswith("head.") for k in saved)
    assert not (clf / "model.safetensors").exists()
    weights = _weights(clf)
    assert not any("lora_" in k for k in weights)  # merged on loading: the plain architecture
    body = "body."
    moved = _check_only_adapters_changed(_weights(lm), weights, family, 2, body)
    assert moved > 0  # the adapters did train
    # the head is in the saved weights, and a reloaded classifier gives the last epoch's validation numbers
    assert any(k.startswith("head.") for k in weights)
    r = ulmfit("evaluate", clf, train, "--json")
    assert r.returncode == 0, r.stderr
    got, final = json.loads(r.stdout), m["final"]
    assert (got["accuracy"], got["macro_f1"]) == pytest.approx((final["accuracy"], final["macro_f1"]), abs=1e-9)
    r = ulmfit("predict", clf, train, "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    with open(train, newline="", encoding="utf-8") as f:
        labels = [row["label"] for row in csv.DictReader(f)]
    probs = [json.loads(line)["probs"] for line in r.stdout.splitlines()]
    loss = -sum(math.log(p[y]) for p, y in zip(probs, labels)) / len(labels)
    assert loss == pytest.approx(final["valid_loss"], abs=1e-4)  # the probabilities of the end of training


def test_gradual_unfreezing_goes_through_the_adapter_groups(work, ulmfit, tmp_path):
    """The schedule's groups are the checkpoint's (embed, blocks, head) whatever trains in each; with adapters the
    embeddings' group is empty and the blocks' groups hold their adapters only."""
    from ulmfit_cli.config import resolve
    from ulmfit_cli.models import hf
    from ulmfit_cli.training import stage_parts as parts

    lm = tmp_path / "lm"
    assert ulmfit("import-hf", work / "gpt2", "--out", lm, "-q").returncode == 0
    parent = json.loads((lm / "config.json").read_text())
    cfg = resolve("finetune-clf", "tiny", {"adapter": "lora", "groups": 2}, parent)
    model = parts.adapt(hf.build_classifier(cfg, None, 2), cfg)
    names, groups = hf.classifier_groups(model)
    assert names == ["embed", "block1", "block2", "head"]
    assert groups[0] == []
    named = {id(p): n for n, p in model.named_parameters()}
    for g in groups[1:-1]:
        assert g and all("lora_" in named[id(p)] for p in g)
    assert {named[id(p)] for p in groups[-1]} == {n for n, _ in model.head.named_parameters(prefix="head")}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {named[id(p)] for g in groups for p in g}


def test_an_lm_trains_its_adapters_alone(work, ulmfit, tmp_path):
    """A masked-LM head (BERT's transform and bias, outside the base model) stays frozen with the rest."""
    from ulmfit_cli.config import resolve
    from ulmfit_cli.models import hf
    from ulmfit_cli.training import stage_parts as parts

    lm = tmp_path / "lm"
    assert ulmfit("import-hf", work / "bert", "--out", lm, "-q").returncode == 0
    cfg = resolve("finetune-lm", "tiny", {"adapter": "lora"}, json.loads((lm / "config.json").read_text()))
    model = parts.adapt(hf.build_lm(cfg), cfg)
    named = {id(p): n for n, p in model.named_parameters()}
    _, groups = hf.lm_groups(model)
    assert all("lora_" in named[id(p)] for g in groups for p in g) and sum(map(len, groups)) > 0


def test_an_lm_adapter_is_merged_and_the_classifier_adapts_the_result(work, ulmfit, tmp_path):
    lm, ft, clf, train = tmp_path / "lm", tmp_path / "ft", tmp_path / "clf", work / "gpt2.csv"
    assert ulmfit("import-hf", work / "gpt2", "--out", lm, "-q").returncode == 0
    r = ulmfit("finetune-lm", lm, train, "--out", ft, "--preset", "tiny", "--lr", "1e-2", "--adapter", "lora",
               "--lora-rank", "4", "-q")  # fmt: skip
    assert r.returncode == 0, r.stderr
    before, after = _weights(lm), _weights(ft)
    assert set(before) == set(after)  # merged on loading: the checkpoint's own names, no adapter left
    assert _check_only_adapters_changed(before, after, "gpt2", 4, "hf.") > 0
    r = ulmfit("finetune-clf", ft, train, "--out", clf, "--preset", "tiny", "--epochs", "2", "--adapter", "lora", "-q")
    assert r.returncode == 0, r.stderr
    full = tmp_path / "full"  # an ensemble of an adapter run and a full fine-tuning
    assert ulmfit("finetune-clf", ft, train, "--out", full, "--preset", "tiny", "--epochs", "1", "-q").returncode == 0
    r = ulmfit("predict", clf, train, "--ensemble", full, "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == len(hf_tiny.CORPUS) * 4


@pytest.mark.parametrize(
    ("family", "auto_only", "all_linear_too"), [("gpt2", "c_attn", "c_fc"), ("bert", "query", "intermediate.dense")]
)
def test_all_linear_adapts_every_linear_layer_of_the_blocks(work, ulmfit, tmp_path, family, auto_only, all_linear_too):
    from safetensors.torch import load_file

    lm = tmp_path / "lm"
    assert ulmfit("import-hf", work / family, "--out", lm, "-q").returncode == 0
    adapted = {}
    for targets in ("auto", "all-linear"):
        clf = tmp_path / targets
        r = ulmfit("finetune-clf", lm, work / f"{family}.csv", "--out", clf, "--preset", "tiny", "--epochs", "1",
                   "--adapter", "lora", "--lora-targets", targets, "-q")  # fmt: skip
        assert r.returncode == 0, r.stderr
        adapted[targets] = {k.split(".lora_")[0] for k in load_file(str(clf / "adapter.safetensors")) if "lora_" in k}
    assert any(k.endswith(auto_only) for k in adapted["auto"])
    assert not any(all_linear_too in k for k in adapted["auto"])
    assert adapted["auto"] < adapted["all-linear"]  # the same layers and more: the feed-forward's too
    assert any(all_linear_too in k for k in adapted["all-linear"])
    assert not any("lm_head" in k or "wte" in k for k in adapted["all-linear"])  # layers, not embeddings


def test_wrong_targets_and_non_hf_backbones_are_one_line(work, ulmfit, tmp_path):
    from ulmfit_cli.config import resolve
    from ulmfit_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="needs --backbone hf"):
        resolve("finetune-clf", "tiny", {"adapter": "lora"}, {"backbone": "awd-lstm"})
    lm = tmp_path / "lm"
    assert ulmfit("import-hf", work / "gpt2", "--out", lm, "-q").returncode == 0
    r = ulmfit("finetune-clf", lm, work / "gpt2.csv", "--out", tmp_path / "clf", "--preset", "tiny",
               "--adapter", "lora", "--lora-targets", "no_such_layer")  # fmt: skip
    one_line_error(r, 2, "--lora-targets", "no_such_layer")
    r = ulmfit("finetune-clf", lm, work / "gpt2.csv", "--out", tmp_path / "clf", "--adapter", "lora", "--lora-rank", 0)
    one_line_error(r, 2, "--lora-rank")


def _lora_run(work, ulmfit, root: Path, family: str = "gpt2") -> tuple[Path, Path]:
    lm, clf = root / "lm", root / "clf"
    root.mkdir(exist_ok=True)
    assert ulmfit("import-hf", work / family, "--out", lm, "-q").returncode == 0
    r = ulmfit("finetune-clf", lm, work / f"{family}.csv", "--out", clf, "--preset", "tiny", "--epochs", "1",
               "--adapter", "lora", "-q")  # fmt: skip
    assert r.returncode == 0, r.stderr
    return lm, clf


def _probs(ulmfit, run: Path, texts: Path) -> list:
    r = ulmfit("predict", run, texts, "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    return [json.loads(line)["probs"] for line in r.stdout.splitlines()]


def test_an_adapter_run_is_small_and_finds_its_base_when_moved(work, ulmfit, tmp_path):
    import shutil

    lm, clf = _lora_run(work, ulmfit, tmp_path / "a")
    texts = work / "gpt2.csv"
    want = _probs(ulmfit, clf, texts)
    r = ulmfit("info", clf, "--json")
    assert r.returncode == 0, r.stderr
    disk = json.loads(r.stdout)["disk"]
    assert disk["base_bytes"] == (lm / "model.safetensors").stat().st_size and disk["folder_bytes"] > 0
    assert (clf / "adapter.safetensors").stat().st_size * 3 < disk["base_bytes"]  # 16 wide, rank 8: even so
    assert "adapters; the base weights" in ulmfit("info", clf).stdout
    # the adapter folder alone moved: its base is where it was
    shutil.move(clf, tmp_path / "elsewhere")
    assert _probs(ulmfit, tmp_path / "elsewhere", texts) == want
    # both moved together: the base is found beside it
    (tmp_path / "b").mkdir()
    shutil.move(lm, tmp_path / "b" / "lm")
    shutil.move(tmp_path / "elsewhere", tmp_path / "b" / "clf")
    assert _probs(ulmfit, tmp_path / "b" / "clf", texts) == want
    r = ulmfit("export", tmp_path / "b" / "clf", "--onnx", tmp_path / "m.onnx")
    assert r.returncode == 0, r.stderr
    r = ulmfit("predict", tmp_path / "b" / "clf", texts, "--engine", "onnx", "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    onnx = [json.loads(line)["probs"] for line in r.stdout.splitlines()]
    assert max(abs(a[c] - b[c]) for a, b in zip(onnx, want) for c in a) < 1e-5


def test_an_adapter_file_without_its_head_is_refused(work, ulmfit, tmp_path):
    """PEFT's pitfall, from the reading side: a head missing from the adapter file is an error, never a random
    head."""
    from safetensors.torch import load_file, save_file

    _, clf = _lora_run(work, ulmfit, tmp_path)
    tensors = load_file(str(clf / "adapter.safetensors"))
    save_file({k: v for k, v in tensors.items() if not k.startswith("head.")}, str(clf / "adapter.safetensors"))
    manifest = json.loads((clf / "manifest.json").read_text())
    one_line_error(ulmfit("predict", clf, work / "gpt2.csv"), 2, "adapter.safetensors", "missing", "head.")
    assert manifest["files"]["weights"] == "adapter.safetensors"


def test_a_missing_or_changed_base_is_one_line(work, ulmfit, tmp_path, cache_dir):
    lm, clf = _lora_run(work, ulmfit, tmp_path)
    texts = work / "gpt2.csv"
    saved = (lm / "model.safetensors").read_bytes()
    (lm / "model.safetensors").unlink()
    one_line_error(ulmfit("predict", clf, texts), 2, "base weights", str(lm / "model.safetensors"), "put that run")
    changed = bytearray(saved)
    changed[-1] ^= 1
    (lm / "model.safetensors").write_bytes(bytes(changed))
    one_line_error(ulmfit("evaluate", clf, texts), 2, "changed since this adapter run was trained")
    (lm / "model.safetensors").unlink()  # gone from its folder, but kept in the cache under its hash
    sha = json.loads((clf / "manifest.json").read_text())["adapter"]["base"]["sha256"]
    bases = cache_dir / "ulmfit-cache" / "bases"  # $ULMFIT_CACHE/bases (conftest._env)
    bases.mkdir(parents=True, exist_ok=True)
    (bases / f"{sha}.safetensors").write_bytes(saved)
    assert ulmfit("predict", clf, texts, "--format", "label").returncode == 0


def test_workflows_read_an_adapter_parent(work, ulmfit, tmp_path):
    """lr-find and pipeline --parent start from an LM adapter run (its base and adapter merged)."""
    lm, ft, train = tmp_path / "lm", tmp_path / "ft", work / "gpt2.csv"
    assert ulmfit("import-hf", work / "gpt2", "--out", lm, "-q").returncode == 0
    r = ulmfit("finetune-lm", lm, train, "--out", ft, "--preset", "tiny", "--adapter", "lora", "-q")
    assert r.returncode == 0, r.stderr
    r = ulmfit("lr-find", ft, train, "--preset", "tiny", "--stage", "finetune-clf", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["suggested_lr"] > 0, r.stderr
    r = ulmfit("pipeline", train, "--parent", ft, "--out", tmp_path / "p", "--preset", "tiny", "--test", train)
    assert r.returncode == 0, r.stderr
