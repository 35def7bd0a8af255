"""Compressed inputs (issue 36, part 6): gzip, bz2, xz (and zstd with the zstandard package), known by their first
bytes, are read as the file they hold, whatever the name says; a damaged one is a one-line input error."""

from __future__ import annotations

import bz2
import csv
import gzip
import importlib.util
import io
import json
import lzma

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SAMPLE, one_line_error
from ulmfit_cli.data.readers import open_corpus, read_table, source_of
from ulmfit_cli.errors import InputError

COMPRESS = {"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}

texts = st.lists(
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40).filter(str.strip),
    min_size=1,
    max_size=20,
)


def _table(fmt: str, rows: list[tuple[str, str]]) -> bytes:
    if fmt == "jsonl":
        return "".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows).encode()
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
    w.writerow(["text", "label"])
    w.writerows(rows)
    return buf.getvalue().encode()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=texts, kind=st.sampled_from(sorted(COMPRESS)), fmt=st.sampled_from(["csv", "tsv", "jsonl"]),
       named=st.booleans())  # fmt: skip
def test_a_compressed_table_reads_as_the_table_it_holds(tmp_path_factory, rows, kind, fmt, named):
    folder = tmp_path_factory.mktemp("z")
    labelled = [(t, f"c{i % 3}") for i, t in enumerate(rows)]
    plain = folder / f"data.{fmt}"
    plain.write_bytes(_table(fmt, labelled))
    packed = folder / (f"data.{fmt}.{kind}" if named else "data")  # unnamed: a tsv/jsonl sniffed from its content
    packed.write_bytes(COMPRESS[kind](plain.read_bytes()))
    want = read_table(source_of(plain))
    got = read_table(source_of(packed))
    assert (got.texts, got.labels) == (want.texts, want.labels)
    assert str(source_of(packed)) == str(packed)  # messages name the file as the user did


@pytest.mark.parametrize("kind", sorted(COMPRESS))
def test_a_compressed_corpus_reads_line_by_line(tmp_path, kind):
    raw = (SAMPLE / "books.txt").read_bytes()[:200_000]
    (tmp_path / "plain.txt").write_bytes(raw)
    (tmp_path / f"corpus.txt.{kind}").write_bytes(COMPRESS[kind](raw))
    want = [t for b in open_corpus(source_of(tmp_path / "plain.txt")).batches() for t in b]
    got = [t for b in open_corpus(source_of(tmp_path / f"corpus.txt.{kind}")).batches() for t in b]
    assert got == want and len(got) > 100


@pytest.mark.parametrize("kind", sorted(COMPRESS))
@pytest.mark.parametrize("keep", [0.3, 0.9])
def test_a_damaged_archive_is_one_line(ulmfit, tmp_path, kind, keep):
    data = COMPRESS[kind]((SAMPLE / "trec_train.csv").read_bytes())
    (tmp_path / f"t.csv.{kind}").write_bytes(data[: int(len(data) * keep)])
    one_line_error(ulmfit("inspect", tmp_path / f"t.csv.{kind}"), 2, f"t.csv.{kind}", "could not decompress")


def test_zstd_reads_or_says_what_it_needs(tmp_path):
    path = tmp_path / "t.csv.zst"
    if importlib.util.find_spec("zstandard") is None:
        path.write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00" * 20)
        with pytest.raises(InputError, match="needs the zstandard package"):
            source_of(path)
    else:
        import zstandard

        path.write_bytes(zstandard.ZstdCompressor().compress((SAMPLE / "trec_test.csv").read_bytes()))
        assert read_table(source_of(path)).texts == read_table(source_of(SAMPLE / "trec_test.csv")).texts


def test_a_compressed_file_through_the_cli(ulmfit, tmp_path):
    (tmp_path / "train.csv.gz").write_bytes(gzip.compress((SAMPLE / "trec_train.csv").read_bytes()))
    r = ulmfit("inspect", tmp_path / "train.csv.gz", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["files"][0]["rows"] == len(read_table(source_of(SAMPLE / "trec_train.csv")).texts)
