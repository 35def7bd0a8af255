"""Inputs to token ids: every input format read through Hugging Face `datasets` (readers), `predict`'s and
`evaluate`'s rows a batch at a time (rows), subword and fastai word tokenizers (tokenizer, words), the
memory-mapped token cache (tokencache), and LM and classifier batches (batches). No model and no training.

May import: the root modules.
"""
