"""Backbones: awd_lstm the paper's, transformer our own GPT-shaped model trained from scratch, hf a pretrained
Hugging Face checkpoint, a decoder or an encoder (the root module hf_facts: what its config says, encoder or
decoder and how many tokens it reads, without torch). Each is a module that owns its shapes, its default dropouts
and its layer groups behind one interface, `Backbone` below; the stages call only that, so a new backbone is a new
module here. Inference builds its classifier with `inference_classifier`, which for the AWD-LSTM is
awd_lstm_infer's twin of fastai's model (no import of fastai's package).

May import: the root modules, data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from ..config import RunConfig


@runtime_checkable
class Backbone(Protocol):
    """What a backbone module provides (awd_lstm, transformer and hf each satisfy it as a module; tests/
    test_backbones.py checks every member and its parameters). `kind` is "lm" or "classifier"; layer groups run
    from the bottom up, as (names, [parameters of each group])."""

    def build_lm(self, cfg: RunConfig, vocab_sz: int) -> nn.Module:
        """The language model: tokens (B, T) -> (logits (B, T, V), and what AR/TAR read, or None)."""

    def build_classifier(self, cfg: RunConfig, vocab_sz: int, n_class: int) -> nn.Module:
        """The classifier: tokens (B, T), padded by pad_batch -> (logits (B, n_class), ...)."""

    def group_names(self, kind: str, cfg: RunConfig) -> list[str]:
        """The layer groups' names, known before any model is built (--print-schedule, lr-find, the plots)."""

    def lm_groups(self, model: nn.Module) -> tuple[list[str], list[list]]:
        """The language model's layer groups."""

    def classifier_groups(self, model: nn.Module) -> tuple[list[str], list[list]]:
        """The classifier's layer groups."""

    def encoder_of_lm(self, lm: nn.Module) -> nn.Module:
        """The part of the language model whose weights a classifier starts from (stage_parts.build_classifier)."""

    def encoder_of_classifier(self, clf: nn.Module) -> nn.Module:
        """The part of the classifier that takes them: its state dict has encoder_of_lm's keys."""

    def diagnosed_layers(self, model: nn.Module) -> list | None:
        """The blocks whose training diagnostics the loop records, or None."""

    def pad_batch(self, docs: list[np.ndarray], pad_id: int, bptt: int) -> np.ndarray:
        """A classifier batch of documents as one padded array (where the pads go is the backbone's)."""

    def cut_doc(self, doc: np.ndarray, max_len: int) -> np.ndarray:
        """Which tokens of a document longer than --max-len are kept."""

    def lm_objective(self, cfg: RunConfig, tok) -> Callable[[Iterable, int], Iterable] | None:
        """What an LM stage does to each (x, y) batch before the loss, as objective(batches, seed) (an encoder's
        masking), or None: next-token prediction on the stream as it is."""


def backbone(name: str) -> Backbone:
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
