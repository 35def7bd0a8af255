"""Data readers for each format, and the batching that feeds the models."""

import csv
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ulmfit_cli.data.batches import LMStream, classifier_batches, pad_chunks, split_valid
from ulmfit_cli.data.readers import Source, read_table, read_texts
from ulmfit_cli.errors import InputError

ROWS = [("What is the capital of France ?", "LOC"), ("Who wrote Hamlet ?", "HUM"), ("How far is the moon ?", "NUM")]


@pytest.fixture(autouse=True)
def _hf_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def _write(path, fmt):
    if fmt in ("csv", "tsv"):
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, delimiter="," if fmt == "csv" else "\t")
            w.writerow(["text", "label"])
            w.writerows(ROWS)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in ROWS), encoding="utf-8")
    elif fmt == "json":
        path.write_text(json.dumps([{"text": t, "label": y} for t, y in ROWS]), encoding="utf-8")
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"text": [t for t, _ in ROWS], "label": [y for _, y in ROWS]}), path)
    return Source(path=str(path))


@pytest.mark.parametrize("fmt", ["csv", "tsv", "json", "jsonl", "parquet"])
def test_tables_in_every_format(tmp_path, fmt):
    t = read_table(_write(tmp_path / f"d.{fmt}", fmt))
    assert t.texts == [r[0] for r in ROWS]
    assert t.labels == [r[1] for r in ROWS]
    assert t.fingerprint.startswith("sha256:")


_WORD = st.text("abxyz '.", min_size=1, max_size=6).filter(str.strip)  # never JSON itself (see data._column)
_LABEL = st.one_of(st.integers(-5, 99), _WORD, st.lists(_WORD, min_size=1, max_size=3))


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=st.lists(st.tuples(st.one_of(_WORD, st.integers(0, 9)), _LABEL), min_size=2, max_size=8))
def test_jsonl_with_mixed_types_reads_the_values_as_written(tmp_path, rows):
    """A JSON-lines column mixing types (1 and "x", a list and a string) comes back as its values, never as JSON
    text ("x" in quotes): the same from read_table (training) as from the streamed rows of predict/evaluate, from
    the file and from a `save_to_disk` copy of it. (A string that is itself JSON, "0" beside 0, reads as that JSON:
    `datasets` keeps no difference.)"""
    import datasets

    from ulmfit_cli.data.rows import table_batches

    path = tmp_path / f"mixed-{abs(hash(repr(rows)))}.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows), encoding="utf-8")
    table = read_table(Source(path=str(path)))
    assert table.texts == [str(t) for t, _ in rows]
    assert table.labels == [y for _, y in rows]
    streamed = [v for b in table_batches(Source(path=str(path)), ["label"], ["--label-col"], 3) for v in b["label"]]
    assert streamed == table.labels
    saved = tmp_path / path.stem  # the same rows saved with `save_to_disk`: read whole, and streamed from Arrow
    datasets.load_dataset("json", data_files=str(path), split="train").save_to_disk(str(saved))
    assert read_table(Source(path=str(saved))).labels == table.labels
    from_disk = [v for b in table_batches(Source(path=str(saved)), ["label"], ["--label-col"], 3) for v in b["label"]]
    assert from_disk == table.labels


def test_save_to_disk_folder(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"body": [r[0] for r in ROWS], "y": [r[1] for r in ROWS]}).save_to_disk(tmp_path / "ds")
    t = read_table(Source(path=str(tmp_path / "ds")), "body", "y")
    assert t.texts[1] == "Who wrote Hamlet ?" and t.labels[2] == "NUM"


def test_plain_text_one_document_a_line_blank_lines_dropped(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("first line\n\n   \nsecond  line, with é and 日本\n", encoding="utf-8")
    assert read_texts(Source(path=str(p))).texts == ["first line", "second  line, with é and 日本"]


def test_non_utf8_bytes_are_replaced_and_counted(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes("caf\xe9 au lait\nna\xefve\n".encode("latin-1"))
    t = read_texts(Source(path=str(p)))
    assert t.replaced_chars == 2 and t.texts[0] == "caf\ufffd au lait"


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(bad=st.integers(0, 5), extra=st.integers(1, 3))
def test_a_csv_row_with_extra_fields_is_named_by_its_line(tmp_path, capfd, bad, extra):
    """Not datasets' "An error occurred while generating the dataset": the parser's own words, which name the line
    (counting the header) and the fields found; the same when predict/evaluate stream the file. In the first row,
    where pandas would take the extra cells for an index and shift every column, we say it ourselves."""
    from ulmfit_cli.data.rows import table_batches

    rows = [[f"question {i} ?", "A"] + (["x"] * extra if i == bad else []) for i in range(6)]
    path = tmp_path / f"extra-{bad}-{extra}.csv"
    path.write_text("text,label\n" + "".join(",".join(r) + "\n" for r in rows), encoding="utf-8")
    words = rf"could not (parse|read) it as csv .*Expected 2 fields in line {bad + 2}, saw {2 + extra}"
    if bad == 0:  # the first row, where pandas would not complain but shift the columns: found before it reads
        words = rf"line 2 has {2 + extra} fields but the header has 2 \(text, label\); quote the texts"
    with pytest.raises(InputError, match=words):
        read_table(Source(path=str(path)))
    with pytest.raises(InputError, match=words):
        list(table_batches(Source(path=str(path)), ["text"], ["--text-col"], 2))
    assert "Failed to read" not in capfd.readouterr().err  # datasets' own log line: the one error says it all


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_text("\n\n  \n"), "no usable text"),
        (lambda p: p.write_bytes(b"\x7fELF\x00\x00\x01\x02" * 100), "binary"),
        (lambda p: p.write_bytes(bytes(range(128, 256)) * 50), "not UTF-8"),
    ],
    ids=["missing", "empty", "binary", "undecodable"],
)
def test_unusable_files(tmp_path, make, message):
    p = tmp_path / "x.txt"
    make(p)
    with pytest.raises(InputError, match=message):
        read_texts(Source(path=str(p)))


def test_unknown_column_lists_the_columns(tmp_path):
    src = _write(tmp_path / "d.csv", "csv")
    with pytest.raises(InputError, match=r"no column 'sentence' \(columns: text, label\).*--text-col"):
        read_table(src, "sentence", "label")


def test_missing_label_names_the_row(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("text,label\nfine,A\nno label here,\n", encoding="utf-8")
    with pytest.raises(InputError, match="1 row\\(s\\) have no label.*row 2"):
        read_table(Source(path=str(p)))


def test_lm_stream_rows_are_contiguous_across_batches():
    ids = np.arange(1000, dtype=np.int32)
    s = LMStream(ids, bs=4, bptt=10)
    batches = list(s.batches(offset=3))
    assert len(batches) == len(s)
    x = np.concatenate([b[0].numpy() for b in batches], axis=1)
    y = np.concatenate([b[1].numpy() for b in batches], axis=1)
    assert (y == x + 1).all()  # targets are the next token
    assert (np.diff(x, axis=1) == 1).all()  # each row reads the stream left to right
    assert x[0, 0] == 3 and x[1, 0] == 3 + s.row_len  # rows start one row length apart, after the offset


def test_pad_chunks_puts_whole_chunks_of_padding_first():
    out = pad_chunks([np.array([5, 6, 7, 8, 9, 10, 11]), np.array([5, 6])], pad_id=1, bptt=3)
    assert out.tolist() == [[5, 6, 7, 8, 9, 10, 11, 1, 1], [1, 1, 1, 1, 1, 1, 5, 6, 1]]


@pytest.mark.parametrize("lens", [[7, 5, 4], [9, 8, 3, 1], [5, 5, 2], [4, 1, 1]])
def test_pad_chunks_the_rows_reading_each_chunk_are_the_first(lens):
    """What SentenceEncoder assumes: at each chunk start, the rows with text are the first ones, and a row keeps
    reading from its first chunk to the end (with [7, 5, 4] and bptt 3, fastai's width of 7 broke both)."""
    out = pad_chunks([np.arange(n) + 2 for n in lens], pad_id=1, bptt=3)
    for i in range(0, out.shape[1], 3):
        reading = out[:, i] != 1
        assert reading.tolist() == sorted(reading.tolist(), reverse=True)
    for row, n in zip(out, lens):
        start = int(np.argmax(row != 1))
        assert start % 3 == 0 and (row[start : start + n] == np.arange(n) + 2).all() and out.shape[1] - start - n < 3


def test_classifier_batches_cover_everything_once_and_sort_each_batch():
    docs = [np.arange(n) + 2 for n in [3, 9, 1, 4, 7, 2, 8]]
    labels = np.arange(7)
    seen = []
    for idx, x, y in classifier_batches(docs, labels, 3, 4, 1, np.random.default_rng(0)):
        lens = [len(docs[i]) for i in idx]
        assert x.shape == (len(idx), -(-max(lens) // 4) * 4)  # the longest document, in whole chunks
        assert lens == sorted(lens, reverse=True)
        assert y.tolist() == idx.tolist()
        seen += idx.tolist()
    assert sorted(seen) == list(range(7))


def test_split_valid_is_seeded_and_disjoint():
    tr, va = split_valid(100, 0.1, 42)
    assert len(va) == 10 and not set(tr) & set(va)
    assert split_valid(100, 0.1, 42)[1].tolist() == va.tolist()
