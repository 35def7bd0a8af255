"""LoRA adapters (Hu et al. 2021) on a Hugging Face backbone, through PEFT (`--adapter lora`).

PEFT's `inject_adapter_in_model` puts the adapters into the model in place: its modules keep their names, so the
backbone's layer groups (hf._groups) still find the blocks, and a block's group becomes its adapters' parameters.
Every other weight of the body is frozen. Which linear layers get an adapter is, by default, PEFT's own table per
family (q and v projections, GPT-2's fused c_attn), else every linear layer of the blocks ("all-linear").

`merge` folds each adapter into its layer (W + B A alpha/r) and takes the adapter modules out again, so the model
is the plain transformers architecture the readers and `export` build.
"""

from __future__ import annotations

import warnings

from ..config import RunConfig

LORA_MARK = "lora_"  # every parameter PEFT adds for LoRA has it in its name (lora_A, lora_B, lora_embedding_*)


def targets(cfg: RunConfig) -> list[str] | str:
    """--lora-targets: a comma-separated list of module names; auto: PEFT's table for the family; all-linear:
    every linear layer of the model (PEFT's own keyword: it leaves out a language model's output layer)."""
    if cfg.lora_targets == "all-linear":
        return "all-linear"
    if cfg.lora_targets != "auto":
        return [t.strip() for t in cfg.lora_targets.split(",") if t.strip()]
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as TABLE

    return list(TABLE.get(cfg.hf_config["model_type"], ())) or "all-linear"


def add_lora(model, cfg: RunConfig):
    """LoRA adapters in `model` (a transformers model, in place) and every other parameter of it frozen."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(
        r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, target_modules=targets(cfg)
    )
    try:
        with warnings.catch_warnings():  # GPT-2's Conv1D stores W transposed; PEFT says so, and reads it right
            warnings.filterwarnings("ignore", message="fan_in_fan_out is set to False")
            inject_adapter_in_model(config, model)
    except ValueError as e:  # PEFT: "Target modules {...} not found in the base model"
        from ..errors import ConfigError

        raise ConfigError(f"`--lora-targets`: {str(e).splitlines()[0]}") from None
    for name, p in model.named_parameters():
        p.requires_grad_(LORA_MARK in name)
    return model


def frozen(body) -> dict:
    """{name: tensor} of the checkpoint's weights that LoRA leaves as they are: all of `body`'s state but the
    adapters."""
    return {n: t for n, t in body.state_dict(keep_vars=True).items() if LORA_MARK not in n}


def has_lora(model) -> bool:
    return any(LORA_MARK in name for name, _ in model.named_parameters())


def merge(model):
    """Fold every adapter into its layer and put the plain layer back in its place (in place; returns `model`)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, module.get_base_layer())
    return model
