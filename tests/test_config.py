import pytest

from ulmfit_cli.config import PRESETS, RunConfig, from_dict, resolve
from ulmfit_cli.errors import ConfigError


def test_flags_override_the_preset_and_none_means_not_given():
    cfg = resolve("finetune-clf", "tiny", {"epochs": 9, "lr": None})
    assert cfg.epochs == 9
    assert cfg.lr == PRESETS["tiny"]["finetune-clf"]["lr"]


def test_paper_preset_has_the_paper_sizes():
    cfg = resolve("pretrain", "paper", {})
    assert (cfg.emb_sz, cfg.n_hid, cfg.n_layers, cfg.bptt) == (400, 1152, 3, 70)
    assert cfg.lr_factor == 1.0  # pretraining: one rate for all groups; discriminative rates are for fine-tuning
    ft = resolve("finetune-lm", "paper", {})
    assert (ft.beta1, ft.beta2, ft.lr_factor, ft.cut_frac, ft.ratio, ft.lr) == (0.7, 0.99, 2.6, 0.1, 32.0, 0.004)
    assert resolve("finetune-clf", "paper", {}).lr == 0.01


def test_all_problems_are_reported_at_once_with_flag_names():
    with pytest.raises(ConfigError) as e:
        resolve("pretrain", "tiny", {"lr": -1.0, "cut_frac": 1.5, "bs": 0})
    msg = str(e.value)
    assert "`--lr` must be > 0, got -1.0" in msg
    assert "`--cut-frac` must be in (0, 1)" in msg
    assert "`--bs` must be >= 1" in msg


def test_later_stages_inherit_sizes_and_refuse_contradicting_flags():
    parent = resolve("pretrain", "tiny", {}).to_dict()
    cfg = resolve("finetune-lm", "small", {}, parent)
    assert (cfg.emb_sz, cfg.n_hid, cfg.vocab_size) == (parent["emb_sz"], parent["n_hid"], parent["vocab_size"])
    with pytest.raises(ConfigError, match="--backbone"):
        resolve("finetune-lm", "tiny", {"backbone": "transformer"}, parent)


def test_transformer_presets_follow_the_normalisation_study():
    """small and paper transformers are shallow ResiDual (it trained where Post-LN did not); a flag still wins,
    later stages take the parent's, and the AWD-LSTM presets are untouched by the transformer's overrides."""
    for preset in ("small", "paper"):
        cfg = resolve("pretrain", preset, {"backbone": "transformer"})
        assert (cfg.norm_position, cfg.n_layers) == ("residual", 3)
        assert resolve("pretrain", preset, {"backbone": "transformer", "norm_position": "pre"}).norm_position == "pre"
    parent = resolve("pretrain", "small", {"backbone": "transformer", "norm_position": "pre"}).to_dict()
    assert resolve("finetune-clf", "small", {}, parent).norm_position == "pre"
    assert resolve("pretrain", "tiny", {"backbone": "transformer"}).norm_position == "pre"


def test_a_lora_classifier_trains_every_adapter_at_once_unless_told():
    """--adapter lora: no gradual unfreezing and one rate for every group, 5x full fine-tuning's, by default
    (measured); a flag or a config file's value wins; full fine-tuning and the LM stage keep the recipe's."""
    hf = {"model_type": "bert", "max_position_embeddings": 512}
    parent = resolve("pretrain", "tiny", {}).to_dict() | {"backbone": "hf", "tokenizer": "hf", "hf_config": hf}
    for preset in ("tiny", "small", "paper"):
        lora = resolve("finetune-clf", preset, {"adapter": "lora"}, parent)
        full = resolve("finetune-clf", preset, {}, parent)
        assert (lora.gradual_unfreezing, lora.lr_factor, lora.lr) == (False, 1.0, pytest.approx(5 * full.lr))
        assert (full.gradual_unfreezing, full.lr_factor) == (True, 2.6)
        given = {"adapter": "lora", "gradual_unfreezing": True, "lr_factor": 2.0, "lr": 3e-4}
        told = resolve("finetune-clf", preset, given, parent)
        assert (told.gradual_unfreezing, told.lr_factor, told.lr) == (True, 2.0, 3e-4)
        assert resolve("finetune-lm", preset, {"adapter": "lora"}, parent).lr_factor == full.lr_factor


def test_a_checkpoints_fresh_head_trains_at_its_own_rate_and_only_the_classifiers():
    """hf small/paper: the head at 5x --lr (at --lr alone it could not learn a skewed class prior); a flag wins;
    the other backbones, the LM stages and an older run's config without the field keep 1."""
    hf = {"model_type": "llama", "max_position_embeddings": 2048}
    parent = resolve("pretrain", "tiny", {}).to_dict() | {"backbone": "hf", "tokenizer": "hf", "hf_config": hf}
    for preset in ("small", "paper"):
        assert resolve("finetune-clf", preset, {}, parent).head_lr_mult == 5.0
        assert resolve("finetune-clf", preset, {"head_lr_mult": 2.0}, parent).head_lr_mult == 2.0
        assert resolve("finetune-lm", preset, {}, parent).head_lr_mult == 1.0
        assert resolve("finetune-clf", preset, {}, resolve("pretrain", "tiny", {}).to_dict()).head_lr_mult == 1.0
    old = resolve("finetune-clf", "small", {}, parent).to_dict()
    del old["head_lr_mult"]
    assert from_dict(old).head_lr_mult == 1.0
    with pytest.raises(ConfigError, match="head-lr-mult"):
        resolve("finetune-clf", "small", {"head_lr_mult": 0.0}, parent)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="--preset"):
        resolve("pretrain", "huge", {})


def test_defaults_are_the_recipe():
    c = RunConfig()
    assert (c.lr_factor, c.cut_frac, c.ratio, c.max_len) == (2.6, 0.1, 32.0, 1440)


def test_a_setting_given_without_the_one_it_needs_is_named_once_and_only_then():
    """Every setting that declares what it needs (config.Needs) is named, with the flag it needs, when that is
    absent, and not when present; settings that need nothing never are."""
    import dataclasses

    from ulmfit_cli.config import flag_of, inert

    fields = [f for f in dataclasses.fields(RunConfig) if flag_of(f)]
    needing = [f.name for f in fields if flag_of(f).needs]
    assert {"window", "stride", "window_pool", "lora_rank", "lora_targets", "contrastive_lr"} <= set(needing)
    bare = RunConfig(stage="finetune-clf", contrastive_steps=0)  # head-tail, no adapter, no contrastive step
    lines = inert(bare, [f.name for f in fields])
    assert len(lines) == len(needing)
    for name, line in zip(needing, lines):
        assert (
            line.startswith(f"`--{name.replace('_', '-')}` has no effect ")
            and flag_of(next(f for f in fields if f.name == name)).needs.text in line
        )
    full = dataclasses.replace(bare, long="windows", adapter="lora", contrastive_steps=-1)
    assert inert(full, [f.name for f in fields]) == []
