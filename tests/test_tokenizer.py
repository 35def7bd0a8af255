"""Subword tokenizers: special ids, odd input, saving and reloading unchanged."""

import numpy as np
import pytest

from conftest import SAMPLE
from ulmfit_cli.tokenizer import BOS_ID, PAD_ID, encode_docs, encode_stream, load_tokenizer, train_tokenizer

LINES = [line for line in (SAMPLE / "books.txt").read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module", params=["unigram", "bpe"])
def tok(request):
    return train_tokenizer(LINES, request.param, 500, len(LINES))


def test_special_ids_match_the_model(tok):
    assert tok.token_to_id("<pad>") == PAD_ID == 1 and tok.token_to_id("<bos>") == BOS_ID
    assert tok.get_vocab_size() == 500


def test_odd_unicode_long_and_empty_lines_are_handled(tok):
    odd = [
        "",
        "   ",
        "naïve café ﬁ",
        "emoji 🤖 and RTL שלום and CJK 日本語",
        "zero\u200bwidth\u0000nul\x07bell",
        "x" * 1_000_000,
    ]
    docs = encode_docs(tok, odd)
    assert [d[0] for d in docs] == [BOS_ID] * len(odd)
    assert len(docs[0]) == 1  # an empty document is just <bos>
    assert len(docs[-1]) > 1000  # a million-character line is tokenized, not dropped
    assert all(d.dtype == np.int32 and d.max() < tok.get_vocab_size() for d in docs)


def test_stream_concatenates_documents_and_honours_max_tokens(tok):
    docs = encode_docs(tok, LINES[:50])
    stream = encode_stream(tok, LINES[:50])
    assert stream.tolist() == np.concatenate(docs).tolist()
    assert len(encode_stream(tok, LINES, max_tokens=777)) == 777


def test_saved_tokenizer_reloads_identically(tok, tmp_path):
    tok.save(str(tmp_path / "t.json"))
    again = load_tokenizer(tmp_path / "t.json")
    text = "Who wrote Hamlet ?"
    assert again.encode(text).ids == tok.encode(text).ids
    assert again.decode(again.encode(text).ids) == text


def test_bpe_training_is_repeatable():
    a = train_tokenizer(LINES, "bpe", 500, len(LINES)).to_str()
    assert all(train_tokenizer(LINES, "bpe", 500, len(LINES)).to_str() == a for _ in range(2))


def test_the_ascii_fast_path_gives_the_tokenizers_own_ids(tok):
    """ASCII texts skip the NFKC normaliser (it cannot change them); the ids must be exactly the tokenizer's."""
    from ulmfit_cli.tokenizer import encode_flat, encodings

    texts = [*LINES[:200], "ﬁne ＦＵＬＬ width café", "plain ascii", "x\u00a0y", "", "ﬁ" * 50]
    mine = [e.ids for e in encodings(tok, texts)]
    assert mine == [e.ids for e in tok.encode_batch_fast(texts, add_special_tokens=False)]
    assert mine[-5] == [e.ids for e in encodings(tok, ["fine FULL width café"])][0]  # NFKC still applies there
    flat = encode_flat(tok, texts)
    assert np.array_equal(flat, np.concatenate(encode_docs(tok, texts)))
