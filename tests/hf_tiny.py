"""Tiny random Hugging Face models for the tests, built offline in a fraction of a second.

Not a test module: the helpers write, in the layout the Hugging Face Hub uses, a byte-level BPE tokenizer trained on
CORPUS (`write_tokenizer`), a random GPT-2 or Llama with 16-wide hidden states (`write_model`), the same Llama as a
llama.cpp-style GGUF file (`write_gguf`), and encoders: a RoBERTa-style tokenizer with "<s> ... </s>" around every text
(`write_encoder_tokenizer`) and a random BERT, RoBERTa or DistilBERT, with or without its masked-LM head
(`write_encoder`). The same seed gives the same files. torch, transformers and gguf are imported inside the functions,
so importing CORPUS costs nothing.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

CORPUS: list[str] = [
    "The quick brown fox jumps over the lazy dog.",
    "A stitch in time saves nine.",
    "She sells sea shells by the sea shore.",
    "The rain in Spain stays mainly in the plain.",
    "How much wood would a woodchuck chuck?",
    "Every good boy deserves fruit.",
    "I think, therefore I am.",
    "The early bird catches the worm, but the second mouse gets the cheese.",
    "Colorless green ideas sleep furiously.",
    "To be or not to be, that is the question.",
    "All that glitters is not gold.",
    "The train to Boston leaves at 7:45 from platform 3.",
    "Please send the report by Friday, June 14th.",
    "My favourite colours are red, blue and green!",
    "Why did the chicken cross the road?",
    "It was the best of times, it was the worst of times.",
    "Water boils at 100 degrees Celsius at sea level.",
    "The museum opens at nine and closes at five.",
    "He read the book twice and still loved the ending.",
    "Don't count your chickens before they hatch.",
    "The cat sat on the mat and watched the birds outside.",
    "Is this the real life, or is this just fantasy?",
    "Our team won the match 3-2 after extra time.",
    "Fresh bread smells wonderful in the morning.",
    "Turn left at the second light, then go straight on.",
    "Scientists discovered a new species of frog in the rainforest.",
    "The meeting was moved to Tuesday because of the storm.",
    "Hello world, this is a tiny test sentence.",
    "Good movies make you laugh, cry and think.",
    "That film was boring; I fell asleep halfway through.",
]

EOS = "<|endoftext|>"  # id 0; bos and eos, as in GPT-2
VOCAB_SIZE = 300  # the special token, the 256 byte-level characters and 43 merges
HIDDEN, LAYERS, HEADS, FFN, POSITIONS = 16, 2, 2, 32, 256
RMS_EPS, ROPE_THETA = 1e-6, 10000.0

# The encoders' tokenizer: RoBERTa's special tokens (here all five first, so the ids are small and fixed)
CLS, PAD, SEP, MASK, UNK = "<s>", "<pad>", "</s>", "<mask>", "<unk>"  # ids 0 to 4; <s> is also bos, </s> also eos
ENCODER_VOCAB_SIZE = 300  # the 5 special tokens, the 256 byte-level characters and 39 merges
ENCODER_POSITIONS = 128  # model_max_length; RoBERTa gets 2 more position rows (its positions start at pad + 1)


@functools.cache
def _tokenizer_json() -> str:
    """The trained tokenizer, serialized (training is deterministic; this only saves repeating it)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    assert tok.token_to_id(EOS) == 0 and tok.get_vocab_size() == VOCAB_SIZE
    return tok.to_str()


def write_tokenizer(folder: Path) -> None:
    """tokenizer.json, tokenizer_config.json and special_tokens_map.json in `folder`: a byte-level BPE (GPT-2's
    pre-tokenizer and decoder) of VOCAB_SIZE tokens trained on CORPUS, "<|endoftext|>" (id 0) as bos and eos, no pad."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.json").write_text(_tokenizer_json(), encoding="utf-8")
    special = {"bos_token": EOS, "eos_token": EOS}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", **special, "model_max_length": 512}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")


def _model(family: str, seed: int, tie: bool):
    """A random AutoModelForCausalLM of `family` ("gpt2" or "llama"), in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    common = dict(vocab_size=VOCAB_SIZE, bos_token_id=0, eos_token_id=0, tie_word_embeddings=tie)
    if family == "gpt2":
        config = GPT2Config(
            n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=POSITIONS,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, summary_first_dropout=0.0, **common,
        )  # fmt: skip
    elif family == "llama":
        config = LlamaConfig(
            hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=HEADS,
            intermediate_size=FFN, max_position_embeddings=POSITIONS, rms_norm_eps=RMS_EPS,
            rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA}, attention_dropout=0.0, **common,
        )  # fmt: skip
    else:
        raise ValueError(f"family must be 'gpt2' or 'llama', not {family!r}")
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).eval()


def write_model(
    folder: Path, family: str = "llama", seed: int = 0, tie: bool = True, with_tokenizer: bool = True
) -> Path:
    """A random tiny `family` model ("gpt2" or "llama") saved in `folder` with save_pretrained (safetensors), plus
    the tokenizer files when `with_tokenizer`. `tie` ties the output layer to the embedding. Returns `folder`."""
    folder = Path(folder)
    _model(family, seed, tie).save_pretrained(folder)
    if with_tokenizer:
        write_tokenizer(folder)
    return folder


def _permute(w, n_head: int):
    """llama.cpp's convert_hf_to_gguf.py reordering of q/k rows (rotary halves -> interleaved pairs)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path: Path, seed: int = 0) -> Path:
    """The weights of write_model(..., family="llama", seed=seed, tie=True) as a llama.cpp-style GGUF file at `path`:
    F32 tensors, the Llama hyperparameters and write_tokenizer's tokenizer as GGUF metadata ("gpt2" byte-level BPE).
    transformers loads both the model and the tokenizer from it (`gguf_file=`). Returns `path`."""
    import gguf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = _model("llama", seed, tie=True).state_dict()
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, LAYERS)
    tok = json.loads(_tokenizer_json())
    tokens = sorted(tok["model"]["vocab"], key=tok["model"]["vocab"].get)
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama")
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_vocab_size(VOCAB_SIZE)
    w.add_context_length(POSITIONS)
    w.add_embedding_length(HIDDEN)
    w.add_block_count(LAYERS)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(HEADS)
    w.add_rope_dimension_count(HIDDEN // HEADS)
    w.add_rope_freq_base(ROPE_THETA)
    w.add_layer_norm_rms_eps(RMS_EPS)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t == EOS else gguf.TokenType.NORMAL for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(0)
    w.add_eos_token_id(0)
    w.add_add_bos_token(False)
    w.add_add_eos_token(False)
    for key, tensor in state.items():
        if key == "lm_head.weight":
            continue  # tied: llama.cpp leaves output.weight out, and transformers ties when it is missing
        data = tensor.detach().float().numpy()
        if key.endswith(("q_proj.weight", "k_proj.weight")):
            data = _permute(data, HEADS)  # HEADS == kv heads here
        w.add_tensor(names.get_name(key, try_suffixes=(".weight", ".bias")), data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@functools.cache
def _encoder_tokenizer_json() -> str:
    """The trained encoder tokenizer, serialized: write_tokenizer's byte-level BPE with CLS, PAD, SEP, MASK and UNK
    as ids 0-4 and a post-processor that wraps every text in "<s> ... </s>" (pairs "<s> A </s></s> B </s>", all
    token type 0, as RoBERTa does, so that a one-row token-type table fits too)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    mask = AddedToken(MASK, lstrip=True, special=True)  # as RoBERTa's: "a <mask>" takes the space before it
    specials = [CLS, PAD, SEP, mask, UNK]
    trainer = trainers.BpeTrainer(
        vocab_size=ENCODER_VOCAB_SIZE,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    ids = [tok.token_to_id(t) for t in (CLS, PAD, SEP, MASK, UNK)]
    assert ids == [0, 1, 2, 3, 4] and tok.get_vocab_size() == ENCODER_VOCAB_SIZE, (ids, tok.get_vocab_size())
    tok.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}", pair=f"{CLS} $A {SEP} {SEP} $B {SEP}", special_tokens=[(CLS, 0), (SEP, 2)]
    )
    return tok.to_str()


def write_encoder_tokenizer(folder: Path) -> None:
    """tokenizer.json, tokenizer_config.json and special_tokens_map.json in `folder`: a byte-level BPE of
    ENCODER_VOCAB_SIZE tokens trained on CORPUS with RoBERTa's special tokens, "<s>" (id 0, cls and bos), "<pad>" (1),
    "</s>" (2, sep and eos), "<mask>" (3) and "<unk>" (4); encoding with special tokens gives "<s> ... </s>"."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.json").write_text(_encoder_tokenizer_json(), encoding="utf-8")
    special = {
        "bos_token": CLS, "eos_token": SEP, "cls_token": CLS, "sep_token": SEP,
        "pad_token": PAD, "mask_token": MASK, "unk_token": UNK,
    }  # fmt: skip
    config = {"tokenizer_class": "PreTrainedTokenizerFast", **special, "model_max_length": ENCODER_POSITIONS}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")


def _encoder(family: str, seed: int, mlm_head: bool):
    """A random AutoModelForMaskedLM (or, without `mlm_head`, AutoModel) of `family`, in eval mode."""
    import torch
    from transformers import AutoModel, AutoModelForMaskedLM, BertConfig, DistilBertConfig, RobertaConfig

    common = dict(vocab_size=ENCODER_VOCAB_SIZE, pad_token_id=1, bos_token_id=0, eos_token_id=2)
    bert_like = dict(
        hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=FFN,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout=0.0, **common,
    )  # fmt: skip
    if family == "bert":
        config = BertConfig(max_position_embeddings=ENCODER_POSITIONS, type_vocab_size=2, **bert_like)
    elif family == "roberta":  # position ids run from pad + 1 = 2, so 128 tokens need 130 rows
        config = RobertaConfig(max_position_embeddings=ENCODER_POSITIONS + 2, type_vocab_size=1, **bert_like)
    elif family == "distilbert":  # DistilBERT's own names; it has no token types
        config = DistilBertConfig(
            dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS, hidden_dim=FFN, max_position_embeddings=ENCODER_POSITIONS,
            dropout=0.0, attention_dropout=0.0, qa_dropout=0.0, seq_classif_dropout=0.0, **common,
        )  # fmt: skip
    else:
        raise ValueError(f"family must be 'bert', 'roberta' or 'distilbert', not {family!r}")
    torch.manual_seed(seed)
    return (AutoModelForMaskedLM if mlm_head else AutoModel).from_config(config).eval()


def write_encoder(
    folder: Path, family: str = "bert", seed: int = 0, mlm_head: bool = True, with_tokenizer: bool = True
) -> Path:
    """A random tiny encoder of `family` ("bert", "roberta" or "distilbert") saved in `folder` with save_pretrained
    (safetensors), plus write_encoder_tokenizer's files when `with_tokenizer`. With `mlm_head` it is the
    AutoModelForMaskedLM (architectures e.g. ["BertForMaskedLM"], output layer tied to the embedding); without, the
    bare AutoModel, as sentence-embedding checkpoints are (e.g. ["BertModel"], with BERT's and RoBERTa's pooler).
    Returns `folder`."""
    folder = Path(folder)
    _encoder(family, seed, mlm_head).save_pretrained(folder)
    if with_tokenizer:
        write_encoder_tokenizer(folder)
    return folder
