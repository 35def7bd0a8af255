"""AWD-LSTM (Merity et al. 2017) as fastai builds it, with the ULMFiT layer groups.

We reuse fastai's modules rather than re-implementing them: `AWD_LSTM` (weight-dropped LSTMs, embedding and
variational dropouts), `get_language_model` (tied decoder), `get_text_classifier` (`SentenceEncoder` for BPT3C,
`PoolingLinearClassifier` for concat pooling and the paper's head) and the two split functions.
"""

from __future__ import annotations

from ..config import RunConfig

PAD_ID = 1  # fastai's AWD_LSTM default pad_token; the tokenizer puts <pad> at id 1 to match

# Dropouts as fastai's awd_lstm_lm_config / awd_lstm_clas_config (recipe sections 1 and 3).
LM_DROPS = dict(output_p=0.1, hidden_p=0.15, input_p=0.25, embed_p=0.02, weight_p=0.2)
CLF_DROPS = dict(output_p=0.4, hidden_p=0.3, input_p=0.4, embed_p=0.05, weight_p=0.5)


def _arch(cfg: RunConfig, drops: dict) -> dict:
    return dict(emb_sz=cfg.emb_sz, n_hid=cfg.n_hid, n_layers=cfg.n_layers, pad_token=PAD_ID, bidir=False, **drops)


def build_lm(cfg: RunConfig, vocab_sz: int):
    """SequentialRNN(AWD_LSTM, LinearDecoder): tokens (B, T) -> (logits (B, T, V), raw_out, out)."""
    from fastai.text.models.awdlstm import AWD_LSTM
    from fastai.text.models.core import get_language_model

    config = dict(_arch(cfg, LM_DROPS), tie_weights=True, out_bias=True)
    return _no_zero_weight_dropout(get_language_model(AWD_LSTM, vocab_sz, config=config, drop_mult=cfg.drop_mult))


def build_classifier(cfg: RunConfig, vocab_sz: int, n_class: int):
    """SequentialRNN(SentenceEncoder(AWD_LSTM), PoolingLinearClassifier): tokens (B, T) -> logits (B, C), ...

    The head is the paper's: concat pooling (3 * emb_sz features), then two blocks of batch-norm + dropout +
    linear with `lin_ftrs` hidden units and ReLU between them.

    Documents are cut to `max_len` tokens before batching (predictor.docs_of) and batches are padded to whole
    `bptt` chunks (batches.pad_chunks), so a batch can be up to `max_len` rounded up to a chunk wide. fastai's
    SentenceEncoder leaves out of pooling every chunk that starts before `width - max_len`; given `max_len`
    itself, a batch 1470 wide (small preset: 1440 / 70) would lose its first chunk, and what a document pools would
    depend on its batch. Rounded up to whole chunks, every kept token is pooled, as the inference model
    (awd_lstm_infer) pools it.
    """
    from fastai.text.models.awdlstm import AWD_LSTM
    from fastai.text.models.core import get_text_classifier

    return _no_zero_weight_dropout(
        get_text_classifier(
            AWD_LSTM,
            vocab_sz,
            n_class,
            seq_len=cfg.bptt,
            config=_arch(cfg, CLF_DROPS),
            drop_mult=cfg.drop_mult,
            lin_ftrs=[cfg.lin_ftrs],
            pad_idx=PAD_ID,
            max_len=-(-cfg.max_len // cfg.bptt) * cfg.bptt,
        )
    )


def _no_zero_weight_dropout(model):
    """With --drop-mult 0 fastai's WeightDropout breaks: torch's F.dropout(w, p=0) returns the Parameter itself,
    which then gets registered on the LSTM, and the next reset() fails. A rate of 0 means no dropout, so these
    modules get a forward that uses a copy of the raw weights, as WeightDropout does in eval mode."""
    import types

    from fastai.text.models.awdlstm import WeightDropout

    def setweights(self):
        for layer in self.layer_names:
            setattr(self.module, layer, getattr(self, f"{layer}_raw").clone())

    for m in model.modules():
        if isinstance(m, WeightDropout) and m.weight_p == 0:
            m._setweights = types.MethodType(setweights, m)
    return model


def group_names(kind: str, cfg: RunConfig) -> list[str]:
    """Layer groups from the bottom up, known before any model is built (for --print-schedule)."""
    return _names(kind, cfg.n_layers)


def _names(kind: str, n_layers: int) -> list[str]:
    lstms = [f"lstm{i + 1}" for i in range(n_layers)]
    return lstms + ["embed+decoder"] if kind == "lm" else ["embed", *lstms, "head"]


def lm_groups(model) -> tuple[list[str], list[list]]:
    """fastai's awd_lstm_lm_split: one group per LSTM layer, then embedding + tied decoder on top."""
    from fastai.text.models.awdlstm import awd_lstm_lm_split

    return _names("lm", len(model[0].rnns)), [list(g) for g in awd_lstm_lm_split(model)]


def classifier_groups(model) -> tuple[list[str], list[list]]:
    """fastai's awd_lstm_clas_split: embedding, one group per LSTM layer, then the head."""
    from fastai.text.models.awdlstm import awd_lstm_clas_split

    return _names("classifier", len(model[0].module.rnns)), [list(g) for g in awd_lstm_clas_split(model)]


def diagnosed_layers(model) -> None:
    """No per-layer diagnostics for the LSTM (they answer the transformer's normalisation question)."""
    return None


def encoder_of_lm(lm):
    return lm[0]


def encoder_of_classifier(clf):
    return clf[0].module


def lm_objective(cfg: RunConfig, tok):
    """Next-token prediction on the stream as it is: nothing to do to a batch (see hf.lm_objective)."""
    return None


def cut_doc(doc, max_len: int):
    """A document's first `max_len` tokens (see predictor.docs_of)."""
    return doc[:max_len]


def pad_batch(docs, pad_id: int, bptt: int):
    """fastai's chunked padding, padding first (see batches.pad_chunks); rows sorted longest first."""
    from ..data.batches import pad_chunks

    return pad_chunks(docs, pad_id, bptt)
