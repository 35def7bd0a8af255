"""Backbones. Each module owns its shapes, its default dropouts and its layer groups, behind one interface:
build_lm, build_classifier, group_names, lm_groups, classifier_groups, encoder_of_lm, encoder_of_classifier and
pad_batch (how a classifier batch is padded)."""


def backbone(name: str):
    """The module for `--backbone NAME` (imported on demand: torch is heavy)."""
    if name == "transformer":
        from . import transformer

        return transformer
    from . import awd_lstm

    return awd_lstm
