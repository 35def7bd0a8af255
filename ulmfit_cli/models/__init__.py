"""Backbones. Each module owns its shapes, its default dropouts and its layer groups, behind one interface:
build_lm, build_classifier, group_names, lm_groups, classifier_groups, encoder_of_lm, encoder_of_classifier,
diagnosed_layers (the blocks whose training diagnostics are recorded, or None), pad_batch (how a classifier
batch is padded), cut_doc (which tokens of a document longer than --max-len are kept) and lm_objective (what an LM
stage does to a batch before the loss: an encoder's masking). awd_lstm is the paper's,
transformer our own GPT-shaped model trained from scratch, hf a pretrained Hugging Face checkpoint (hf_facts: what
its config says, encoder or decoder and how many tokens it reads, without torch). Inference
builds its classifier with `inference_classifier`, which for the AWD-LSTM is awd_lstm_infer's twin of fastai's
model (no import of fastai's package).

May import: the root modules, data.
"""


def backbone(name: str):
    """The module for `--backbone NAME` (imported on demand: torch is heavy)."""
    if name == "transformer":
        from . import transformer

        return transformer
    if name == "hf":
        from . import hf

        return hf
    from . import awd_lstm

    return awd_lstm


def inference_classifier(cfg, vocab_sz: int, n_class: int):
    """The classifier to load a run's weights into for inference (eval mode is the caller's)."""
    if cfg.backbone != "awd-lstm":
        return backbone(cfg.backbone).build_classifier(cfg, vocab_sz, n_class)
    from . import awd_lstm_infer

    return awd_lstm_infer.build_classifier(cfg, vocab_sz, n_class)
