"""What a Hugging Face checkpoint's config (a run's `hf_config`, a plain dict) says about the model, without
building it: whether it is a masked-LM encoder (read both ways) or a causal decoder, and how many tokens it reads
at once. Light: torch is never imported, transformers only to ask about an encoder. A root module, so that
`config` validates and resolves `--backbone hf` settings with it as the backbone reads the checkpoint.
"""

from __future__ import annotations

# RoBERTa-style models number positions from pad id + 1, so two of their position embeddings are never a token's
ROBERTA_STYLE = ("roberta", "xlm-roberta", "xlm-roberta-xl", "roberta-prelayernorm", "camembert", "data2vec-text")


def is_encoder(hf_config: dict) -> bool:
    """A masked-LM encoder (BERT, RoBERTa, DistilBERT, ...), read both ways; else a causal decoder."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return hf_config.get("model_type") in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def positions(hf_config: dict) -> int | None:
    """How many tokens a Hugging Face model reads at once (None when its config does not say): its position
    embeddings, less the two a RoBERTa-style model never gives a token."""
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        if isinstance(hf_config.get(key), int):
            offset = hf_config.get("pad_token_id", 1) + 1 if hf_config.get("model_type") in ROBERTA_STYLE else 0
            return hf_config[key] - offset
    return None


def window_ends(hf_config: dict) -> int:
    """The tokens each window of a long document repeats (--long windows): the start token, and an encoder's end
    token (every encoder's documents have one: `import-hf` refuses a tokenizer without)."""
    return 2 if is_encoder(hf_config) else 1
