"""import-fastai: a model trained by fastai itself becomes a run folder with fastai's logits and fastai's ids;
finetune-lm moves its embeddings to the target vocabulary as fastai's match_embeds; unsafe files are refused.

The fastai model is a real (tiny) fastai language_model_learner trained for one epoch on sample_data, saved in
the layout of fastai's wt103-fwd.tgz: torch.save(model.state_dict()) and pickle.dump(dls.vocab).
"""

import io
import json
import os
import pickle
import tarfile
import warnings

import pytest

from conftest import SAMPLE

N_LINES = 400


@pytest.fixture(scope="module")
def fastai_lm(tmp_path_factory):
    warnings.filterwarnings("ignore", category=FutureWarning)
    import pandas as pd
    import torch
    from fastai.text.all import (
        AWD_LSTM,
        ColReader,
        DataBlock,
        RandomSplitter,
        TextBlock,
        awd_lstm_lm_config,
        language_model_learner,
    )

    torch.set_num_threads(1)
    torch.manual_seed(0)
    lines = [s for s in (SAMPLE / "books.txt").read_text(encoding="utf-8").splitlines() if s.strip()][:N_LINES]
    df = pd.DataFrame({"text": lines})
    block = TextBlock.from_df("text", is_lm=True, seq_len=16, n_workers=0)  # fastai's default tokenizer and rules
    dblock = DataBlock(blocks=block, get_x=ColReader("text"), splitter=RandomSplitter(0.1, seed=0))
    dls = dblock.dataloaders(df, bs=8, seq_len=16, num_workers=0, device="cpu")
    config = dict(awd_lstm_lm_config, emb_sz=16, n_hid=32, n_layers=2)
    learn = language_model_learner(dls, AWD_LSTM, config=config, pretrained=False)
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-2)  # trained, so the decoder bias is not all zeros
    d = tmp_path_factory.mktemp("fastai")
    torch.save(learn.model.state_dict(), d / "lstm_fwd.pth")
    with open(d / "itos.pkl", "wb") as f:
        pickle.dump(dls.vocab, f)
    return {"learn": learn, "dls": dls, "lines": lines, "weights": d / "lstm_fwd.pth", "vocab": d / "itos.pkl"}


@pytest.fixture(scope="module")
def imported(fastai_lm, ulmfit, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "wt"
    r = ulmfit("import-fastai", fastai_lm["weights"], fastai_lm["vocab"], "--out", out, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["stage"] == "pretrain"
    return out


def _our_lm(run_dir):
    from ulmfit_cli.config import from_dict
    from ulmfit_cli.data.tokenizer import load_tokenizer
    from ulmfit_cli.models.awd_lstm import build_lm
    from ulmfit_cli.runfolder.artifacts import LM_STAGES, load_weights, open_run

    run = open_run(run_dir, LM_STAGES, "test")
    tok = load_tokenizer(run.file("tokenizer"))
    model = build_lm(from_dict(run.config), tok.get_vocab_size())
    load_weights(model, run.file("weights"))
    return run, tok, model


def test_imported_run_records_fastais_sizes(imported, fastai_lm):
    m = json.loads((imported / "manifest.json").read_text())
    assert m["stage"] == "pretrain" and m["complete"] and m["imported"]["from"] == "fastai"
    assert (m["config"]["emb_sz"], m["config"]["n_hid"], m["config"]["n_layers"]) == (16, 32, 2)
    assert m["config"]["tokenizer"] == "fastai-words" and m["vocab_size"] == len(fastai_lm["dls"].vocab)
    spec = json.loads((imported / "tokenizer.json").read_text())
    assert spec["kind"] == "fastai-words" and spec["itos"] == list(fastai_lm["dls"].vocab)


def test_imported_model_gives_fastais_logits(imported, fastai_lm):
    import torch

    _, tok, ours = _our_lm(imported)
    theirs = fastai_lm["learn"].model
    assert tok.get_vocab_size() == len(fastai_lm["dls"].vocab)
    x = torch.randint(0, tok.get_vocab_size(), (3, 2, 20))
    with torch.no_grad():
        for m in (ours, theirs):
            m.eval()
            m.reset()
        for batch in x.unbind(1):  # two consecutive batches: the hidden state is carried the same way
            a, b = ours(batch)[0], theirs(batch)[0]
            assert a.shape == (3, 20, tok.get_vocab_size())
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_tokenization_gives_fastais_training_ids(imported, fastai_lm):
    """Our ids of each document equal the ones fastai's TextDataLoaders trained on (xxbos first)."""
    import pandas as pd
    from fastai.text.core import tokenize_df
    from fastai.text.data import Numericalize

    from ulmfit_cli.data.tokenizer import BOS_ID, encode_docs

    _, tok, _ = _our_lm(imported)
    ds = fastai_lm["dls"].train_ds
    rows = list(range(0, len(ds), 7))
    texts = [fastai_lm["lines"][ds.items.index[i]] for i in rows]
    ours = encode_docs(tok, texts)
    assert [d.tolist() for d in ours] == [ds[i][0].tolist() for i in rows]
    assert any(0 in d for d in ours)  # rare words are xxunk, as in fastai

    odd = ["HELLO World!!!! aaaaaa <br /> it's  #1", "", "naïve café — 42 / 7", "Don't STOP me now now now now"]
    toks, _ = tokenize_df(pd.DataFrame({"text": odd}), "text", n_workers=0)
    num = Numericalize(vocab=list(fastai_lm["dls"].vocab))
    assert [d.tolist() for d in encode_docs(tok, odd)] == [num(t).tolist() for t in toks["text"]]
    assert all(d[0] == BOS_ID for d in ours)
    again = pickle.loads(pickle.dumps(tok))  # for worker processes, after its spaCy pipeline was built
    assert [e.ids for e in again.encode_batch_fast(odd)] == [e.ids for e in tok.encode_batch_fast(odd)]


def test_finetune_lm_maps_embeddings_like_fastais_match_embeds(imported, ulmfit, tmp_path):
    """--epochs 0: the saved model is the parent after the vocabulary change, nothing else."""
    import torch

    r = ulmfit("finetune-lm", imported, SAMPLE / "trec_train.csv", "--out", tmp_path / "ft", "--preset", "tiny",
            "--epochs", "0", "--quiet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    _, parent_tok, parent = _our_lm(imported)
    _, tok, ft = _our_lm(tmp_path / "ft")
    assert tok.kind == "fastai-words" and tok.itos[:9] == parent_tok.itos[:9]
    assert tok.itos != parent_tok.itos  # the target corpus's own vocabulary
    old, new = parent.state_dict(), ft.state_dict()
    words = [w for w in tok.itos if w != "xxfake"]  # fastai's padding of the list to a multiple of 8
    known, unseen = [w for w in words if w in parent_tok.o2i], [w for w in words if w not in parent_tok.o2i]
    assert len(known) > 20 and len(unseen) > 20
    for key in ("0.encoder.weight", "1.decoder.weight", "1.decoder.bias", "0.encoder_dp.emb.weight"):
        src = "0.encoder.weight" if key != "1.decoder.bias" else key
        for w in known:
            assert torch.equal(new[key][tok.o2i[w]], old[src][parent_tok.o2i[w]]), (key, w)
        for w in unseen:  # a new word gets the mean row (and the mean bias)
            torch.testing.assert_close(new[key][tok.o2i[w]], old[src].mean(0))
    assert torch.equal(new["0.rnns.1.weight_hh_l0_raw"], old["0.rnns.1.weight_hh_l0_raw"])


def test_imported_model_fine_tunes_and_classifies_end_to_end(imported, cli, ulmfit, tmp_path):
    ft, clf, train = tmp_path / "ft", tmp_path / "clf", tmp_path / "train.csv"
    train.write_text("".join((SAMPLE / "trec_train.csv").read_text(encoding="utf-8").splitlines(True)[:1001]))
    r = ulmfit("finetune-lm", imported, train, "--out", ft, "--preset", "tiny", "--quiet")
    assert r.returncode == 0, r.stderr
    r = ulmfit("finetune-clf", ft, train, "--out", clf, "--preset", "tiny", "--epochs", "2", "--quiet")
    assert r.returncode == 0, r.stderr
    assert (clf / "tokenizer.json").read_bytes() == (ft / "tokenizer.json").read_bytes()
    r = cli("predict", clf, "-", stdin="Who wrote Hamlet ?\nWhat is the capital of France ?\n")
    assert r.returncode == 0, r.stderr
    labels = [json.loads(line)["label"] for line in r.stdout.splitlines()]
    assert len(labels) == 2 and set(labels) <= {"ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"}
    m = json.loads((ft / "manifest.json").read_text())
    assert m["final"]["perplexity"] > 1 and m["parent"]["stage"] == "pretrain"


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _one_line_error(r, *words):
    assert r.returncode == 2, r.stderr
    assert r.stdout == "" and len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("ulmfit: error:")
    assert all(w in r.stderr for w in words), r.stderr


def test_malicious_pickles_are_refused_and_never_run(fastai_lm, ulmfit, tmp_path):
    import torch

    marker = tmp_path / "pwned"
    evil_vocab = tmp_path / "evil.pkl"
    evil_vocab.write_bytes(pickle.dumps(["xxunk", "xxpad", "xxbos", "xxeos", _Evil(marker)]))
    r = ulmfit("import-fastai", fastai_lm["weights"], evil_vocab, "--out", tmp_path / "a")
    _one_line_error(r, "evil.pkl", "refusing to unpickle", "system")
    evil_weights = tmp_path / "evil.pth"
    torch.save({"0.encoder.weight": torch.zeros(2, 2), "x": _Evil(marker)}, evil_weights)
    r = ulmfit("import-fastai", evil_weights, fastai_lm["vocab"], "--out", tmp_path / "b")
    _one_line_error(r, "evil.pth", "refusing to load")
    assert not marker.exists()
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize(
    "vocab, words",
    [
        ({"xxunk": 0}, ["holds a dict", "not a list of words"]),
        (["xxunk", "xxpad", "xxbos", "xxeos", 7], ["not a list of words"]),
        (["<unk>", "<pad>", "<bos>", "<eos>", "a"], ["not fastai's"]),
        (b"not a pickle at all", ["not a pickled word list"]),
    ],
)
def test_a_vocabulary_that_is_not_a_list_of_words_is_refused(fastai_lm, ulmfit, tmp_path, vocab, words):
    p = tmp_path / "v.pkl"
    p.write_bytes(vocab if isinstance(vocab, bytes) else pickle.dumps(vocab))
    _one_line_error(ulmfit("import-fastai", fastai_lm["weights"], p, "--out", tmp_path / "o"), *words)


def test_weights_that_do_not_fit_the_vocabulary_or_the_architecture_are_refused(fastai_lm, ulmfit, tmp_path):
    import torch

    vocab = list(fastai_lm["dls"].vocab)
    short = tmp_path / "short.pkl"
    short.write_bytes(pickle.dumps(vocab[:-8]))
    r = ulmfit("import-fastai", fastai_lm["weights"], short, "--out", tmp_path / "o")
    _one_line_error(r, "embedding rows", f"{len(vocab) - 8:,} words")
    sd = torch.load(fastai_lm["weights"], weights_only=True)
    del sd["1.decoder.bias"]
    torch.save(sd, tmp_path / "nobias.pth")
    _one_line_error(ulmfit("import-fastai", tmp_path / "nobias.pth", fastai_lm["vocab"], "--out", tmp_path / "o"),
                    "missing ['1.decoder.bias']")  # fmt: skip
    (tmp_path / "junk.pth").write_bytes(b"\x00" * 100)
    _one_line_error(ulmfit("import-fastai", tmp_path / "junk.pth", fastai_lm["vocab"], "--out", tmp_path / "o"),
                    "not a readable torch.save file")  # fmt: skip
    _one_line_error(ulmfit("import-fastai", tmp_path / "nope.pth", fastai_lm["vocab"]), "nope.pth: no such file")
    _one_line_error(ulmfit("import-fastai", "--out", tmp_path / "o"), "or --download")
    _one_line_error(ulmfit("import-fastai", "--download", "--direction", "up"), "`--direction` must be fwd or bwd")
    _one_line_error(ulmfit("import-fastai", fastai_lm["weights"], fastai_lm["vocab"], "--download"), "not both")


def test_legacy_fastai_v1_state_dict_is_accepted(fastai_lm, ulmfit, tmp_path):
    """fastai v1 files also hold each LSTM's module.weight_hh_l0 beside weight_hh_l0_raw (clean_raw_keys)."""
    import torch

    sd = torch.load(fastai_lm["weights"], weights_only=True)
    for i in range(2):
        sd[f"0.rnns.{i}.module.weight_hh_l0"] = sd[f"0.rnns.{i}.weight_hh_l0_raw"].clone()
    torch.save({"model": sd, "opt": {"state": {}}}, tmp_path / "v1.pth")
    r = ulmfit("import-fastai", tmp_path / "v1.pth", fastai_lm["vocab"], "--out", tmp_path / "o", "--quiet")
    assert r.returncode == 0, r.stderr


def test_a_backward_model_makes_a_backward_run(fastai_lm, ulmfit, tmp_path):
    """fastai's wt103-bwd was trained on reversed text: the run says so, and later stages inherit it."""
    r = ulmfit("import-fastai", fastai_lm["weights"], fastai_lm["vocab"], "--direction", "bwd", "--out", tmp_path / "b")
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert m["config"]["backwards"] is True and m["imported"]["direction"] == "bwd"


# ---- --download: the fetch and the safe extraction, offline (file:// and a closed port) ---------------------


def _tgz(path, members: dict):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_fetch_downloads_once_and_extracts_fastais_layout(fastai_lm, tmp_path):
    from ulmfit_cli.cli.report import Reporter
    from ulmfit_cli.importers.fastai import fetch

    src = tmp_path / "wt103-fwd.tgz"
    _tgz(src, {"wt103-fwd/lstm_fwd.pth": fastai_lm["weights"].read_bytes(),
               "wt103-fwd/itos_wt103.pkl": fastai_lm["vocab"].read_bytes()})  # fmt: skip
    cache = tmp_path / "cache"
    weights, vocab = fetch(src.as_uri(), cache, Reporter(quiet=True))
    assert weights.read_bytes() == fastai_lm["weights"].read_bytes() and vocab.name == "itos_wt103.pkl"
    src.unlink()  # a second fetch uses the cache
    assert fetch(src.as_uri(), cache, Reporter(quiet=True)) == (weights, vocab)


@pytest.mark.parametrize("bad", ["../escape.txt", "/abs.txt", "wt103-fwd/link"])
def test_unsafe_archive_members_are_refused_before_anything_is_written(tmp_path, bad):
    from ulmfit_cli.errors import InputError
    from ulmfit_cli.importers.fastai import extract

    archive = tmp_path / "a.tgz"
    _tgz(archive, {"wt103-fwd/ok.pth": b"x", bad: None if bad.endswith("link") else b"evil"})
    with pytest.raises(InputError, match="unsafe archive member"):
        extract(archive, tmp_path / "x" / "out")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.tgz"]


def test_a_network_failure_is_one_clear_error(tmp_path):
    from ulmfit_cli.cli.report import Reporter
    from ulmfit_cli.errors import InputError
    from ulmfit_cli.importers.fastai import fetch

    with pytest.raises(InputError, match="download failed") as e:
        fetch("http://127.0.0.1:9/wt103-fwd.tgz", tmp_path, Reporter(quiet=True))
    assert "\n" not in str(e.value) and not list(tmp_path.iterdir())  # no partial download left behind
