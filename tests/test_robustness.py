"""Never crash on a user's data (issue 11): every training-set size and batch size, every table a reader may be
given, a write that fails at any place, an --out that would replace the parent, and a line of any length.

Property tests (Hypothesis) test classes of input; training runs in-process on the tiny preset, one thread.
"""

import csv
import errno
import io
import json
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import SAMPLE, one_line_error
from ulmfit_cli.cli.report import Reporter
from ulmfit_cli.config import resolve
from ulmfit_cli.data.batches import classifier_batches, classifier_steps, min_classifier_docs
from ulmfit_cli.data.readers import PIECE_CHARS, Source, cut_long, open_corpus, read_table
from ulmfit_cli.errors import ConfigError, InputError, RunFolderError, WriteError
from ulmfit_cli.runfolder import artifacts as A

FIXTURES = settings(deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(autouse=True)
def _offline(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path_factory.getbasetemp() / "hf-robust"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("ULMFIT_CACHE", str(tmp_path_factory.getbasetemp() / "ulmfit-robust"))
    import torch

    torch.set_num_threads(1)


# ---- sizes ------------------------------------------------------------------------------------------------


@FIXTURES
@given(n=st.integers(1, 400), bs=st.integers(2, 70), ranks=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_training_batches_are_never_of_one_and_cover_every_document(n, bs, ranks, seed):
    lens = np.random.default_rng(seed).integers(1, 20, n)
    docs = [np.arange(k) for k in lens]
    per_rank = [
        [g for g, _, _ in classifier_batches(docs, None, bs, 8, 1, np.random.default_rng(seed), rank=r, ranks=ranks)]
        for r in range(ranks)
    ]
    steps = classifier_steps(n, bs, ranks)
    assert all(len(b) == steps for b in per_rank)  # every process takes the same number of steps
    assert (steps == 0) == (n < min_classifier_docs(bs, ranks))  # the smallest size that trains is the one we name
    groups = [g for b in per_rank for g in b]
    assert all(2 <= len(g) <= bs + 1 for g in groups)
    if ranks == 1 and n >= 2:  # nothing is left out of a single-process epoch
        assert sorted(np.concatenate(groups).tolist()) == list(range(n))


def test_batch_size_one_is_refused_for_the_classifier_only():
    with pytest.raises(ConfigError, match="--bs` must be >= 2 for finetune-clf"):
        resolve("finetune-clf", "tiny", {"bs": 1})
    assert resolve("pretrain", "tiny", {"bs": 1}).bs == 1  # a language model has no batch-norm


def _labels(task, n, rng):
    if task == "single":
        return [["what", "who"][i % 2] for i in range(n)]
    if task == "multi":
        return [" ".join(rng.sample(["a", "b", "c"], 1 + i % 2)) for i in range(n)]
    return [str(float(i % 7)) for i in range(n)]


def _write_csv(path, texts, labels):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(zip(texts, labels))
    return Source(path=str(path))


@pytest.fixture(scope="module")
def questions():
    with open(SAMPLE / "trec_train.csv", newline="", encoding="utf-8") as f:
        return [r["text"] for r in csv.DictReader(f)]


def _clf(parent, train, out, task, valid=None, **flags):
    from ulmfit_cli.training.stages import finetune_clf

    given_flags = {
        "epochs": 1,
        "regression": task == "regression" or None,
        "label_delim": " " if task == "multi" else None,
    }
    cfg = resolve("finetune-clf", "tiny", {**given_flags, **flags}, parent.config)
    return finetune_clf(cfg, parent, train, out, valid=valid, reporter=Reporter(quiet=True))


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    n=st.integers(1, 30),
    bs=st.integers(2, 9),
    task=st.sampled_from(["single", "multi", "regression"]),
    seed=st.integers(0, 1000),
)
def test_every_training_set_size_trains_and_predicts(pipeline, questions, tmp_path_factory, n, bs, task, seed):
    from ulmfit_cli.inference.predictor import Predictor

    rng = random.Random(seed)
    root = tmp_path_factory.mktemp("sizes")
    texts = rng.sample(questions, n + 2)
    labels = _labels(task, n + 2, rng)
    train = _write_csv(root / "train.csv", texts[:n], labels[:n])
    valid = _write_csv(root / "valid.csv", texts[n:], labels[:2])  # classes seen in training
    parent = A.open_run(pipeline["ft"], ("finetune-lm",), "finetune-clf")
    if n < 2:
        with pytest.raises(InputError, match=f"at least {min_classifier_docs(bs)} are needed"):
            _clf(parent, train, root / "clf", task, valid, bs=bs)
        assert not (root / "clf").exists() and not (root / ".clf.partial").exists()  # refused before any work
        return
    assume(task != "single" or len(set(labels[:n])) > 1)
    summary = _clf(parent, train, root / "clf", task, valid, bs=bs, seed=seed)
    assert summary["epochs"] == 1
    run = A.open_run(root / "clf", ("finetune-clf",), "predict")
    out = Predictor([run])(["what is it ?", "who was he ?", "x"])
    assert len(out) == 3 and np.isfinite(out).all()


def test_too_small_for_the_processes_names_the_smallest_size(pipeline, tmp_path, questions, monkeypatch):
    from ulmfit_cli import dist

    monkeypatch.setattr(dist, "world", lambda: dist.World(rank=0, size=3, local_rank=0))
    parent = A.open_run(pipeline["ft"], ("finetune-lm",), "finetune-clf")
    train = _write_csv(tmp_path / "t.csv", questions[:9], ["a", "b"] * 4 + ["a"])
    with pytest.raises(InputError, match=r"9 training document\(s\).*--bs 4 on 3 processes: at least 10"):
        _clf(
            parent, train, tmp_path / "clf", "single", _write_csv(tmp_path / "v.csv", questions[9:11], ["a", "b"]), bs=4
        )


@FIXTURES
@given(bs=st.integers(1, 20), bptt=st.integers(1, 40), extra=st.integers(-3, 3))
def test_a_language_model_corpus_too_small_names_the_smallest_size(bs, bptt, extra):
    from ulmfit_cli.training.stage_parts import lm_streams

    cfg = resolve("pretrain", "tiny", {"bs": bs, "bptt": bptt})
    need = bs + bptt + 1
    ids = np.arange(max(need + extra, 0)) % 50
    if need + extra < need:
        with pytest.raises(InputError, match=f"at least {need} are needed"):
            lm_streams(cfg, ids, ids[:0])
        return
    train, _ = lm_streams(cfg, ids, ids[:0])
    assert len(train) >= 1 and all(x.shape[0] == bs for x, _ in train.batches(0))


# ---- readers ----------------------------------------------------------------------------------------------

SPECIAL = list(",;\t\"'\n\r\\ {}[]:#") + ["\ufeff", "\u00e9", "\u4e2d", "\U0001f600", "NA", "null", "\u2581"]
TEXT_CHARS = st.lists(
    st.one_of(st.sampled_from(SPECIAL), st.characters(blacklist_categories=("Cs", "Cc"))), max_size=30
).map("".join)
TEXTS = st.one_of(TEXT_CHARS, st.sampled_from(["NA", "null", "nan", "None", "01", "1.50", " ", "#x", '"q"']))
LABELS = st.one_of(
    st.sampled_from(["pos", "neg", "LOC:city", "a b", "é", "NA", "null", "01", "1.50", "-0"]),
    st.integers(-5, 500).map(str),
    st.just(""),
)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    rows=st.lists(st.tuples(TEXTS | st.none(), LABELS | st.none()), min_size=1, max_size=8),
    fmt=st.sampled_from(["csv", "tsv", "jsonl"]),
    bom=st.booleans(),
    crlf=st.booleans(),
)
def test_any_table_reads_correctly_or_fails_with_one_line(tmp_path_factory, rows, fmt, bom, crlf):
    path = tmp_path_factory.mktemp("tables") / f"t.{fmt}"
    if fmt == "jsonl":
        body = "".join(json.dumps({"text": t, "label": y}) + ("\r\n" if crlf else "\n") for t, y in rows)
    else:
        buf, sep, end = io.StringIO(), "," if fmt == "csv" else "\t", "\r\n" if crlf else "\n"
        for row in [["text", "label"], *(["" if t is None else t, "" if y is None else y] for t, y in rows)]:
            # a bare CR or LF is a line end in CSV unless quoted; the csv module quotes only its own line end's
            quoting = csv.QUOTE_ALL if any(c in cell for cell in row for c in "\r\n") else csv.QUOTE_MINIMAL
            csv.writer(buf, delimiter=sep, lineterminator=end, quoting=quoting).writerow(row)
        body = buf.getvalue()
    path.write_bytes(("\ufeff" if bom else "").encode() + body.encode("utf-8"))
    kept = [(t, y) for t, y in rows if t is not None and t.strip()]
    try:
        table = read_table(Source(path=str(path)))
    except InputError as e:
        assert "\n" not in str(e) and str(path) in str(e)
        # the only refusals a careful user would expect: no text, or a row without its label
        assert not kept or any(y is None or not y.strip() for _, y in kept), str(e)
        return
    assert table.texts == [t for t, _ in kept]
    assert [str(y) for y in table.labels] == [y for _, y in kept]


# ---- long lines -------------------------------------------------------------------------------------------


@FIXTURES
@given(st.text(st.sampled_from("ab \n"), max_size=60), st.integers(4, 12))
def test_cut_long_keeps_every_character_in_bounded_pieces(text, limit):
    pieces = cut_long(text, limit)
    assert "".join(pieces) == text and all(len(p) <= limit for p in pieces)
    assert len(pieces) == 1 or all(len(p) >= 1 for p in pieces)


def test_a_huge_line_streams_in_pieces_with_the_ids_of_the_whole(tmp_path):
    from ulmfit_cli.data.tokenizer import BOS_ID, StreamEncoder, train_tokenizer

    words = (SAMPLE / "books.txt").read_text(encoding="utf-8").split()
    line = " ".join(words * (3 * PIECE_CHARS // len(" ".join(words)) + 1))
    (tmp_path / "one.txt").write_text(line + "\nshort line\n", encoding="utf-8")
    corpus = open_corpus(Source(path=str(tmp_path / "one.txt")))
    texts = [t for b in corpus.batches() for t in b]
    assert len(texts) > 3 and max(map(len, texts)) <= PIECE_CHARS
    assert "".join(texts[:-1]) == line and texts[-1] == "short line"
    tok = train_tokenizer(words[:5000], "bpe", 300)
    pieces = StreamEncoder(tok)(texts[:-1])
    whole = StreamEncoder(tok)([line])
    assert (pieces[pieces != BOS_ID] == whole[whole != BOS_ID]).all()  # the same ids, a <bos> between pieces
    # a classifier keeps a document's first max_len tokens: it encodes only the head of a huge one, same ids
    from ulmfit_cli.data.tokenizer import encode_docs
    from ulmfit_cli.inference.predictor import docs_of

    cfg = resolve("finetune-clf", "tiny", {"max_len": 3000})
    assert len(line) > 100 * cfg.max_len
    assert (docs_of(tok, [line], cfg)[0] == encode_docs(tok, [line])[0][: cfg.max_len]).all()


# ---- writes that fail -------------------------------------------------------------------------------------

ENOSPC = OSError(errno.ENOSPC, "No space left on device")


def _fail_open(module, match, monkeypatch):
    """Make `module`'s open() fail with ENOSPC when it writes a file whose name contains `match`."""

    def fake(file, mode="r", *args, **kwargs):
        if any(m in mode for m in "wax") and match in str(file):
            raise OSError(errno.ENOSPC, "No space left on device", str(file))
        return open(file, mode, *args, **kwargs)

    monkeypatch.setattr(module, "open", fake, raising=False)


def _fail_safetensors(fn, match, monkeypatch, after=0):
    import safetensors.torch
    from safetensors import SafetensorError

    real, calls = getattr(safetensors.torch, fn), []

    def fake(obj, path, *args, **kwargs):
        if match in str(path):
            calls.append(path)
            if len(calls) > after:
                raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real(obj, path, *args, **kwargs)

    monkeypatch.setattr(safetensors.torch, fn, fake)


def _inject(site, monkeypatch):
    from ulmfit_cli.data import tokencache

    if site == "config":
        _fail_open(A, "config.json", monkeypatch)
    elif site == "manifest":
        _fail_open(A, "manifest.json", monkeypatch)
    elif site == "weights":
        _fail_safetensors("save_model", "partial/model.safetensors", monkeypatch)
    elif site == "checkpoint":  # the second checkpoint fails (2 files each: save_model calls save_file)
        _fail_safetensors("save_file", "ckpt.new", monkeypatch, after=3)
    elif site == "tokenizer":
        monkeypatch.setattr(A.Path, "write_text", lambda *a, **k: (_ for _ in ()).throw(ENOSPC))
        monkeypatch.setattr(A.shutil, "copyfile", lambda *a, **k: (_ for _ in ()).throw(ENOSPC))
    elif site == "token cache":
        _fail_open(tokencache, ".ids.", monkeypatch)
    elif site == "commit":
        real = A.os.replace
        monkeypatch.setattr(
            A.os,
            "replace",
            lambda a, b: (
                (_ for _ in ()).throw(OSError(errno.EROFS, "Read-only file system", str(b)))
                if str(a).endswith(".partial")
                else real(a, b)
            ),
        )


@pytest.mark.parametrize("site", ["config", "tokenizer", "token cache", "checkpoint", "weights", "manifest", "commit"])
def test_a_failed_write_is_one_line_and_leaves_nothing_half_written(site, tmp_path, monkeypatch):
    from ulmfit_cli.training.stages import train_lm_stage

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join((SAMPLE / "books.txt").read_text(encoding="utf-8").splitlines(True)[:150]))
    out = tmp_path / "lm"
    cfg = resolve("pretrain", "tiny", {"epochs": 1, "bs": 4, "vocab_size": 100})

    def run(resume=False):
        return train_lm_stage(
            "pretrain", cfg, [Source(path=str(corpus))], out, cache_dir=tmp_path / "cache", checkpoint_every=10,
            resume=resume, reporter=Reporter(quiet=True),
        )  # fmt: skip

    with monkeypatch.context() as m:
        _inject(site, m)
        with pytest.raises(WriteError) as e:
            run()
    line = str(e.value)
    assert "\n" not in line and ("No space left on device" in line or "Read-only" in line) and "free space" in line
    assert e.value.exit_code == 1
    assert not out.exists()  # never published half-written
    partial = tmp_path / ".lm.partial"
    assert not list((tmp_path / "cache" / "tokens").glob(".*tmp")) if (tmp_path / "cache" / "tokens").exists() else True
    if site in ("checkpoint", "weights", "manifest", "commit"):  # after a checkpoint: it must be kept
        assert partial.exists()
    if not partial.exists():
        assert "rerun it" in line
        return
    assert "--resume" in line and A.find_checkpoint(partial) == partial / "ckpt"  # whole, and the one resumed
    assert not (partial / "ckpt.new").exists()
    run(resume=True)
    assert json.loads((out / "manifest.json").read_text())["complete"]


# ---- --out and the parent ---------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["same", "inside", "around", "symlink", "sibling"])
def test_out_may_not_be_hold_or_lie_in_the_parent(tmp_path, where):
    parent = tmp_path / "runs" / "ft"
    parent.mkdir(parents=True)
    (tmp_path / "link").symlink_to(parent)
    out = {"same": parent, "inside": parent / "sub", "around": tmp_path / "runs", "symlink": tmp_path / "link"}
    if where == "sibling":
        A.check_apart(tmp_path / "runs" / "ft2", parent)  # a folder beside it is fine
        return
    with pytest.raises(RunFolderError, match="the parent run"):
        A.check_apart(out[where], parent)


@pytest.mark.parametrize("stage", ["finetune-lm", "finetune-clf"])
def test_out_as_the_parent_is_refused_before_any_work_even_with_overwrite(ulmfit, pipeline, tmp_path, stage):
    import shutil

    parent = tmp_path / "ft"
    shutil.copytree(pipeline["ft"], parent)
    before = {p.name: p.stat().st_mtime_ns for p in parent.iterdir()}
    r = ulmfit(stage, parent, SAMPLE / "trec_train.csv", "--out", parent, "--overwrite", "--preset", "tiny")
    one_line_error(r, 2, "is the parent run", "choose another --out")
    assert {p.name: p.stat().st_mtime_ns for p in parent.iterdir()} == before  # untouched
    assert not (tmp_path / ".ft.partial").exists()


# ---- a full disk, through the real CLI --------------------------------------------------------------------


def test_a_full_disk_is_one_line_exit_1_and_no_run_folder(cli_env, pipeline, tmp_path):
    """A 256 KB tmpfs (a mount namespace of our own, where the machine allows it), else a file-size limit: the
    first checkpoint cannot be written."""
    import os
    import resource
    import shutil
    import subprocess
    import sys

    disk = tmp_path / "disk"
    disk.mkdir()
    rows = (SAMPLE / "trec_train.csv").read_text(encoding="utf-8").splitlines(True)[:201]
    (tmp_path / "train.csv").write_text("".join(rows), encoding="utf-8")
    cmd = [sys.executable, "-m", "ulmfit_cli", "finetune-clf", str(pipeline["ft"]), str(tmp_path / "train.csv"),
           "--out", str(disk / "clf"), "--preset", "tiny", "--epochs", "1", "--quiet"]  # fmt: skip
    unshare = shutil.which("unshare")
    tmpfs = unshare and subprocess.run([unshare, "-rm", "true"], capture_output=True).returncode == 0
    if tmpfs:
        script = f'mount -t tmpfs -o size=256k tmpfs "{disk}" || exit 99; "$@"; rc=$?; ls -A "{disk}"; exit $rc'
        cmd = [unshare, "-rm", "sh", "-c", script, "sh", *cmd]
        limit = None
    else:
        limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))  # noqa: E731
    r = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, preexec_fn=limit, timeout=600)
    assert r.returncode == 1, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.startswith("ulmfit: error:")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    reason = "No space left on device" if tmpfs else "File too large"
    assert reason in lines[0] and "free space" in lines[0] and str(disk) in lines[0], lines[0]
    left = r.stdout.split() if tmpfs else os.listdir(disk)  # the tmpfs goes with its namespace: listed in there
    assert left == [], left  # no run folder, no partial folder (no checkpoint was whole)
