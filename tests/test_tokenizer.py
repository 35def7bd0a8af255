"""Subword tokenizers: special ids, odd input, saving and reloading unchanged."""

import numpy as np
import pytest

from conftest import SAMPLE
from ulmfit_cli.data.tokenizer import BOS_ID, PAD_ID, encode_docs, encode_stream, load_tokenizer, train_tokenizer

LINES = [line for line in (SAMPLE / "books.txt").read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module", params=["unigram", "bpe"])
def tok(request):
    return train_tokenizer(LINES, request.param, 500)


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
    a = train_tokenizer(LINES, "bpe", 500).to_str()
    assert all(train_tokenizer(LINES, "bpe", 500).to_str() == a for _ in range(2))


def test_the_ascii_fast_path_gives_the_tokenizers_own_ids(tok):
    """ASCII texts skip the NFKC normaliser (it cannot change them); the ids must be exactly the tokenizer's."""
    from ulmfit_cli.data.tokenizer import encodings

    texts = [*LINES[:200], "ﬁne ＦＵＬＬ width café", "plain ascii", "x\u00a0y", "", "ﬁ" * 50]
    mine = [e.ids for e in encodings(tok, texts)]
    assert mine == [e.ids for e in tok.encode_batch_fast(texts, add_special_tokens=False)]
    assert mine[-5] == [e.ids for e in encodings(tok, ["fine FULL width café"])][0]  # NFKC still applies there


def _reference_stream(tok, texts):
    """What the LM stream must be: <bos>, then the tokenizer's own ids, for every text."""
    return np.array([i for t in texts for i in [BOS_ID, *tok.encode(t, add_special_tokens=False).ids]], np.int32)


def _odd_texts(seed: int, n: int) -> list[str]:
    """Texts made to break a word table: runs of spaces at either end, tabs and newlines inside words, the '▁'
    marker itself, special tokens' text (raw and full-width), characters NFKC rewrites or that Python's Unicode
    tables do not know, emoji, NUL, and empty texts."""
    rng = np.random.default_rng(seed)
    parts = [*"abcdefgh", " ", "  ", "\t", "\n", "Hamlet", "the", "’s", ",", "."]
    parts += ["\u2581", "<bos>", "<unk>", "＜bos＞", "<", "ﬁ", "Ｗ", "é", "e\u0301", "\u00a0", "\u3000"]
    parts += ["\u0378", "\U0001f916", "\U00020000", "日本", "\x00"]
    out = []
    for _ in range(n):
        out.append("".join(rng.choice(parts, size=int(rng.integers(0, 12)))))
    return out


def test_the_word_table_gives_exactly_the_tokenizers_ids(tok):
    """StreamEncoder (the token cache's encoder) looks words up in a table instead of calling the tokenizer per
    text; on real text and on texts made to break it, in several chunks, its stream is the tokenizer's own."""
    from ulmfit_cli.data.tokenizer import StreamEncoder

    encode = StreamEncoder(tok)
    assert encode.table == "nfkc"
    chunks = [LINES[:300], _odd_texts(0, 400), LINES[300:], _odd_texts(1, 400), ["", " ", "  x  ", "\u2581a b"]]
    for texts in chunks:
        assert np.array_equal(encode(texts), _reference_stream(tok, texts))
    assert len(encode.row) > 1000  # the table was used, and kept between chunks
    assert encode([]).dtype == np.int32 and len(encode([])) == 0


def test_a_full_word_table_starts_again_and_stays_exact(tok):
    from ulmfit_cli.data.tokenizer import StreamEncoder

    encode = StreamEncoder(tok, max_words=200)
    for i in range(0, 400, 100):
        texts = LINES[i : i + 100]
        assert np.array_equal(encode(texts), _reference_stream(tok, texts))
        assert len(encode.row) <= max(200, len(set(" ".join(texts).split(" "))) + 101)


def test_the_word_table_falls_back_when_word_boundaries_are_not_visible(tok):
    """If the tokens that begin a word could not be told from the others, each word is encoded on its own."""
    from ulmfit_cli.data.tokenizer import StreamEncoder

    encode = StreamEncoder(tok)
    encode.starts_word[:] = False
    texts = [*LINES[:100], *_odd_texts(2, 100)]
    assert np.array_equal(encode(texts), _reference_stream(tok, texts))


def test_tokenizers_of_another_shape_are_encoded_directly():
    """A word table is only used where it is exact: not for a whitespace-split tokenizer, nor BPE with dropout."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from ulmfit_cli.data.tokenizer import StreamEncoder

    bpe = train_tokenizer(LINES, "bpe", 500)
    other = Tokenizer.from_str(bpe.to_str())
    other.pre_tokenizer = pre_tokenizers.Whitespace()
    dropout = Tokenizer.from_str(bpe.to_str())
    dropout.model = models.BPE(*models.BPE.read_file(*_vocab_merges(bpe)), dropout=0.5, unk_token="<unk>")
    for t in (other, dropout):
        encode = StreamEncoder(t)
        assert encode.table is None
        if t is other:
            assert np.array_equal(encode(LINES[:50]), _reference_stream(t, LINES[:50]))


def _vocab_merges(bpe):
    import tempfile

    d = tempfile.mkdtemp()
    return bpe.model.save(d)


def test_nfkc_leaves_characters_python_does_not_know_to_the_tokenizers_normaliser():
    """Python's NFKC is used only where it must agree with the Rust one: text of characters assigned in Python's
    Unicode version (stable by Unicode's policy). Anything else is normalised by the tokenizer's own normaliser."""
    from tokenizers import normalizers

    from ulmfit_cli.data.tokenizer import _nfkc

    rust, asked = normalizers.NFKC(), []

    class Spy:
        def normalize_str(self, text):
            asked.append(text)
            return rust.normalize_str(text)

    known = ["ﬁne ＦＵＬＬ", "café e\u0301", "\U0001f916 robot", "日本語 \u3000x"]
    unknown = ["a\u0378b", "\U00020000", "x \U000e0001", "\U0001f916\u0378"]
    for text in known + unknown:
        assert _nfkc(text, Spy()) == rust.normalize_str(text)
    assert asked == unknown
