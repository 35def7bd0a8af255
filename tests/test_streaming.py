"""The streaming path of the LM stages: token ids on disk, their cache, and data-parallel training.

Ids in the memory-mapped cache must be exactly the in-memory tokenization; a second run reuses them and says so;
a damaged entry is detected and rebuilt, never trained on. Two CPU processes under torchrun (gloo) write one
complete run folder that loads.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SAMPLE, _env, log_reporter
from ulmfit_cli.config import from_dict
from ulmfit_cli.data.batches import LMStream
from ulmfit_cli.data.readers import Source, open_corpus, read_texts
from ulmfit_cli.data.tokencache import token_ids
from ulmfit_cli.data.tokenizer import encode_stream, load_tokenizer, train_tokenizer
from ulmfit_cli.models import backbone
from ulmfit_cli.runfolder.artifacts import load_weights, open_run
from ulmfit_cli.training.loop import lm_evaluate


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(read_texts(Source(path=str(SAMPLE / "books.txt"))).texts[:400], "bpe", 300)


def test_ids_on_disk_equal_in_memory_tokenization(tmp_path, tok):
    src = Source(path=str(SAMPLE / "books.txt"))
    ids = token_ids([open_corpus(src)], tok, "t", 0, tmp_path, log_reporter())
    assert isinstance(ids, np.memmap) and ids.dtype == np.uint16
    assert np.array_equal(ids, encode_stream(tok, read_texts(src).texts))
    capped = token_ids([open_corpus(src)], tok, "t", 777, tmp_path, log_reporter())
    assert np.array_equal(capped, encode_stream(tok, read_texts(src).texts, max_tokens=777))


def test_tables_stream_like_text_files(tmp_path, tok):
    src = Source(path=str(SAMPLE / "trec_train.csv"))
    ids = token_ids([open_corpus(src)], tok, "t", 0, tmp_path, log_reporter())
    assert np.array_equal(ids, encode_stream(tok, read_texts(src).texts))


def test_cache_is_reused_and_a_damaged_entry_rebuilt(tmp_path, tok):
    src = Source(path=str(SAMPLE / "books.txt"))
    first_log, again_log = log_reporter(), log_reporter()
    first = np.array(token_ids([open_corpus(src)], tok, "t", 0, tmp_path, first_log))
    (entry,) = (tmp_path / "tokens").glob("*.ids")
    mtime = entry.stat().st_mtime_ns
    again = token_ids([open_corpus(src)], tok, "t", 0, tmp_path, again_log)
    assert any("reusing" in line for line in again_log.lines) and not any("reusing" in x for x in first_log.lines)
    assert entry.stat().st_mtime_ns == mtime and np.array_equal(again, first)
    # another tokenizer is another entry, never a hit
    token_ids([open_corpus(src)], tok, "other", 0, tmp_path, log_reporter())
    assert len(list((tmp_path / "tokens").glob("*.ids"))) == 2

    for damage in ("flip", "truncate"):
        data = bytearray(entry.read_bytes())
        if damage == "flip":
            data[1000] ^= 0xFF
        else:
            data = data[:-2]
        entry.write_bytes(bytes(data))
        log = log_reporter()
        rebuilt = token_ids([open_corpus(src)], tok, "t", 0, tmp_path, log)
        assert any("damaged" in line for line in log.lines), log.lines
        assert np.array_equal(rebuilt, first)


def test_memmapped_stream_batches_match_in_memory_and_read_backwards(tmp_path):
    ids = np.arange(2000, dtype=np.uint16)
    path = tmp_path / "ids"
    ids.tofile(path)
    mm = np.memmap(path, dtype=np.uint16, mode="r")
    for a, b in zip(LMStream(ids, 4, 10).batches(3), LMStream(mm, 4, 10).batches(3)):
        assert all(np.array_equal(u.numpy(), v.numpy()) for u, v in zip(a, b))
    x, y = next(LMStream(mm, 4, 10, backwards=True).batches(0))
    assert x[0, 0] == 1999 and (np.diff(x.numpy(), axis=1) == -1).all() and (y == x - 1).all()
    # two data-parallel ranks read disjoint rows that together are the rows of one process with 2 * bs
    one = next(LMStream(ids, 8, 10, ranks=1).batches(0))[0].numpy()
    r0 = next(LMStream(ids, 4, 10, rank=0, ranks=2).batches(0))[0].numpy()
    r1 = next(LMStream(ids, 4, 10, rank=1, ranks=2).batches(0))[0].numpy()
    assert np.array_equal(np.concatenate([r0, r1]), one)


def test_pretrain_says_it_reuses_the_cache(ulmfit, tmp_path):
    common = [SAMPLE / "books.txt", "--preset", "tiny", "--epochs", "0", "--cache-dir", tmp_path / "c"]
    first = ulmfit("pretrain", *common, "--out", tmp_path / "a")
    second = ulmfit("pretrain", *common, "--out", tmp_path / "b")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "reusing" not in first.stderr and "reusing" in second.stderr
    ma = json.loads((tmp_path / "a" / "manifest.json").read_text())
    mb = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert ma["tokens"] == mb["tokens"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--device", "cuda"], "no CUDA GPU"),
        (["--device", "tpu"], "--device"),
        (["--precision", "bf16"], "on cpu use --precision fp32"),
    ],
)
def test_missing_device_or_precision_is_a_clear_error(ulmfit, tmp_path, flags, message):
    r = ulmfit("pretrain", SAMPLE / "books.txt", "--preset", "tiny", "--out", tmp_path / "x", "--device", "cpu", *flags)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x*"))


def test_backwards_is_inherited_and_a_contradiction_refused(ulmfit, pipeline, tmp_path):
    r = ulmfit("finetune-clf", pipeline["ft"], SAMPLE / "trec_train.csv", "--preset", "tiny", "--backwards")
    assert r.returncode == 2 and "--backwards" in r.stderr


def test_two_cpu_processes_under_torchrun_write_one_complete_run(ulmfit, tmp_path, cache_dir):
    """2 processes x bs 8 must train the same weights as 1 process x bs 16: each takes half of the rows and the
    gradients are averaged (dropout off, so nothing else differs)."""
    torchrun = Path(sys.executable).parent / "torchrun"
    assert torchrun.exists(), "torchrun is not installed next to the interpreter"
    out = tmp_path / "ddp"
    env = {**_env(cache_dir), "ULMFIT_CACHE": str(tmp_path / "c")}
    same = ["--preset", "tiny", "--device", "cpu", "--drop-mult", "0", "--checkpoint-every", "10"]
    cmd = [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "ulmfit_cli", "pretrain"]
    r = subprocess.run(
        [*cmd, str(SAMPLE / "books.txt"), *same, "--bs", "8", "--out", str(out), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    summaries = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1  # rank 0 reports; rank 1 prints and writes nothing
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and np.isfinite(manifest["final"]["valid_loss"])
    assert {"config.json", "manifest.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    assert not list(tmp_path.glob(".ddp*"))

    one = ulmfit("pretrain", SAMPLE / "books.txt", *same, "--bs", "16", "--out", tmp_path / "one", "--quiet")
    assert one.returncode == 0, one.stderr
    from safetensors.torch import load_file

    a, b = load_file(str(out / "model.safetensors")), load_file(str(tmp_path / "one" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert np.allclose(a[k].numpy(), b[k].numpy(), atol=2e-5), k

    ft = ulmfit("finetune-lm", out, SAMPLE / "trec_train.csv", "--preset", "tiny", "--out", tmp_path / "ft", "--quiet")
    assert ft.returncode == 0, ft.stderr  # the folder loads


def _direction_losses(folder) -> dict:
    """Validation loss of an LM run on TREC's test questions read forwards and read backwards."""
    run = open_run(folder, ("finetune-lm",), "test")
    cfg = from_dict(run.config)
    tok = load_tokenizer(run.file("tokenizer"))
    model = backbone(cfg.backbone).build_lm(cfg, tok.get_vocab_size())
    load_weights(model, run.file("weights"))
    model.eval()
    ids = encode_stream(tok, (SAMPLE / "trec_test.csv").read_text().splitlines()[1:])
    losses = {}
    for name, backwards in (("forwards", False), ("backwards", True)):
        model.reset()
        with torch.no_grad():
            losses[name] = lm_evaluate(model, LMStream(ids, 8, cfg.bptt, backwards=backwards))["valid_loss"]
    return losses


def test_a_backward_pipeline_reads_reversed_text_and_ensembles_with_the_forward_one(cli, ulmfit, pipeline, tmp_path):
    """--backwards on pretrain is inherited by both later stages; its LM learns reversed text (its own
    reversed validation stream is easier for it than the forward one), and predict averages it with the forward
    classifier of the session pipeline (the paper's bidirectional ensemble)."""
    runs = {k: tmp_path / k for k in ("lm", "ft", "clf")}
    steps = [
        ("pretrain", SAMPLE / "books.txt", "--backwards"),
        ("finetune-lm", runs["lm"], SAMPLE / "trec_train.csv"),
        ("finetune-clf", runs["ft"], SAMPLE / "trec_train.csv", "--epochs", "2"),  # a classifier to ensemble
    ]
    for (cmd, *args), out in zip(steps, runs.values()):
        r = ulmfit(cmd, *args, "--out", out, "--preset", "tiny", "--quiet")
        assert r.returncode == 0, r.stderr
        assert json.loads((out / "config.json").read_text())["backwards"] is True
    assert json.loads((pipeline["clf"] / "config.json").read_text())["backwards"] is False

    backward, forward = _direction_losses(runs["ft"]), _direction_losses(pipeline["ft"])
    assert backward["backwards"] < backward["forwards"] - 0.05, backward  # it learned to read backwards
    assert forward["forwards"] < forward["backwards"] - 0.05, forward  # and the forward model the other way

    texts = "What is the capital of France ?\nWho wrote Hamlet ?\n"
    both = cli("predict", pipeline["clf"], "-", "--ensemble", runs["clf"], stdin=texts)
    assert both.returncode == 0, both.stderr
    rows = [json.loads(line) for line in both.stdout.splitlines()]
    assert len(rows) == 2 and all(abs(sum(r["probs"].values()) - 1) < 1e-4 for r in rows)
