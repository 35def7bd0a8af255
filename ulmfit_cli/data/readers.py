"""Inputs -> texts and labels (batches of token ids: batches.py). No training and no typer here.

Every input goes through Hugging Face `datasets`: plain text (one document a line), CSV/TSV, JSON/JSONL,
Parquet, a folder written by `save_to_disk`, or a dataset on the Hub (`--dataset NAME --split SPLIT`).
Problems are found here, before any training step, and raised as InputError with the file and column named.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

TEXT_SUFFIXES = {".txt", ".text", ".tok"}
# Streaming bounds, so that memory depends on settings, never on how a corpus is broken into lines: a longer line
# is cut into pieces of at most PIECE_CHARS characters (each piece then reads as a document of its own), and a
# batch of texts holds at most BATCH_CHARS characters. Ordinary lines are far below both and read unchanged.
PIECE_CHARS = 200_000
BATCH_CHARS = 4_000_000
SAMPLE_SPLIT_CHARS, SAMPLE_UNIT_CHARS = 20_000, 300  # see Corpus.sample
TABLE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
REPLACEMENT = "\ufffd"


@dataclass(frozen=True)
class Source:
    """Where texts come from: a local path (file or saved-dataset folder), or a Hub name and split."""

    path: str | None = None
    dataset: str | None = None
    split: str = "train"
    shown: str | None = None  # the name the user gave, when `path` is a copy of it (source_of)
    # (bytes not UTF-8, the first line holding one), counted and said by source_of; None: not counted
    undecodable: tuple[int, int] | None = field(default=None, compare=False)

    def __str__(self) -> str:
        if self.shown is not None:
            return self.shown
        return self.path if self.path is not None else f"{self.dataset}[{self.split}]"


@dataclass
class Inputs:
    """What one command has read, so that it reads and says each input once: a pipe, stdin or a compressed file is
    copied once (`copies`: the user's name -> the copy), a file in another --encoding transcoded once, and the
    bytes of a file that are not UTF-8 counted and said once (`counted`), through `warn`. Each command makes its
    own (cli.common.inputs) and hands it down; nothing here outlives the command."""

    warn: Callable[[str], None] | None = None
    copies: dict[str, str] = field(default_factory=dict)
    counted: dict[str, tuple[int, int]] = field(default_factory=dict)


def source_of(path, text_col: str = "text", encoding: str | None = None, inputs: Inputs | None = None) -> Source:
    """source_of_bytes (pipes and stdin read once into a file), then the text's encoding: with `encoding` (not
    UTF-8) the file is read as that encoding into a UTF-8 copy; without, the bytes that are not UTF-8 are counted
    (Source.undecodable) and said through `inputs.warn` once per file, with the first line holding one (they are
    read as U+FFFD). Without `inputs`, nothing is shared with another call and nothing said."""
    inputs = Inputs() if inputs is None else inputs
    src = source_of_bytes(path, text_col, inputs)
    if src.path is None or not Path(src.path).is_file() or Path(src.path).suffix.lower() == ".parquet":
        return src
    name, codec = str(src), None if encoding is None else _codec(encoding)
    if codec is not None and codec != "utf-8":
        key = f"{name}\0{codec}"
        if key not in inputs.copies:
            inputs.copies[key] = _transcode(Path(src.path), name, encoding)
        return Source(path=inputs.copies[key], shown=name)
    if name not in inputs.counted:
        inputs.counted[name] = n, line = count_undecodable(Path(src.path))
        if n and inputs.warn is not None:
            inputs.warn(
                f"{name}: {n} byte(s) are not UTF-8 (the first on line {line}) and are read as U+FFFD; "
                "if the file has another encoding, give it with --encoding (e.g. --encoding latin-1)"
            )
    return dataclasses.replace(src, undecodable=inputs.counted[name])


def _codec(name: str) -> str:
    import codecs

    try:
        return codecs.lookup(name).name
    except LookupError:
        raise InputError(f"`--encoding` {name!r}: no such encoding (e.g. utf-8, latin-1, cp1252, utf-16)") from None


def count_undecodable(path: Path) -> tuple[int, int]:
    """(bytes of `path` that are not UTF-8, the 1-based line of the first), read in blocks."""
    import codecs

    found = {"n": 0, "line": 0}
    lines_before = 0

    def count(err):
        found["n"] += err.end - err.start
        if not found["line"]:
            found["line"] = lines_before + err.object[: err.start].count(b"\n") + 1
        return "\ufffd", err.end

    codecs.register_error("ulmfit-count", count)
    decoder = codecs.getincrementaldecoder("utf-8")("ulmfit-count")
    with open(path, "rb") as f:
        head = f.read(3)
        f.seek(3 if head == b"\xef\xbb\xbf" else 0)
        while block := f.read(1 << 20):
            decoder.decode(block)
            lines_before += block.count(b"\n")
        decoder.decode(b"", final=True)
    return found["n"], found["line"]


def _transcode(path: Path, name: str, encoding: str) -> str:
    """`path` read as `encoding`, written as UTF-8 into a temporary file (removed at exit)."""
    import codecs

    out = _scratch(f"input.utf8{path.suffix}")

    decoder, lines = codecs.getincrementaldecoder(encoding)("strict"), 0
    try:
        with open(path, "rb") as src, open(out, "w", encoding="utf-8", newline="") as dst:
            while True:
                block = src.read(1 << 20)
                text = decoder.decode(block, final=not block)
                dst.write(text)
                lines += text.count("\n")
                if not block:
                    break
    except UnicodeDecodeError as e:  # the line: those written, and those of this block before the bad byte
        line = lines + e.object[: e.start].decode(encoding, "replace").count("\n") + 1
        raise InputError(f"{name}: not {encoding} text (line {line}: {e.reason}); check --encoding") from None
    except UnicodeError as e:  # e.g. UTF-16 without its byte-order mark
        raise InputError(f"{name}: not {encoding} text ({e}); check --encoding") from None
    return str(out)


def source_of_bytes(path, text_col: str = "text", inputs: Inputs | None = None) -> Source:
    """A user's input as a Source. What is not a regular file or a folder (`-` for stdin, a FIFO, the /dev/fd/N of
    a shell's `<(...)`) can be read only once, and the readers read a table more than once (its header, then its
    rows): it is copied whole into a temporary file (removed at exit) and read from there, as a table when its
    first line holds the text column's name (comma- or tab-separated) or starts a JSON object, else as plain
    text. Messages still name it as the user did. `inputs` (a new one when None) keeps the copies made, so that
    one command reads each such input once."""
    import stat

    copies = (Inputs() if inputs is None else inputs).copies
    p = str(path)
    if p != "-":
        try:
            mode = os.stat(p).st_mode
        except OSError:  # missing or unreadable: the reader says which, with the path
            return Source(path=p)
        kind = _compression(p) if stat.S_ISREG(mode) else None
        if stat.S_ISDIR(mode) or (stat.S_ISREG(mode) and kind is None):
            return Source(path=p)
        if kind is not None:  # gzip, bz2, xz or zstd (by its first bytes): read from a decompressed copy
            if p not in copies:
                copies[p] = _decompress(p, kind, text_col)
            return Source(path=copies[p], shown=p)
    elif sys.stdin is None or sys.stdin.isatty():
        raise InputError("-: reads the data from standard input, which is a terminal here; pipe the data in")
    if p not in copies:
        copies[p] = _copy_once(p, text_col)
    return Source(path=copies[p], shown="stdin" if p == "-" else p)


# compressed files, known by their first bytes (as pandas and `datasets` read train.csv.gz, corpus.txt.xz, ...)
MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bz2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}
COMPRESSED_SUFFIXES = (".gz", ".gzip", ".bz2", ".xz", ".zst", ".zstd")


def _compression(p: str) -> str | None:
    try:
        with open(p, "rb") as f:
            head = f.read(6)
    except OSError:
        return None
    return next((kind for magic, kind in MAGIC.items() if head.startswith(magic)), None)


def _open_compressed(p: str, kind: str):
    if kind == "zstd":
        try:
            import zstandard
        except ModuleNotFoundError:
            raise InputError(
                f"{p}: zstd-compressed; reading it needs the zstandard package (pip install zstandard)"
            ) from None
        return zstandard.open(p, "rb")
    import bz2
    import gzip
    import lzma

    return {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}[kind](p, "rb")


def _decompress(p: str, kind: str, text_col: str) -> str:
    """A compressed file decompressed, block by block, into a temporary file (removed at exit) named for what it
    holds: the name without its compression suffix (train.csv.gz -> .csv, corpus.txt.xz -> .txt), else sniffed as
    stdin's copy is."""
    import shutil

    inner = Path(p[: -len(Path(p).suffix)] if Path(p).suffix.lower() in COMPRESSED_SUFFIXES else p).suffix.lower()
    tmp = _scratch("input")
    try:
        with _open_compressed(p, kind) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (OSError, EOFError, ValueError) as e:  # a truncated or damaged archive
        raise InputError(f"{p}: could not decompress it as {kind} ({e}); check the file") from None
    if tmp.stat().st_size == 0:
        raise InputError(f"{p}: empty once decompressed")
    suffix = inner if inner in TABLE_BUILDERS or inner == ".txt" else _sniff(tmp, text_col)
    return str(tmp.rename(tmp.with_suffix(suffix)))


def _scratch(name: str) -> Path:
    """A path `name` in a new temporary folder of this process, removed at exit."""
    import atexit
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="ulmfit-input-")
    atexit.register(shutil.rmtree, folder, True)
    return Path(folder) / name


def _copy_once(p: str, text_col: str) -> str:
    import shutil

    tmp = _scratch("input")
    try:
        with open(0 if p == "-" else p, "rb", closefd=p != "-") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except OSError as e:
        raise InputError(f"{p}: could not read it ({e.strerror or e})") from None
    if tmp.stat().st_size == 0:
        raise InputError(f"{'stdin' if p == '-' else p}: nothing came through it (empty); check the command feeding it")
    suffix = Path(p).suffix.lower() if Path(p).suffix.lower() in TABLE_BUILDERS else _sniff(tmp, text_col)
    return str(tmp.rename(tmp.with_suffix(suffix)))


def _sniff(path: Path, text_col: str) -> str:
    """.jsonl, .csv, .tsv or .txt: what the first line of `path` looks like (see source_of)."""
    import csv

    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        first = f.readline()
    if first.lstrip().startswith("{"):
        return ".jsonl"
    for suffix, sep in ((".tsv", "\t"), (".csv", ",")):
        header = next(csv.reader([first.rstrip("\r\n")], delimiter=sep), [])
        if len(header) > 1 and text_col in header:
            return suffix
    return ".txt"


@dataclass
class Table:
    texts: list[str]
    labels: list | None
    fingerprint: str
    replaced_chars: int = 0  # undecodable bytes replaced by U+FFFD
    rows: list[int] | None = None  # 0-based row of each kept text in the input (blank texts are dropped)


def quiet_datasets():
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # its "Failed to read file" lines: we raise one error
    return datasets


def check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; check the path")
    if path.is_dir():
        return
    try:
        with open(path, "rb") as f:
            head = f.read(8192)
    except OSError as e:
        raise InputError(f"{path}: cannot read it ({e.strerror}); check its permissions") from None
    if b"\x00" in head and not path.suffix.lower() == ".parquet":
        raise InputError(
            f"{path}: looks like a binary file (NUL bytes), not text; give a text, CSV, JSON or Parquet file"
        )


def load(source: Source):
    """A `datasets.Dataset` for `source`, and a fingerprint of its content."""
    datasets = quiet_datasets()
    if source.dataset is not None:  # needs the network (or a warm HF cache); not reachable in tests
        try:
            ds = datasets.load_dataset(source.dataset, split=source.split)
        except Exception as e:  # noqa: BLE001 - the Hub raises many kinds; all mean "could not get it"
            raise InputError(f"--dataset {source.dataset} --split {source.split}: could not load it ({e})") from None
        return ds, ds._fingerprint
    path = Path(source.path)
    check_file(path)
    if path.is_dir():
        if not (path / "dataset_info.json").exists() and not (path / "state.json").exists():
            raise InputError(f"{path}: a folder, but not one written by `save_to_disk`; give a file instead")
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if "train" not in ds:
                raise InputError(f"{path}: a DatasetDict without a 'train' split ({', '.join(ds)})")
            ds = ds["train"]
        return ds, ds._fingerprint
    suffix = path.suffix.lower()
    fingerprint = file_fingerprint(path)
    with parse_errors(path):
        if suffix in TABLE_BUILDERS:
            ds = datasets.load_dataset(
                TABLE_BUILDERS[suffix], data_files=str(path), split="train", **table_kwargs(path)
            )
        else:  # anything else is read as plain text, one document a line
            ds = datasets.load_dataset("text", data_files=str(path), split="train", encoding_errors="replace")
    return ds, fingerprint


def table_kwargs(path: Path) -> dict:
    """How `datasets` reads a table file: tabs for .tsv; in CSV and TSV undecodable bytes replaced and every cell
    read as text (_csv_as_strings)."""
    suffix = path.suffix.lower()
    kwargs = {"sep": "\t"} if suffix == ".tsv" else {}
    if suffix in (".csv", ".tsv"):
        kwargs.update(encoding_errors="replace", **_csv_as_strings(path, kwargs.get("sep", ",")))
    return kwargs


@contextmanager
def parse_errors(path: Path):
    """A file that `datasets` (pandas, pyarrow) cannot read or parse becomes one InputError naming it and the
    format; around a streamed read too, where parse errors come while iterating."""
    kind = TABLE_BUILDERS.get(path.suffix.lower(), "text")
    try:
        yield
    except (ValueError, OSError) as e:
        words = str(e).strip().splitlines()
        raise InputError(f"{path}: could not read it as {kind} ({words[0] if words else type(e).__name__})") from None
    except Exception as e:  # noqa: BLE001 - pyarrow/pandas parse errors have no common base class
        if type(e).__module__.split(".")[0] in ("pyarrow", "pandas", "datasets"):
            for _ in range(10):  # datasets' "An error occurred while generating the dataset" wraps the parser's own
                if (e.__cause__ or e.__context__) is None:  # words ("Expected 2 fields in line 3, saw 3")
                    break
                e = e.__cause__ or e.__context__
            raise InputError(
                f"{path}: could not parse it as {kind} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
            ) from None
        raise


def _csv_as_strings(path: Path, sep: str) -> dict:
    """Read every CSV cell as the text it is: "NA", "null" or "nan" are texts (and labels) like any other, not
    missing values, and a label "01" stays "01" (pandas would make it 1). An empty cell is still empty."""
    import csv

    import datasets

    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        rows = csv.reader(f, delimiter=sep)
        header, first = next(rows, None), next(rows, None)
        if header and first and len(first) > len(header):  # pandas would make the extra leading cells an index and
            raise InputError(  # shift every column (texts read from the labels); later rows it refuses itself
                f"{path}: line {rows.line_num} has {len(first)} fields but the header has {len(header)} "
                f"({', '.join(header)}); quote the texts that hold {'a tab' if sep == chr(9) else 'a comma'}"
            )
    twice = sorted({c for c in header or [] if header.count(c) > 1})
    if twice:  # pandas would rename the second 'text' to 'text.1' and read the first without a word
        raise InputError(
            f"{path}: column name(s) {', '.join(map(repr, twice))} appear more than once in the header; "
            "rename them so each column has its own name"
        )
    if not header:  # no header: let pandas say what it does
        return {"keep_default_na": False}
    return {"keep_default_na": False, "features": datasets.Features({c: datasets.Value("string") for c in header})}


def file_fingerprint(path: Path) -> str:
    from .tokenizer import file_sha256

    return "sha256:" + file_sha256(path)


def read_texts(source: Source, text_col: str = "text") -> Table:
    return read_table(source, text_col, None)


def read_raw(source: Source, text_col: str = "text", label_col: str | None = "label", need_label: bool = True):
    """Every row of `source` as read, blank texts and missing labels kept: (texts, labels or None, fingerprint,
    column names). Without `need_label`, a missing label column gives labels None instead of an error."""
    ds, fingerprint = load(source)
    cols = ds.column_names
    if label_col is not None and label_col not in cols and not need_label:
        label_col = None
    for col, flag in ((text_col, "--text-col"), (label_col, "--label-col")):
        if col is not None and col not in cols:
            raise InputError(f"{source}: no column {col!r} (columns: {', '.join(cols)}); choose one with {flag}")
    texts = ["" if t is None else str(t) for t in _column(ds, text_col)]
    labels = _column(ds, label_col) if label_col is not None else None
    return texts, labels, fingerprint, cols


def _column(ds, col: str) -> list:
    """A column's values as Python objects, read off the pyarrow table (converting a column at once is far faster
    than row by row), JSON columns decoded (decode_json)."""
    return decode_json(ds.features, col, ds.data.column(col).to_pylist())


def decode_json(features, col: str, values: list) -> list:
    """`values` of column `col` read straight off the Arrow data, decoded where `features` says the column is
    JSON: one whose values mix types (1 and "x", a list and a string), which `datasets` keeps as JSON text ('"x"').
    Decoded as `datasets` decodes it for its streamed rows, so training, predict and evaluate all see x, not "x"
    in quotes. Its encoding keeps a string that is itself valid JSON ("0", "[1]") as that JSON, so such a string
    comes back as the value it spells."""
    import datasets

    json_type = getattr(datasets, "Json", None)  # where datasets has no Json type, mixed types fail to parse
    feature = features.get(col)
    if json_type is not None and isinstance(feature, json_type):
        return [feature.decode_example(v) for v in values]
    return values


def read_table(source: Source, text_col: str = "text", label_col: str | None = "label") -> Table:
    """Texts (and labels, when `label_col`) of `source`, with empty texts dropped.

    Raises InputError for an unknown column, no usable text, or missing labels, naming the file.
    """
    texts, labels, fingerprint, _ = read_raw(source, text_col, label_col)
    keep = [i for i, t in enumerate(texts) if t.strip()]
    if not keep:
        raise InputError(f"{source}: no usable text in column {text_col!r} (empty file or only blank lines)")
    if labels is not None:
        missing = [i for i in keep if labels[i] is None or str(labels[i]).strip() == ""]
        if missing:
            raise InputError(
                f"{source}: {len(missing)} row(s) have no label in column {label_col!r} (first at "
                f"row {missing[0] + 1}); fill or drop them"
            )
        labels = [labels[i] for i in keep]
    if len(keep) < len(texts):
        texts = [texts[i] for i in keep]
    replaced = sum(t.count(REPLACEMENT) for t in texts)
    if replaced and replaced >= sum(len(t) for t in texts) // 2:
        raise InputError(f"{source}: most of it is not UTF-8 text ({replaced} undecodable bytes); convert it to UTF-8")
    return Table(texts, labels, fingerprint, replaced, keep)


# ---- corpora, streamed ----------------------------------------------------------------------------------


@dataclass
class Corpus:
    """A language-model corpus read in batches of texts, never whole, so memory does not grow with its size.

    A plain text file is read directly, line by line (a datasets Arrow copy of a big corpus would cost its size in
    disk and, once read, in resident pages); tables and datasets go through `datasets` and are read a batch of
    rows at a time. Blank texts are skipped, as in `read_table`.
    """

    source: Source
    text_col: str
    fingerprint: str
    _ds: object = field(default=None, repr=False)  # datasets.Dataset, or None for a text file
    replaced_chars: int = 0  # undecodable bytes replaced by U+FFFD, counted by the last full pass

    def batches(self, size: int = 10_000) -> Iterator[list[str]]:
        """Lists of at most `size` non-blank texts and about BATCH_CHARS characters; longer texts come in pieces."""
        self.replaced_chars = 0
        batch, chars = [], 0
        for raw in self._raw_batches(size):
            for text in raw:
                for piece in cut_long(text):
                    if not piece.strip():
                        continue
                    self.replaced_chars += piece.count(REPLACEMENT)
                    batch.append(piece)
                    chars += len(piece)
                    if len(batch) == size or chars >= BATCH_CHARS:
                        yield batch
                        batch, chars = [], 0
        if batch:
            yield batch

    def _raw_batches(self, size: int) -> Iterator[list[str]]:
        if self._ds is None:
            with open(self.source.path, encoding="utf-8", errors="replace") as f:
                batch = []
                for line in _bounded_lines(f):  # a huge line comes in pieces, never whole
                    batch.append(line)
                    if len(batch) == size:
                        yield batch
                        batch = []
                if batch:
                    yield batch
            return
        for record in self._ds.data.to_batches(max_chunksize=size):
            yield ["" if t is None else str(t) for t in record.column(self.text_col).to_pylist()]

    def count(self) -> int:
        """Non-blank texts (one pass)."""
        return sum(len(b) for b in self.batches())

    def sample(self, n: int) -> list[str]:
        """About `n` texts spread evenly over the corpus (every k-th), not just its first books. A text longer than
        SAMPLE_SPLIT_CHARS (a book on one line) counts as the lines of prose it holds, pieces of SAMPLE_UNIT_CHARS,
        so the sample's size follows `n`, not how the corpus is broken into lines."""
        step = max(1, sum(len(b) for b in self._sample_units()) // n)
        out, i = [], 0
        for batch in self._sample_units():
            out += batch[(-i) % step :: step]
            i += len(batch)
        return out

    def _sample_units(self) -> Iterator[list[str]]:
        for batch in self.batches():
            if any(len(t) > SAMPLE_SPLIT_CHARS for t in batch):
                batch = [
                    u for t in batch for u in (cut_long(t, SAMPLE_UNIT_CHARS) if len(t) > SAMPLE_SPLIT_CHARS else [t])
                ]
            yield batch

    def check(self) -> None:
        """Fail early, before any training, on a corpus without text or of mostly undecodable bytes."""
        total = replaced = 0
        for batch in self.batches():  # only as far as the first batch with text
            total, replaced = sum(len(t) for t in batch), self.replaced_chars
            break
        if not total:
            raise InputError(
                f"{self.source}: no usable text in column {self.text_col!r} (empty file or only blank lines)"
            )
        if replaced >= total // 2:
            raise InputError(
                f"{self.source}: most of it is not UTF-8 text ({replaced} undecodable bytes); convert it to UTF-8"
            )


def cut_long(text: str, limit: int = PIECE_CHARS) -> list[str]:
    """`text` in pieces of at most `limit` characters, each cut before a space (a piece then starts with the
    space, so a Metaspace tokenizer gives it the ids it had inside the whole text) in the last quarter of the
    bound, or hard at the bound when there is none. Texts up to `limit` come back whole."""
    if len(text) <= limit:
        return [text]
    pieces, start = [], 0
    while len(text) - start > limit:
        end = text.rfind(" ", start + limit * 3 // 4, start + limit)
        if end <= start:
            end = start + limit
        pieces.append(text[start:end])
        start = end
    pieces.append(text[start:])
    return pieces


def text_head(text: str, limit: int = PIECE_CHARS) -> str:
    """The start of `text` up to `limit` characters, cut before a space as `cut_long` cuts (the whole text when
    shorter): what a reader that keeps only a document's first tokens needs to encode."""
    return text if len(text) <= limit else cut_long(text[: limit + 1], limit)[0]


def _bounded_lines(f) -> Iterator[str]:
    """The lines of text file `f` without their line ends, a line longer than PIECE_CHARS as pieces of one (see
    `cut_long`): a read holds at most PIECE_CHARS characters, plus what is left of the previous one after its
    last space, so memory never holds more than twice PIECE_CHARS of a line."""
    carry = ""
    while part := f.readline(PIECE_CHARS):
        if part.endswith("\n"):
            yield from cut_long(carry + part.rstrip("\r\n"))
            carry = ""
            continue
        text = carry + part  # an unfinished line: cut before its last space, keep the rest for the next read
        cut = text.rfind(" ")
        if cut > 0:
            yield from cut_long(text[:cut])
            carry = text[cut:]
        elif len(text) >= PIECE_CHARS:  # no space to cut at: hard cuts
            yield from cut_long(text)
            carry = ""
        else:
            carry = text
    if carry:
        yield from cut_long(carry)


def open_corpus(source: Source, text_col: str = "text") -> Corpus:
    """A streamed corpus for `source`; the file, its format and the column are checked, the text not yet read."""
    if source.path is not None and Path(source.path).suffix.lower() not in TABLE_BUILDERS:
        path = Path(source.path)
        check_file(path)
        if not path.is_dir():
            corpus = Corpus(source, text_col, file_fingerprint(path))
            corpus.check()
            return corpus
    ds, fingerprint = load(source)
    if text_col not in ds.column_names:
        raise InputError(
            f"{source}: no column {text_col!r} (columns: {', '.join(ds.column_names)}); choose one with --text-col"
        )
    corpus = Corpus(source, text_col, fingerprint, ds)
    corpus.check()
    return corpus
