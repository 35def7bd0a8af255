"""Pretrained Hugging Face decoders as a backbone (`import-hf`, `--backbone hf`): tiny random GPT-2 and Llama models
built by the tests in the Hub's layout (hf_tiny), driven through the real commands. Nothing is downloaded
(HF_HUB_OFFLINE=1 in every call)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import hf_tiny
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import one_line_error

FAMILIES = ("gpt2", "llama")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hf")
    for family in FAMILIES:
        hf_tiny.write_model(root / family, family, seed=1)
    hf_tiny.write_model(root / "llama-untied", "llama", seed=2, tie=False)
    hf_tiny.write_gguf(root / "gguf" / "tiny.gguf", seed=3)
    hf_tiny.write_model(root / "llama-seed3", "llama", seed=3)
    texts = hf_tiny.CORPUS * 4
    with open(root / "train.csv", "w", newline="", encoding="utf-8") as f:  # a label a model can learn: "the"
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows((t, "the" if " the " in f" {t.lower()} " else "other") for t in texts)
    return root


def _logits(model, ids):
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids]))


def _ours(run: Path):
    """The LM of an import-hf run folder as the stages load it."""
    from ulmfit_cli.config import from_dict
    from ulmfit_cli.models import backbone
    from ulmfit_cli.runfolder import artifacts as A

    r = A.open_run(run, A.LM_STAGES, "test")
    cfg = from_dict(r.config)
    lm = backbone(cfg.backbone).build_lm(cfg, r.manifest["vocab_size"])
    A.load_weights(lm, r.file("weights"))
    return lm.eval()


def _theirs(folder: Path, gguf: str | None = None):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=gguf, dtype=torch.float32).eval()


@pytest.mark.parametrize("name", [*FAMILIES, "llama-untied"])
def test_imported_logits_equal_transformers(work, ulmfit, tmp_path, name):
    r = ulmfit("import-hf", work / name, "--out", tmp_path / "lm", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["stage"] == "pretrain"
    ids = list(range(1, 60)) + [0, 5, 7]
    ours = _logits(_ours(tmp_path / "lm"), ids)[0]
    theirs = _logits(_theirs(work / name), ids).logits
    assert ours.shape == theirs.shape == (1, len(ids), hf_tiny.VOCAB_SIZE)
    assert float((ours - theirs).abs().max()) < 1e-5
    m = json.loads((tmp_path / "lm" / "manifest.json").read_text())
    assert m["backbone"] == "hf" and m["config"]["hf_config"]["model_type"] == name.split("-")[0]
    assert m["imported"]["start_token"] == {"id": 0, "text": hf_tiny.EOS}
    assert m["inputs"][0]["fingerprint"].startswith("sha256:")
    assert (tmp_path / "lm" / "hf" / "config.json").is_file() and (tmp_path / "lm" / "hf" / "tokenizer.json").is_file()


def test_gguf_file_imports_with_the_weights_it_holds(work, ulmfit, tmp_path):
    """write_gguf(seed 3) holds exactly write_model(llama, seed 3)'s weights, permuted as llama.cpp writes them."""
    r = ulmfit("import-hf", work / "gguf", "--gguf-file", "tiny.gguf", "--out", tmp_path / "lm")
    assert r.returncode == 0, r.stderr
    assert "GGUF tensors" not in r.stderr  # transformers' own progress bar stays off our stderr
    ids = [0, *range(3, 80)]
    ours = _logits(_ours(tmp_path / "lm"), ids)[0]
    assert float((ours - _logits(_theirs(work / "llama-seed3"), ids).logits).abs().max()) < 1e-5
    m = json.loads((tmp_path / "lm" / "manifest.json").read_text())
    assert m["imported"]["gguf_file"] == "tiny.gguf"
    # the .gguf file itself as MODEL is the same import
    assert ulmfit("import-hf", work / "gguf" / "tiny.gguf", "--out", tmp_path / "lm2").returncode == 0
    assert (tmp_path / "lm2" / "model.safetensors").read_bytes() == (tmp_path / "lm" / "model.safetensors").read_bytes()


def test_tokenizer_is_the_checkpoints(work, ulmfit, tmp_path):
    """The run's tokenizer gives the checkpoint's ids (transformers' AutoTokenizer, no special tokens added)."""
    from transformers import AutoTokenizer

    from ulmfit_cli.data.tokenizer import encode_docs, load_tokenizer

    assert ulmfit("import-hf", work / "gpt2", "--out", tmp_path / "lm").returncode == 0
    tok = load_tokenizer(tmp_path / "lm" / "tokenizer.json")
    theirs = AutoTokenizer.from_pretrained(str(work / "gpt2"))
    texts = [*hf_tiny.CORPUS, "naïve café 😀\ttabs", "  spaces  "]
    for text, doc in zip(texts, encode_docs(tok, texts)):
        assert doc[0] == 0  # the start token (<|endoftext|>, the checkpoint's bos)
        assert doc[1:].tolist() == theirs(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("family", FAMILIES)
def test_three_stages_and_every_reader(work, ulmfit, tmp_path, family):
    lm, ft, clf = tmp_path / "lm", tmp_path / "ft", tmp_path / "clf"
    train = work / "train.csv"
    assert ulmfit("import-hf", work / family, "--out", lm, "-q").returncode == 0
    r = ulmfit("finetune-lm", lm, train, "--out", ft, "--preset", "tiny", "--epochs", "2", "--json", "-q")
    assert r.returncode == 0, r.stderr
    first = json.loads((ft / "manifest.json").read_text())["history"]
    assert len(first) == 2 and all(np.isfinite(row["valid_loss"]) for row in first)
    r = ulmfit("finetune-clf", ft, train, "--out", clf, "--preset", "tiny", "--epochs", "5", "--lr", "3e-3", "-q")
    assert r.returncode == 0, r.stderr
    m = json.loads((clf / "manifest.json").read_text())
    assert m["backbone"] == "hf" and [p["stage"] for p in [m["parent"]]] == ["finetune-lm"]
    assert m["history"][-1]["accuracy"] >= 0.5
    r = ulmfit("predict", clf, train, "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == len(hf_tiny.CORPUS) * 4
    assert all(abs(sum(row["probs"].values()) - 1) < 1e-4 for row in rows)
    r = ulmfit("evaluate", clf, train, "--json")
    assert r.returncode == 0, r.stderr
    assert 0 <= json.loads(r.stdout)["accuracy"] <= 1
    r = ulmfit("predict", clf, train, "--quantize", "int8", "--format", "label")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == len(rows), r.stderr
    assert "warning:" in r.stderr and "int8" in r.stderr  # decoders lose accuracy to int8: said on stderr
    r = ulmfit("info", clf, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["backbone"] == "hf"
    r = ulmfit("predict", clf, train, "--ensemble", clf, "--format", "jsonl")  # an ensemble of one run twice
    assert r.returncode == 0 and [json.loads(x)["probs"] for x in r.stdout.splitlines()] == [x["probs"] for x in rows]


def test_the_schedule_has_the_checkpoints_layer_groups(work, ulmfit, tmp_path):
    assert ulmfit("import-hf", work / "llama", "--out", tmp_path / "lm", "-q").returncode == 0
    r = ulmfit(
        "finetune-clf", tmp_path / "lm", work / "train.csv", "--preset", "tiny", "--print-schedule", "--groups", "2"
    )
    assert r.returncode == 0, r.stderr
    for name in ("embed", "block1", "block2", "head"):
        assert name in r.stdout
    r = ulmfit(
        "finetune-clf", tmp_path / "lm", work / "train.csv", "--preset", "tiny", "--print-schedule", "--groups", "1"
    )
    assert "blocks1-2" in r.stdout


@pytest.mark.parametrize("name", [*FAMILIES, "llama-untied"])
@pytest.mark.parametrize("groups", [1, 2, 5])
def test_layer_groups_partition_the_parameters(work, name, groups):
    """Every parameter trains in exactly one group; a tied LM head is the embedding, in the embed group."""
    from ulmfit_cli.config import RunConfig
    from ulmfit_cli.models import hf

    config = json.loads((work / name / "config.json").read_text())
    cfg = RunConfig(stage="finetune-lm", backbone="hf", tokenizer="hf", hf_config=config, n_layers=2, groups=groups)
    for model, grouped in ((hf.build_lm(cfg), hf.lm_groups), (hf.build_classifier(cfg, None, 3), hf.classifier_groups)):
        names, groups_ = grouped(model)
        assert names == hf.group_names("lm", cfg) and len(names) == len(groups_) == 2 + min(groups, 2)
        ids = [id(p) for g in groups_ for p in g]
        assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in model.parameters()}
        embedding = model.hf.get_input_embeddings() if hasattr(model, "hf") else model.body.get_input_embeddings()
        assert id(embedding.weight) in {id(p) for p in groups_[0]}


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3000), max_len=st.integers(2, 600))
def test_cut_doc_keeps_head_and_tail(n, max_len):
    from ulmfit_cli.models.hf import HEAD_SHARE, cut_doc

    doc = np.arange(n)
    kept = cut_doc(doc, max_len)
    if n <= max_len:
        assert kept.tolist() == doc.tolist()
        return
    head = max(1, int(max_len * HEAD_SHARE))
    assert len(kept) == max_len and kept[0] == 0 and kept[-1] == n - 1
    assert kept[:head].tolist() == list(range(head)) and kept[head:].tolist() == list(range(n - max_len + head, n))


@settings(max_examples=25, deadline=None)
@given(lens=st.lists(st.integers(1, 40), min_size=1, max_size=6), seed=st.integers(0, 1000))
def test_pool_masks_pads_and_the_start_token(lens, seed):
    """pool = [last real token, max, mean] over real tokens after the first, checked against a plain loop."""
    import torch

    from ulmfit_cli.models.hf import pool

    g = torch.Generator().manual_seed(seed)
    T = max(lens)
    h = torch.randn(len(lens), T, 4, generator=g)
    mask = torch.tensor([[t < n for t in range(T)] for n in lens])
    out = pool(h, mask)
    for r, n in enumerate(lens):
        body = h[r, 1:n] if n > 1 else h[r, :1]
        want = torch.cat([h[r, n - 1], body.max(0).values, body.mean(0)])
        assert torch.allclose(out[r], want, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_documents_output_does_not_depend_on_its_batch(work, family):
    """Padding at the end with causal attention: a document alone and in a batch beside longer ones gives the
    same logits (the pads it sits beside are invisible to it)."""
    import torch

    from ulmfit_cli.config import RunConfig
    from ulmfit_cli.data.batches import classifier_batches
    from ulmfit_cli.models import hf

    config = json.loads((work / family / "config.json").read_text())
    cfg = RunConfig(stage="finetune-clf", backbone="hf", tokenizer="hf", hf_config=config, n_layers=2)
    torch.manual_seed(0)
    model = hf.build_classifier(cfg, None, 3).eval()
    rng = np.random.default_rng(0)
    docs = [np.concatenate([[0], rng.integers(1, 300, size=k)]) for k in (3, 17, 40, 1, 8)]
    with torch.no_grad():
        alone = [model(torch.tensor(hf.pad_batch([d], 0, 0)))[0][0] for d in docs]
        for idx, x, _ in classifier_batches(docs, None, 5, 32, 0, pad=hf.pad_batch):
            together = model(x)[0]
            for row, i in enumerate(idx):
                assert torch.allclose(together[row], alone[i], atol=1e-5)


def test_random_init_is_the_same_architecture(work, ulmfit, tmp_path):
    """learning-curve's no-pretraining variant: `--init random` (finetune-clf) builds the checkpoint's
    architecture with fresh weights."""
    assert ulmfit("import-hf", work / "llama", "--out", tmp_path / "lm", "-q").returncode == 0
    r = ulmfit("finetune-clf", tmp_path / "lm", work / "train.csv", "--out", tmp_path / "c", "--preset", "tiny",
               "--epochs", "1", "--init", "random", "-q")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "c" / "manifest.json").read_text())["init"] == "random"


# ---- refusals: one line, exit 2, nothing written ----------------------------------------------------------


def test_code_from_the_checkpoint_is_refused(work, ulmfit, tmp_path):
    folder = tmp_path / "remote"
    hf_tiny.write_model(folder, "llama")
    spec = json.loads((folder / "config.json").read_text())
    spec["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (folder / "config.json").write_text(json.dumps(spec))
    one_line_error(ulmfit("import-hf", folder, "--out", tmp_path / "lm"), 2, "trust_remote_code")
    assert not (tmp_path / "lm").exists()


def test_an_encoder_decoder_is_refused_naming_what_is_supported(ulmfit, tmp_path):
    from transformers import T5Config

    folder = tmp_path / "t5"
    folder.mkdir()
    T5Config(vocab_size=64, d_model=8, d_kv=4, d_ff=8, num_layers=1, num_heads=2).save_pretrained(folder)
    r = ulmfit("import-hf", folder, "--out", tmp_path / "lm")
    one_line_error(r, 2, "neither a decoder-only causal LM nor a masked-LM encoder", "llama", "bert")
    assert not (tmp_path / "lm").exists()


def test_missing_things_are_one_line(work, ulmfit, tmp_path):
    one_line_error(ulmfit("import-hf", tmp_path / "nowhere", "--out", tmp_path / "a"), 2, "no such folder")
    one_line_error(ulmfit("import-hf", work / "gguf", "--out", tmp_path / "a"), 2, "no config.json", "--gguf-file")
    one_line_error(
        ulmfit("import-hf", work / "gguf", "--gguf-file", "other.gguf", "--out", tmp_path / "a"), 2, "no such GGUF"
    )
    one_line_error(ulmfit("import-hf", work / "llama", "--dtype", "int3", "--out", tmp_path / "a"), 2, "--dtype")
    # a Hub id with the network off (HF_HUB_OFFLINE=1) and nothing cached
    one_line_error(ulmfit("import-hf", "nobody/no-such-model", "--out", tmp_path / "a"), 2, "nobody/no-such-model")
    assert not (tmp_path / "a").exists()


def test_without_transformers_the_command_says_how_to_get_it(work, tmp_path, monkeypatch):
    import importlib.util

    from ulmfit_cli.errors import ConfigError
    from ulmfit_cli.importers import hf as hub

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "transformers" else real(name, *a)
    )
    with pytest.raises(ConfigError, match=r"pip install 'ulmfit-cli\[hf\]'"):
        hub.import_hf(str(work / "llama"), tmp_path / "lm", reporter=None)
    assert not (tmp_path / "lm").exists()


def test_what_a_checkpoint_cannot_do_is_refused_before_any_work(work, ulmfit, tmp_path):
    lm = tmp_path / "lm"
    assert ulmfit("import-hf", work / "gpt2", "--out", lm, "-q").returncode == 0
    train = work / "train.csv"
    one_line_error(ulmfit("finetune-lm", lm, train, "--out", tmp_path / "a", "--backwards"), 2, "--backwards")
    one_line_error(ulmfit("finetune-lm", lm, train, "--out", tmp_path / "a", "--alpha", "2"), 2, "--alpha")
    one_line_error(ulmfit("finetune-clf", lm, train, "--out", tmp_path / "a", "--max-len", "1000"), 2, "256 positions")
    one_line_error(ulmfit("finetune-lm", lm, train, "--out", tmp_path / "a", "--backbone", "awd-lstm"), 2, "--backbone")
    one_line_error(ulmfit("pretrain", train, "--out", tmp_path / "a", "--backbone", "hf"), 2, "import-hf")
    assert not (tmp_path / "a").exists()


def test_workflows_read_a_checkpoint_parent(work, ulmfit, tmp_path):
    """inspect --parent (the checkpoint's tokenizer, a max_len the model can read), lr-find, pipeline --parent and
    learning-curve (its no-pretraining variant is the same architecture, random) on an import-hf run."""
    lm, train = tmp_path / "lm", work / "train.csv"
    assert ulmfit("import-hf", work / "llama", "--out", lm, "-q").returncode == 0
    r = ulmfit("inspect", train, "--parent", lm, "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["suggest"]["max_len"] <= 256 and rep["files"][0]["tokens"]["unk_rate"] == 0
    r = ulmfit("lr-find", lm, train, "--preset", "tiny", "--stage", "finetune-clf", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["suggested_lr"] > 0
    r = ulmfit(
        "pipeline", train, "--parent", lm, "--out", tmp_path / "p", "--preset", "tiny", "--test", train, "--json"
    )
    assert r.returncode == 0, r.stderr
    r = ulmfit("learning-curve", lm, train, "--test", train, "--preset", "tiny", "--sizes", "60", "--seeds", "1",
               "--out", tmp_path / "lc", "--clf-set", "epochs=2", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = (tmp_path / "lc" / "learning_curve.csv").read_text().splitlines()
    assert {"random", "supervised", "semi-supervised"} <= {line.split(",")[0] for line in rows[1:]}


# ---- encoders (BERT family) -------------------------------------------------------------------------------

ENCODERS = ("bert", "roberta", "distilbert")


@pytest.fixture(scope="module")
def encoders(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("enc")
    for family in ENCODERS:
        hf_tiny.write_encoder(root / family, family, seed=4)
        hf_tiny.write_encoder(root / f"{family}-nohead", family, seed=5, mlm_head=False)
    return root


@pytest.mark.parametrize("family", ENCODERS)
def test_encoder_imports_with_its_mlm_head_and_transformers_logits(encoders, ulmfit, tmp_path, family):
    import torch
    from transformers import AutoModelForMaskedLM

    r = ulmfit("import-hf", encoders / family, "--out", tmp_path / "lm")
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "lm" / "manifest.json").read_text())
    assert m["lm_head"] is True and m["imported"]["kind"] == "encoder"
    assert m["imported"]["start_token"]["text"] == hf_tiny.CLS and m["imported"]["end_token"]["text"] == hf_tiny.SEP
    ids = [0, *range(5, 60), 2]
    theirs = AutoModelForMaskedLM.from_pretrained(str(encoders / family), dtype=torch.float32).eval()
    assert float((_logits(_ours(tmp_path / "lm"), ids)[0] - _logits(theirs, ids).logits).abs().max()) < 1e-5


@pytest.mark.parametrize("family", ENCODERS)
def test_a_headless_encoder_goes_straight_to_the_classifier(encoders, ulmfit, tmp_path, family):
    """A sentence-encoder checkpoint (no MLM head): recorded; finetune-lm refuses it (one line: what to do) unless
    --new-lm-head; finetune-clf reads its body, whose states equal transformers' AutoModel's."""
    import torch
    from transformers import AutoModel

    lm, train = tmp_path / "lm", tmp_path / "train.csv"
    _write_train(train)
    assert ulmfit("import-hf", encoders / f"{family}-nohead", "--out", lm, "-q").returncode == 0
    assert json.loads((lm / "manifest.json").read_text())["lm_head"] is False
    one_line_error(
        ulmfit("finetune-lm", lm, train, "--out", tmp_path / "ft"), 2, "no language-model head", "--new-lm-head"
    )
    assert not (tmp_path / "ft").exists()
    r = ulmfit("finetune-clf", lm, train, "--out", tmp_path / "clf", "--preset", "tiny", "--epochs", "2", "-q")
    assert r.returncode == 0, r.stderr
    from ulmfit_cli.inference.predictor import load_classifier
    from ulmfit_cli.runfolder import artifacts as A

    _, _, clf = load_classifier(A.open_run(tmp_path / "clf", ("finetune-clf",), "test"), "cpu")
    theirs = AutoModel.from_pretrained(str(encoders / f"{family}-nohead"), dtype=torch.float32).eval()
    ids = torch.tensor([[0, *range(5, 40), 2]])
    with torch.no_grad():
        before = theirs(input_ids=ids).last_hidden_state
        ours = _ours(lm).hf.base_model(input_ids=ids).last_hidden_state
    assert float((ours - before).abs().max()) < 1e-5  # the imported body is the checkpoint's
    assert clf.pooling == "mean"  # --pooling auto for an encoder
    r = ulmfit("finetune-lm", lm, train, "--out", tmp_path / "ft", "--preset", "tiny", "--new-lm-head", "--json", "-q")
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "ft" / "manifest.json").read_text())
    assert m["config"]["new_lm_head"] is True and np.isfinite(m["history"][-1]["valid_loss"])


def _write_train(path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows((t, "the" if " the " in f" {t.lower()} " else "other") for t in hf_tiny.CORPUS * 4)


@pytest.mark.parametrize("family", ENCODERS)
def test_encoder_three_stages_and_readers(encoders, ulmfit, tmp_path, family):
    lm, ft, clf, train = tmp_path / "lm", tmp_path / "ft", tmp_path / "clf", tmp_path / "train.csv"
    _write_train(train)
    assert ulmfit("import-hf", encoders / family, "--out", lm, "-q").returncode == 0
    r = ulmfit("finetune-lm", lm, train, "--out", ft, "--preset", "tiny", "--epochs", "2", "-q")
    assert r.returncode == 0, r.stderr
    history = json.loads((ft / "manifest.json").read_text())["history"]
    assert all(np.isfinite(row["valid_loss"]) and 0 <= row["accuracy"] <= 1 for row in history)
    for pooling in ("cls", "mean", "concat"):
        r = ulmfit("finetune-clf", ft, train, "--out", clf, "--preset", "tiny", "--epochs", "3", "--pooling", pooling,
                   "--overwrite", "-q")  # fmt: skip
        assert r.returncode == 0, r.stderr
        r = ulmfit("evaluate", clf, train, "--json")
        assert r.returncode == 0 and 0 <= json.loads(r.stdout)["accuracy"] <= 1, r.stderr
    r = ulmfit("predict", clf, train, "--format", "jsonl", "--quantize", "int8")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == len(hf_tiny.CORPUS) * 4, r.stderr


def test_pooling_cls_is_refused_for_a_decoder(work, ulmfit, tmp_path):
    assert ulmfit("import-hf", work / "llama", "--out", tmp_path / "lm", "-q").returncode == 0
    r = ulmfit("finetune-clf", tmp_path / "lm", work / "train.csv", "--out", tmp_path / "c", "--pooling", "cls")
    one_line_error(r, 2, "--pooling cls")


@pytest.mark.parametrize("family", ENCODERS)
def test_an_encoders_output_does_not_depend_on_its_batch(encoders, family):
    """Bidirectional attention would read the pads: the attention mask keeps a document's output its own."""
    import torch

    from ulmfit_cli.config import RunConfig
    from ulmfit_cli.data.batches import classifier_batches
    from ulmfit_cli.models import hf

    config = json.loads((encoders / family / "config.json").read_text())
    for pooling in ("cls", "mean", "concat"):
        cfg = RunConfig(stage="finetune-clf", backbone="hf", tokenizer="hf", hf_config=config, n_layers=2,
                        pooling=pooling)  # fmt: skip
        torch.manual_seed(0)
        model = hf.build_classifier(cfg, None, 3).eval()
        rng = np.random.default_rng(1)
        docs = [np.concatenate([[0], rng.integers(5, 300, size=k), [2]]) for k in (3, 17, 40, 1, 8)]
        with torch.no_grad():
            alone = [model(torch.tensor(hf.pad_batch([d], 0, 0)))[0][0] for d in docs]
            for idx, x, _ in classifier_batches(docs, None, 5, 32, 0, pad=hf.pad_batch):
                together = model(x)[0]
                for row, i in enumerate(idx):
                    assert torch.allclose(together[row], alone[i], atol=1e-5), (pooling, i)


@pytest.mark.parametrize("seed", [0, 7])
def test_masking_is_transformers_rule_draw_for_draw(seed, tmp_path):
    """The same masks as transformers' DataCollatorForLanguageModeling on the same generator (BERT's 15% and
    80/10/10), the start, end and mask tokens never chosen; and the rates hold over many tokens."""
    import torch
    from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerFast

    from ulmfit_cli.models.hf import mask_tokens

    hf_tiny.write_encoder_tokenizer(tmp_path)
    tok = PreTrainedTokenizerFast.from_pretrained(str(tmp_path))
    x = torch.randint(0, hf_tiny.ENCODER_VOCAB_SIZE, (64, 128), generator=torch.Generator().manual_seed(seed))
    special = [0, 2, 3]
    collator = DataCollatorForLanguageModeling(tok, mlm=True, mlm_probability=0.15)
    collator.generator = torch.Generator().manual_seed(seed)
    want_x, want_y = collator.torch_mask_tokens(x.clone(), special_tokens_mask=torch.isin(x, torch.tensor(special)))
    got_x, got_y = mask_tokens(x, 3, hf_tiny.ENCODER_VOCAB_SIZE, special, torch.Generator().manual_seed(seed))
    assert torch.equal(got_x, want_x) and torch.equal(got_y, want_y)
    chosen = got_y != -100
    assert not chosen[torch.isin(x, torch.tensor(special))].any()
    assert torch.equal(got_y[chosen], x[chosen])
    share = chosen.float().mean().item()
    assert 0.13 < share < 0.17
    masked = (got_x == 3) & chosen
    kept = (got_x == x) & chosen
    assert 0.75 < masked.sum().item() / chosen.sum().item() < 0.85
    assert 0.06 < kept.sum().item() / chosen.sum().item() < 0.14


@pytest.mark.parametrize("family", [*FAMILIES, *ENCODERS])
def test_export_onnx_gives_predicts_probabilities(work, encoders, ulmfit, tmp_path, family):
    """One graph with dynamic batch and time axes; fed as its JSON says (start, ids, end; a long document cut to
    its head and tail), onnxruntime's probabilities are predict's."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    source = (work if family in FAMILIES else encoders) / family
    train, lm, clf = tmp_path / "train.csv", tmp_path / "lm", tmp_path / "clf"
    _write_train(train)
    assert ulmfit("import-hf", source, "--out", lm, "-q").returncode == 0
    r = ulmfit("finetune-clf", lm, train, "--out", clf, "--preset", "tiny", "--epochs", "2", "--max-len", "40", "-q")
    assert r.returncode == 0, r.stderr
    r = ulmfit("export", clf, "--onnx", tmp_path / "m.onnx")
    assert r.returncode == 0, r.stderr
    files = json.loads(r.stdout)
    meta = json.loads(Path(files["meta"]).read_text())
    tok = Tokenizer.from_file(files["tokenizer"])
    texts = [*hf_tiny.CORPUS[:9], " ".join(hf_tiny.CORPUS[:6])]  # the last is longer than --max-len 40
    docs = []
    for t in texts:
        d = [meta["bos_id"], *tok.encode(t, add_special_tokens=False).ids] + (
            [meta["end_id"]] if meta["end_id"] is not None else []
        )
        head = meta["head_tokens"]
        docs.append(d if len(d) <= meta["max_len"] else d[:head] + d[len(d) - (meta["max_len"] - head) :])
    assert max(map(len, docs)) == meta["max_len"] and min(map(len, docs)) < 20
    ids = np.full((len(docs), max(map(len, docs))), meta["pad_id"], dtype=np.int64)
    for i, d in enumerate(docs):
        ids[i, : len(d)] = d
    session = ort.InferenceSession(files["onnx"])
    got = np.concatenate([session.run(["output"], {"input_ids": ids[i : i + 4]})[0] for i in range(0, len(ids), 4)])
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n")
    pred = ulmfit("predict", clf, tmp_path / "texts.txt", "--format", "jsonl")
    assert pred.returncode == 0, pred.stderr
    want = np.array([[json.loads(x)["probs"][c] for c in meta["classes"]] for x in pred.stdout.splitlines()])
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)  # predict rounds to 6 decimals


@pytest.mark.parametrize("family", ["llama", "bert"])
def test_engine_onnx_runs_the_whole_classifier(work, encoders, ulmfit, tmp_path, family, monkeypatch):
    """--engine onnx: the classifier whole in onnxruntime, predict's probabilities to 1e-5, also when a batch goes
    to the session a few rows at a time, each part cut to its own longest row (as long documents do); with
    --quantize int8 its MatMuls quantized (outputs still probabilities, close to fp32's)."""
    from ulmfit_cli.inference import onnx_engine

    source = (work if family in FAMILIES else encoders) / family
    train, lm, clf = tmp_path / "train.csv", tmp_path / "lm", tmp_path / "clf"
    _write_train(train)
    assert ulmfit("import-hf", source, "--out", lm, "-q").returncode == 0
    r = ulmfit("finetune-clf", lm, train, "--out", clf, "--preset", "tiny", "--epochs", "2", "--max-len", "40", "-q")
    assert r.returncode == 0, r.stderr

    def probs(*flags):
        r = ulmfit("predict", clf, train, "--format", "jsonl", *flags)
        assert r.returncode == 0, r.stderr
        return np.array([list(json.loads(x)["probs"].values()) for x in r.stdout.splitlines()])

    torch_p, onnx_p, int8_p = probs(), probs("--engine", "onnx"), probs("--engine", "onnx", "--quantize", "int8")
    np.testing.assert_allclose(onnx_p, torch_p, atol=1e-5, rtol=0)
    calls, rows_per_call = [], onnx_engine.rows_per_call
    monkeypatch.setattr(onnx_engine, "ATTENTION_CELLS", 3 * 12 * 12)  # 3 rows a call at 12 tokens, 1 at 40
    monkeypatch.setattr(onnx_engine, "rows_per_call", lambda t: calls.append(rows_per_call(t)) or calls[-1])
    np.testing.assert_allclose(probs("--engine", "onnx"), torch_p, atol=1e-5, rtol=0)
    assert calls and max(calls) <= 3 < len(torch_p)  # every batch went in parts
    assert np.allclose(int8_p.sum(1), 1, atol=1e-4) and np.abs(int8_p - torch_p).max() < 0.2
    assert not np.array_equal(int8_p, onnx_p)  # the int8 graph is another graph


@pytest.mark.parametrize("max_length", [8, 128])
def test_a_tokenizer_that_pads_and_cuts_is_read_whole(encoders, ulmfit, tmp_path, max_length):
    """sentence-transformers' tokenizer.json pads every text to a fixed length and cuts it there: the run's
    tokenizer does neither (the stages pad with a mask and cut by --max-len themselves)."""
    from transformers import AutoTokenizer

    from ulmfit_cli.data.tokenizer import encode_docs, load_tokenizer

    folder = tmp_path / "st"
    shutil.copytree(encoders / "bert-nohead", folder)
    spec = json.loads((folder / "tokenizer.json").read_text())
    spec["padding"] = {"strategy": {"Fixed": max_length}, "direction": "Right", "pad_to_multiple_of": None,
                       "pad_id": 1, "pad_type_id": 0, "pad_token": hf_tiny.PAD}  # fmt: skip
    spec["truncation"] = {"direction": "Right", "max_length": max_length, "strategy": "LongestFirst", "stride": 0}
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    assert ulmfit("import-hf", folder, "--out", tmp_path / "lm", "-q").returncode == 0
    tok = load_tokenizer(tmp_path / "lm" / "tokenizer.json")
    plain = AutoTokenizer.from_pretrained(str(encoders / "bert-nohead"))
    texts = [*hf_tiny.CORPUS[:5], " ".join(hf_tiny.CORPUS)]
    for text, doc in zip(texts, encode_docs(tok, texts)):
        assert doc.tolist() == plain(text)["input_ids"]  # [CLS] ids [SEP], no pads, nothing cut


@pytest.mark.parametrize("task", ["multi-label", "regression"])
def test_multi_label_and_regression_on_a_checkpoint(work, ulmfit, tmp_path, task):
    lm, clf, train = tmp_path / "lm", tmp_path / "clf", tmp_path / "train.csv"
    with open(train, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i, t in enumerate(hf_tiny.CORPUS * 4):
            if task == "multi-label":
                on = [x for x, yes in (("the", " the " in f" {t.lower()} "), ("q", "?" in t)) if yes]
                w.writerow((t, " ".join(on or ["other"])))
            else:
                w.writerow((t, str(len(t) / 10 + i % 3)))
    flag = ["--label-delim", " "] if task == "multi-label" else ["--regression"]
    assert ulmfit("import-hf", work / "gpt2", "--out", lm, "-q").returncode == 0
    r = ulmfit("finetune-clf", lm, train, "--out", clf, "--preset", "tiny", "--epochs", "2", *flag, "-q")
    assert r.returncode == 0, r.stderr
    assert json.loads((clf / "manifest.json").read_text())["task"] == task
    r = ulmfit("evaluate", clf, train, "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["task"] == task and (0 <= rep["micro_f1"] <= 1 if task == "multi-label" else rep["mae"] >= 0)


@pytest.mark.parametrize("family", ["llama", "bert"])
@pytest.mark.parametrize("keep", [0.0, 0.01, 0.5, 0.99])
def test_a_damaged_safetensors_file_is_one_line(ulmfit, tmp_path, family, keep):
    """A download cut short (any share of the weights file kept, the empty file included) is a one-line input
    error naming the model, never a SafetensorError traceback; nothing is written."""
    folder = tmp_path / family
    if family == "bert":
        hf_tiny.write_encoder(folder, family, seed=4)
    else:
        hf_tiny.write_model(folder, family)
    (weights,) = folder.glob("*.safetensors")
    data = weights.read_bytes()
    weights.write_bytes(data[: int(len(data) * keep)])
    one_line_error(ulmfit("import-hf", folder, "--out", tmp_path / "lm"), 2, "could not load its weights")
    assert not (tmp_path / "lm").exists()
