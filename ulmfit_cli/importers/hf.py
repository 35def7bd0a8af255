"""A pretrained Hugging Face checkpoint as a `pretrain` run folder (`ulmfit import-hf`).

MODEL is a local folder in the Hugging Face layout (config.json, safetensors or a GGUF file, tokenizer files) or a
Hub id, fetched through huggingface_hub's cache when the network allows (HF_HUB_OFFLINE=1 reads the cache only).
Nothing from the checkpoint runs: transformers builds the architecture from its config with
trust_remote_code off, and a checkpoint that needs its own code is refused. A GGUF file (`--gguf-file`) is
dequantized by transformers (the `gguf` package reads it).

The run folder holds the weights as safetensors (keys of our models.hf.HFLM), the checkpoint's tokenizer inside a
tokenizer.CheckpointTokenizer (tokenizer.json), the checkpoint's config as the run's `hf_config`, its own files
(config.json, tokenizer files) under hf/, and a manifest naming the source: id or path, revision or file
hashes, and the licence where the checkpoint states one.
"""

from __future__ import annotations

import json
import re
import time
from contextlib import contextmanager
from pathlib import Path

from ..config import HF_TOKENIZER, RunConfig
from ..data.tokenizer import CheckpointTokenizer, file_sha256
from ..dist import seed_all
from ..errors import ConfigError, InputError
from ..runfolder import artifacts
from ..training.stage_parts import writing
from . import finish

DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16",
          "fp16": "float16"}  # fmt: skip
EXAMPLES = "gpt2, llama, mistral, qwen2, qwen3, gemma, gemma2, phi3, olmo2, smollm3"
ENCODERS = "bert, roberta, distilbert, deberta-v2, electra, modernbert, xlm-roberta"
HF_FILES = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
            "special_tokens_map.json", "*.safetensors", "*.safetensors.index.json", "README.md"]  # fmt: skip
INSTALL = "pip install 'ulmfit-cli[hf]'"


def need_transformers(gguf: bool = False) -> None:
    """One line, before any work, when the optional extra is missing."""
    import importlib.util

    missing = [
        m for m in ("transformers", *(("gguf", "accelerate") if gguf else ())) if importlib.util.find_spec(m) is None
    ]
    if missing:
        raise ConfigError(f"import-hf needs {' and '.join(missing)}, which is not installed: {INSTALL}")


def import_hf(
    model: str,
    out: Path,
    *,
    gguf_file: str | None = None,
    revision: str | None = None,
    dtype: str = "float32",
    overwrite: bool = False,
    reporter,
) -> dict:
    started = time.time()
    if dtype not in DTYPES:
        raise ConfigError(f"`--dtype` must be one of float32, bfloat16, float16, got {dtype!r}")
    local = Path(model)
    if gguf_file is None and local.suffix == ".gguf" and local.is_file():  # MODEL given as the .gguf file itself
        local, gguf_file = local.parent, local.name
    need_transformers(gguf_file is not None)
    artifacts.check_out(out, overwrite)
    seed_all(RunConfig.seed)
    folder, source = _fetch(model, local, gguf_file, revision, reporter)
    if gguf_file is not None and not (folder / gguf_file).is_file():
        raise InputError(f"{folder / gguf_file}: no such GGUF file")
    config = _config(folder, gguf_file, model)
    reporter.info(f"loading {model}{f' ({gguf_file})' if gguf_file else ''}: {config.model_type}, "
                  f"{config.num_hidden_layers} blocks, width {config.hidden_size}")  # fmt: skip
    from ..hf_facts import is_encoder

    encoder = is_encoder({"model_type": config.model_type})
    lm_head = not encoder or _has_mlm_head(config)
    hf_model = _load_model(folder, gguf_file, config, model, encoder, lm_head)
    tok, ids = _tokenizer(folder, gguf_file, model, encoder)
    hf_config = json.loads(config.to_json_string(use_diff=False))
    hf_config.pop("architectures", None)
    hf_config["architectures"] = [type(hf_model).__name__]
    width = config.hidden_size
    cfg = RunConfig(
        stage="pretrain",
        backbone="hf",
        tokenizer=HF_TOKENIZER,
        vocab_size=int(config.vocab_size),
        emb_sz=int(config.hidden_size),
        n_hid=int(getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * width),
        n_layers=int(config.num_hidden_layers),
        n_heads=int(config.num_attention_heads),
        hf_config=hf_config,
    )
    from ..models.hf import HFLM, blocks_of

    try:
        blocks_of(hf_model.base_model)
    except ValueError:
        raise InputError(f"{model}: cannot find its {config.num_hidden_layers} blocks; supported: {EXAMPLES}") from None
    lm = HFLM(cfg, hf_model) if lm_head else _with_fresh_head(cfg, hf_model, model)
    if not lm_head:
        reporter.info(f"{model}: no masked-LM head (a sentence encoder?): finetune-clf reads it as it is")
    inputs = _inputs(folder, gguf_file, source)
    with writing(out, overwrite, False, reporter) as writer:
        writer.start(cfg.to_dict(), [i["fingerprint"] for i in inputs])
        tok_path = writer.path(artifacts.TOKENIZER)
        from tokenizers import Tokenizer

        backend = Tokenizer.from_str(tok.backend_tokenizer.to_str())  # a copy: CheckpointTokenizer unsets padding
        artifacts.save_tokenizer(CheckpointTokenizer(backend, *ids), tok_path)
        import torch

        lm.to(getattr(torch, DTYPES[dtype]))
        artifacts.save_weights(lm, writer.path(artifacts.WEIGHTS))
        own = writer.path("hf")
        with artifacts.written(own):
            own.mkdir()
            config.to_json_file(str(own / "config.json"))
            tok.save_pretrained(str(own))
        extra = {
            "vocab_size": int(config.vocab_size),
            "imported": {
                "from": "huggingface",
                **source,
                "gguf_file": gguf_file,
                "model_type": config.model_type,
                "architecture": type(hf_model).__name__,
                "parameters": sum(p.numel() for p in lm.parameters()),
                "dtype": DTYPES[dtype],
                "kind": "encoder" if encoder else "decoder",
                **{
                    f"{what}_token": {"id": i, "text": tok.convert_ids_to_tokens(i)}
                    for what, i in zip(("start", "end", "mask"), ids)
                    if i is not None
                },
                "license": _licence(folder, config, gguf_file),
            },
            "lm_head": lm_head,  # False: finetune-lm needs --new-lm-head (stages.train_lm_stage)
            "plots": {},
        }
        said = (
            f"imported {config.model_type} ({extra['imported']['parameters'] / 1e6:,.1f}M parameters, "
            f"{config.num_hidden_layers} blocks, vocabulary {config.vocab_size:,}) into {out}"
        )
        return finish(writer, out, cfg, tok_path, inputs, extra, started, reporter, said)


def _fetch(model: str, local: Path, gguf_file: str | None, revision: str | None, reporter) -> tuple[Path, dict]:
    """The checkpoint's folder and how the manifest names it: a local folder as it is, else a Hub id downloaded
    (or found in the cache) by huggingface_hub."""
    if local.exists():
        if not local.is_dir():
            raise InputError(f"{model}: not a folder in the Hugging Face layout (config.json, weights, tokenizer)")
        if revision is not None:
            raise ConfigError("`--revision` is for a Hub id; a local folder is read as it is")
        return local, {"path": str(local.resolve())}
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", model):
        raise InputError(f"{model}: no such folder, and not a Hub id (OWNER/NAME)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    reporter.info(f"fetching {model} from the Hugging Face Hub (or its cache)")
    try:
        files = [*HF_FILES, *([gguf_file] if gguf_file else [])]
        path = snapshot_download(model, revision=revision, allow_patterns=files)
    except RepositoryNotFoundError:
        raise InputError(f"{model}: no such model on the Hub (or it is private: log in with `hf auth login`)") from None
    except LocalEntryNotFoundError:
        raise InputError(
            f"{model}: not in the local cache and the Hub cannot be reached; give a local folder, or check the "
            "network (and HF_HUB_OFFLINE)"
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise InputError(f"{model}: could not fetch it ({str(e).splitlines()[0]})") from None
    commit = Path(path).name  # snapshots/<commit>
    return Path(path), {"hub_id": model, "revision": revision or "main", "commit": commit}


def _config(folder: Path, gguf_file: str | None, model: str):
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    raw = folder / "config.json"
    if gguf_file is None:
        if not raw.is_file():
            raise InputError(f"{model}: no config.json; not a Hugging Face checkpoint (for a GGUF file, --gguf-file)")
        try:
            spec = json.loads(raw.read_text(encoding="utf-8"))
        except (ValueError, OSError) as e:
            raise InputError(f"{raw}: not readable JSON ({e})") from None
        if isinstance(spec, dict) and spec.get("auto_map"):
            raise InputError(
                f"{model}: needs its own code to load (auto_map, trust_remote_code), which ulmfit never runs; "
                f"supported: models transformers builds itself ({EXAMPLES}, {ENCODERS})"
            )
    try:
        config = AutoConfig.from_pretrained(str(folder), gguf_file=gguf_file, trust_remote_code=False)
    except (ValueError, KeyError, OSError, RuntimeError) as e:
        why = str(e).splitlines()[0][:200]
        raise InputError(f"{model}: transformers cannot read its configuration ({why})") from None
    causal = config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    encoder = config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES  # BERT & co. also have a causal head class
    if getattr(config, "is_encoder_decoder", False) or not (causal or encoder):
        raise InputError(
            f"{model}: a {config.model_type} model is neither a decoder-only causal LM nor a masked-LM encoder; "
            f"import-hf supports decoders ({EXAMPLES}, ...) and encoders ({ENCODERS}, ...)"
        )
    return config


def _has_mlm_head(config) -> bool:
    """Whether an encoder checkpoint holds its masked-LM head: its saved class says so (BertForMaskedLM,
    BertForPreTraining); a sentence encoder is saved as the bare model (BertModel)."""
    return any(a.endswith(("ForMaskedLM", "ForPreTraining")) for a in (config.architectures or []))


def _load_model(folder: Path, gguf_file: str | None, config, model: str, encoder: bool, lm_head: bool):
    """The checkpoint's language model (causal, or masked with its head), or an encoder's bare body when it has
    no head."""
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

    from ..models.hf import _quiet_transformers

    _quiet_transformers()
    auto = AutoModelForCausalLM if not encoder else AutoModelForMaskedLM if lm_head else AutoModel
    try:
        with _no_progress_bars():
            return auto.from_pretrained(
                str(folder), gguf_file=gguf_file, config=config, dtype=torch.float32, trust_remote_code=False,
                attn_implementation="sdpa",
            ).eval()  # fmt: skip
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as e:  # e.g. a truncated download
        raise InputError(f"{model}: could not load its weights ({str(e).splitlines()[0][:200]})") from None


def _with_fresh_head(cfg: RunConfig, body, model: str):
    """An encoder's masked LM holding `body`'s weights and a fresh head (seeded; its decoder is tied to the input
    embeddings): what `finetune-lm --new-lm-head` trains, and never used by finetune-clf, which reads the body."""
    import torch

    from ..models.hf import HFLM

    torch.manual_seed(RunConfig.seed)
    lm = HFLM(cfg)
    state = {k: v for k, v in body.state_dict().items() if not k.startswith("pooler.")}
    missing, unexpected = lm.hf.base_model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InputError(
            f"{model}: its weights do not fit its config (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return lm


@contextmanager
def _no_progress_bars():
    """transformers' GGUF reader draws a tqdm bar of its own, behind no switch (tqdm reads TQDM_DISABLE at import):
    what it writes to stderr while loading is dropped; errors still propagate as exceptions."""
    import contextlib
    import io

    with contextlib.redirect_stderr(io.StringIO()):
        yield


def _tokenizer(folder: Path, gguf_file: str | None, model: str, encoder: bool):
    """The checkpoint's fast tokenizer and (start, end, mask) ids: a decoder's documents start with its bos token
    (else eos); an encoder's are [CLS] ... [SEP] as it was trained, and [MASK] is what masked-LM training puts in."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf_file, trust_remote_code=False, use_fast=True)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{model}: could not load its tokenizer ({str(e).splitlines()[0][:200]})") from None
    if not getattr(tok, "is_fast", False):
        raise InputError(f"{model}: has no fast tokenizer (tokenizer.json); import-hf needs one")

    def first(*names):
        return next((getattr(tok, n) for n in names if getattr(tok, n, None) is not None), None)

    if encoder:
        start, end, mask = (
            first("cls_token_id", "bos_token_id"),
            first("sep_token_id", "eos_token_id"),
            tok.mask_token_id,
        )
        if start is None or end is None:
            raise InputError(f"{model}: its tokenizer has no [CLS]/[SEP] (or bos/eos) tokens to frame documents with")
        return tok, (int(start), int(end), None if mask is None else int(mask))
    start = first("bos_token_id", "eos_token_id")
    if start is None:
        raise InputError(f"{model}: its tokenizer has neither a bos nor an eos token to start documents with")
    return tok, (int(start), None, None)


def _inputs(folder: Path, gguf_file: str | None, source: dict) -> list[dict]:
    """What the weights were read from, each with its SHA-256."""
    files = [folder / gguf_file] if gguf_file else sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    where = source.get("hub_id") or source.get("path")
    return [{"source": f"{where}:{f.name}", "fingerprint": "sha256:" + file_sha256(f)} for f in files]


def _licence(folder: Path, config, gguf_file: str | None) -> str | None:
    """The licence the checkpoint states: its config, its model card's front matter, or the GGUF metadata."""
    if getattr(config, "license", None):
        return str(config.license)
    card = folder / "README.md"
    if card.is_file():
        m = re.search(r"^---\s*$(.*?)^---\s*$", card.read_text(encoding="utf-8", errors="replace"), re.M | re.S)
        lic = re.search(r"^license:\s*(\S+)", m.group(1), re.M) if m else None
        if lic:
            return lic.group(1)
    if gguf_file:
        try:
            from gguf import GGUFReader

            field = GGUFReader(str(folder / gguf_file)).fields.get("general.license")
            if field is not None:
                return bytes(field.parts[field.data[0]]).decode("utf-8", "replace")
        except Exception:  # the licence is information; an unreadable field is not worth failing the import
            return None
    return None
