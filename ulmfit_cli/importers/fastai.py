"""fastai's published pretrained AWD-LSTM (WT103, forward or backward) as a `pretrain` run folder (`ulmfit
import-fastai`). The vocabulary change when such a run is fine-tuned is a stage's (training.stage_parts.parent_lm).

fastai ships `wt103-fwd.tgz` / `wt103-bwd.tgz` (URLs.WT103_FWD / WT103_BWD): a `torch.save`d state dict of
`get_language_model(AWD_LSTM, 60000, awd_lstm_lm_config)` (.pth) and its vocabulary, a pickled list of words
(.pkl). Neither is opened in a way that can run code: the state dict through `torch.load(weights_only=True)`,
the vocabulary through an unpickler that refuses every class (words.read_vocab_pickle). Our awd_lstm.build_lm
is fastai's get_language_model, so the state-dict keys are fastai's and are checked one for one.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import time
from pathlib import Path

from ..config import RunConfig
from ..data.tokenizer import file_sha256
from ..data.words import KIND, WordVocab, read_vocab_pickle
from ..dist import seed_all
from ..errors import ConfigError, InputError
from ..runfolder import artifacts
from ..training.stage_parts import writing
from . import finish

DIRECTIONS = ("fwd", "bwd")


def import_fastai(
    weights: Path | None,
    vocab: Path | None,
    out: Path,
    *,
    download: bool = False,
    direction: str = "fwd",
    cache_dir: Path | None = None,
    overwrite: bool = False,
    reporter,
) -> dict:
    """Check fastai's weights and vocabulary (or fetch fastai's archive with `download`), then write them as a
    `pretrain` run with a fastai word tokenizer."""
    started = time.time()
    if direction not in DIRECTIONS:
        raise ConfigError(f"`--direction` must be fwd or bwd, got {direction!r}")
    if download and (weights is not None or vocab is not None):
        raise InputError("give WEIGHTS.pth and VOCAB.pkl, or --download, not both")
    if not download and (weights is None or vocab is None):
        raise InputError("give fastai's WEIGHTS.pth and VOCAB.pkl, or --download to fetch fastai's WT103 model")
    for p in (weights, vocab) if not download else ():
        if not p.is_file():
            raise InputError(f"{p}: no such file")
    artifacts.check_out(out, overwrite)  # before a download of hundreds of MB
    seed_all(RunConfig.seed)  # the warnings filter (for fastai's import) and seeds, as every stage does
    url = None
    if download:
        url, (weights, vocab) = fastai_url(direction), fetch(fastai_url(direction), archive_dir(cache_dir), reporter)
    itos = read_vocab_pickle(vocab)
    state = read_weights(weights)
    cfg = arch_config(state, len(itos), weights, direction)
    model = _load_checked(cfg, len(itos), state, weights)
    inputs = [
        {"source": f"{url}:{p.name}" if url else str(p), "fingerprint": "sha256:" + file_sha256(p)}
        for p in (weights, vocab)
    ]
    with writing(out, overwrite, False, reporter) as writer:
        writer.start(cfg.to_dict(), [i["fingerprint"] for i in inputs])
        tok_path = writer.path(artifacts.TOKENIZER)
        artifacts.save_tokenizer(WordVocab(itos), tok_path)
        artifacts.save_weights(model, writer.path(artifacts.WEIGHTS))
        extra = {
            "vocab_size": len(itos),
            "imported": {"from": "fastai", "direction": direction, "url": url},
            "plots": {},  # nothing was trained here
        }
        said = (
            f"imported fastai AWD-LSTM ({cfg.n_layers} layers, emb {cfg.emb_sz}, hidden {cfg.n_hid}, "
            f"{len(itos):,} words, {direction}) into {out}"
        )
        return finish(writer, out, cfg, tok_path, inputs, extra, started, reporter, said)


def read_weights(path: Path) -> dict:
    """A torch.save'd state dict, loaded with weights_only=True (tensors and plain containers, never code)."""
    import pickle

    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        why = _torch_reason(str(e))
        if "GLOBAL" in why:
            msg = f"{path}: holds pickled objects or code, not only tensors; refusing to load it ({why})"
            raise InputError(msg) from None
        raise InputError(f"{path}: not a readable torch.save file ({why})") from None
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise InputError(f"{path}: not a readable torch.save file ({_torch_reason(str(e))})") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):  # saved with its optimizer (as load_pretrained)
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise InputError(f"{path}: not a state dict (names -> tensors); not fastai language-model weights")
    from fastai.text.learner import clean_raw_keys

    # fastai v1 files also hold each LSTM's `module.weight_hh_l0` beside `weight_hh_l0_raw`; fastai drops it
    return clean_raw_keys(dict(obj))


def _torch_reason(msg: str) -> str:
    """The line of torch.load's many-line message that says what was wrong ("Trying to load unsupported GLOBAL
    posix.system ...", "Unsupported operand 0"), not its advice."""
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
    useful = [ln for ln in lines[1:] if not ln.startswith(("Check the documentation", "Please file an issue"))]
    return (useful or lines or ["unknown error"])[0][:200]


def arch_config(state: dict, n_words: int, where: Path, direction: str = "fwd") -> RunConfig:
    """Sizes read off the tensors: encoder (V, emb_sz); LSTM l's hidden-to-hidden weight (4 h, h), h = n_hid
    except the last layer's (emb_sz, as fastai's AWD_LSTM)."""
    enc = state.get("0.encoder.weight")
    if enc is None or enc.dim() != 2:
        raise InputError(f"{where}: no 0.encoder.weight matrix; not a fastai AWD_LSTM language model")
    n_vocab, emb_sz = enc.shape
    if n_vocab != n_words:
        raise InputError(
            f"{where}: the weights have {n_vocab:,} embedding rows but the vocabulary has {n_words:,} words; "
            "give the .pkl saved with these weights"
        )
    n_layers = 0
    while f"0.rnns.{n_layers}.weight_hh_l0_raw" in state:
        n_layers += 1
    if n_layers == 0:
        raise InputError(f"{where}: no 0.rnns.0.weight_hh_l0_raw; not a fastai AWD_LSTM language model")
    n_hid = state["0.rnns.0.weight_hh_l0_raw"].shape[1] if n_layers > 1 else emb_sz
    # fastai's awd_lstm_lm_config dropouts are our LM_DROPS; vocab_size records the word count
    return RunConfig(
        stage="pretrain",
        tokenizer=KIND,
        vocab_size=int(n_vocab),
        emb_sz=int(emb_sz),
        n_hid=int(n_hid),
        n_layers=n_layers,
        backwards=direction == "bwd",  # fastai's wt103-bwd was trained on reversed text; later stages inherit it
    )


def _load_checked(cfg: RunConfig, n_words: int, state: dict, where: Path):
    """Our LM with the file's tensors, after checking names and shapes one for one."""
    import torch

    from ..models.awd_lstm import build_lm

    model = build_lm(cfg, n_words)
    want = model.state_dict()
    missing, unexpected = sorted(set(want) - set(state)), sorted(set(state) - set(want))
    if missing or unexpected:
        raise InputError(
            f"{where}: not a fastai AWD_LSTM language model of {cfg.n_layers} layers (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    for k, v in want.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise InputError(
                f"{where}: {k} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)} for emb_sz "
                f"{cfg.emb_sz}, n_hid {cfg.n_hid}, {cfg.n_layers} layers"
            )
    if not torch.equal(state["0.encoder.weight"], state["1.decoder.weight"]):
        raise InputError(f"{where}: the decoder is not tied to the embedding; fastai's AWD_LSTM LM ties them")
    model.load_state_dict(state)
    return model


# ---- fastai's archive ------------------------------------------------------------------------------------


def fastai_url(direction: str) -> str:
    from fastai.data.external import URLs

    return URLs.WT103_FWD if direction == "fwd" else URLs.WT103_BWD


def archive_dir(cache_dir: Path | None) -> Path:
    """fastai's archives live beside the token cache: --cache-dir, else $ULMFIT_CACHE, else ~/.cache/ulmfit."""
    from ..data.tokencache import cache_root

    return cache_root(cache_dir) / "fastai"


def fetch(url: str, cache: Path, reporter) -> tuple[Path, Path]:
    """fastai's archive at `url`, downloaded once into `cache` and extracted there: (weights .pth, vocab .pkl)."""
    import urllib.error
    import urllib.request

    name = url.rstrip("/").rsplit("/", 1)[-1]
    folder = cache / name.removesuffix(".tgz").removesuffix(".tar.gz")
    if not folder.is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        archive, part = cache / name, cache / f".{name}.partial-{os.getpid()}"
        if not archive.exists():
            reporter.info(f"downloading {url}")
            try:
                with urllib.request.urlopen(url, timeout=60) as r, open(part, "wb") as f:
                    _copy_with_progress(r, f, int(r.headers.get("Content-Length") or 0), reporter)
            except (urllib.error.URLError, OSError, ValueError) as e:
                part.unlink(missing_ok=True)
                raise InputError(f"{url}: download failed ({getattr(e, 'reason', e)}); check the network") from None
            os.replace(part, archive)
        extract(archive, folder)
    return _model_files(folder)


def _copy_with_progress(src, dst, total: int, reporter) -> None:
    done, shown = 0, 0
    while block := src.read(1 << 20):
        dst.write(block)
        done += len(block)
        if total and done * 10 // total > shown:
            shown = done * 10 // total
            reporter.info(f"  {done / 2**20:,.0f} of {total / 2**20:,.0f} MB")


def extract(archive: Path, dest: Path) -> None:
    """Extract a .tgz into `dest` (made atomically): regular files and folders only, every path inside `dest`;
    links, devices, absolute paths and `..` are refused before anything is written."""
    tmp = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                parts = Path(m.name).parts
                if Path(m.name).is_absolute() or ".." in parts or not (m.isfile() or m.isdir()):
                    raise InputError(f"{archive}: unsafe archive member {m.name!r}; refusing to extract it")
            tmp.mkdir(parents=True)
            for m in members:
                target = tmp / m.name
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(m) as src, open(target, "wb") as f:
                    shutil.copyfileobj(src, f, 1 << 20)
    except (tarfile.TarError, EOFError, OSError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise InputError(f"{archive}: not a readable archive ({e}); delete it and retry") from None
    except InputError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.replace(tmp, dest)


def _model_files(folder: Path) -> tuple[Path, Path]:
    """The .pth and the .pkl of an extracted archive (as fastai's language_model_learner finds them)."""
    found = [sorted(folder.rglob(f"*.{ext}")) for ext in ("pth", "pkl")]
    if any(len(f) != 1 for f in found):
        raise InputError(f"{folder}: expected one .pth and one .pkl in fastai's archive; delete it and retry")
    return found[0][0], found[1][0]
