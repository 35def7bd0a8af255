"""Inputs of `predict` and `evaluate`, read a batch of rows at a time: memory stays flat in the number of rows,
and each batch can be answered before the next is read.

Every row is kept, blank texts too (the caller decides what a blank text gets), so outputs line up with inputs.
Plain text (stdin, a file, a pipe) is one document a line, read with `os.read` and `select`, without `datasets`,
so that `echo text | ulmfit predict RUN -` starts fast and `tail -f log | ulmfit predict RUN -` answers each
line soon after it arrives. Tables go through `datasets` streaming (the same parsers, and so the same values, as
training's reads, without an Arrow copy on disk); saved datasets and Hub datasets through data.load.
"""

from __future__ import annotations

import os
import select
import stat
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from ..errors import InputError
from .readers import TABLE_BUILDERS, Source, check_file, decode_json, load, parse_errors, quiet_datasets, table_kwargs

READ_SIZE = 1 << 16  # bytes per os.read


class _Lines:
    """Lines of a file descriptor, decoded as UTF-8 (undecodable bytes replaced), without their line ends. Reads
    only when no complete line is left, so it holds at most one read's worth of lines plus one partial line."""

    def __init__(self, fd: int, encoding: str | None = None, name: str = "stdin", warn=None):
        self.fd, self.lines, self.partial, self.eof, self.warn = fd, deque(), [], False, warn
        self.encoding, self.name = encoding or "utf-8", name
        self.line_no, self.bad, self.first_bad = 0, 0, 0  # bytes that were not UTF-8 (no --encoding), for a warning

    def next(self, timeout: float | None) -> str | None:
        """The next line; None at the end of the input, or when none came within `timeout` seconds (None: wait)."""
        while not self.lines:
            if self.eof:
                if self.bad and self.warn is not None:  # said once, at the end (as data.source_of says it for a file)
                    self.warn(
                        f"{self.name}: {self.bad} byte(s) were not UTF-8 (the first on line {self.first_bad}) "
                        "and were read as U+FFFD; if the input has another encoding, give it with --encoding"
                    )
                    self.bad = 0
                return None
            if timeout is not None and not select.select([self.fd], [], [], max(timeout, 0.0))[0]:
                return None
            chunk = os.read(self.fd, READ_SIZE)
            if not chunk:  # end of input: a last line without its newline still counts
                self.eof = True
                if self.partial:
                    self.lines.append(b"".join(self.partial))
                    self.partial = []

            elif b"\n" not in chunk:
                self.partial.append(chunk)
            else:
                parts = b"".join([*self.partial, chunk]).split(b"\n")
                last = parts.pop()  # the start of a line still to come, or b"" after a newline
                self.partial = [last] if last else []
                self.lines.extend(parts)
        raw = self.lines.popleft()
        self.line_no += 1
        try:
            line = raw.decode(self.encoding)
        except UnicodeDecodeError:
            line = raw.decode(self.encoding, "replace")
            if self.encoding == "utf-8":
                self.bad += _undecodable(raw)
                self.first_bad = self.first_bad or self.line_no
        return line[:-1] if line.endswith("\r") else line


def _undecodable(raw: bytes) -> int:
    """How many bytes of `raw` are not UTF-8."""
    n = 0
    while raw:
        try:
            raw.decode("utf-8")
            break
        except UnicodeDecodeError as e:
            n += e.end - e.start
            raw = raw[e.end :]
    return n


def line_batches(
    fd: int, size: int, max_wait: float | None, encoding: str | None = None, name: str = "stdin", warn=None
) -> Iterator[list[str]]:
    """Lines of `fd` in batches of at most `size`. A batch goes out when full, at the end of the input, or
    `max_wait` seconds after its first line arrived (None: only when full or at the end), so slow input is
    answered line by line while a flood of lines fills whole batches."""
    lines = _Lines(fd, encoding, name, warn)
    while (first := lines.next(None)) is not None:
        batch, deadline = [first], None if max_wait is None else time.monotonic() + max_wait
        while len(batch) < size:
            line = lines.next(None if deadline is None else deadline - time.monotonic())
            if line is None:
                break
            batch.append(line)
        yield batch


def is_plain_text(source: Source) -> bool:
    """Read line by line (not a table, a saved dataset or a Hub dataset)."""
    if source.path is None or Path(source.path).suffix.lower() in TABLE_BUILDERS:
        return False
    return source.path == "-" or not Path(source.path).is_dir()


def text_batches(
    source: Source, size: int, max_wait: float | None = None, encoding: str | None = None, warn=None
) -> Iterator[list[str]]:
    """The lines of stdin (path '-') or of a plain-text file, FIFO or device, in batches (see line_batches); the
    path is checked now, before the first batch is asked for. `warn(message)` hears of bytes that are not UTF-8."""
    if source.path == "-":  # stdin: decoded as --encoding says (files come here as UTF-8 copies: source_of)
        return line_batches(0, size, max_wait, encoding, warn=warn)
    path = Path(source.path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; check the path")
    if stat.S_ISREG(path.stat().st_mode):  # a pipe's first bytes cannot be peeked at without losing them
        check_file(path)
    return _file_lines(path, size, max_wait, warn)


def _file_lines(path: Path, size: int, max_wait: float | None, warn=None) -> Iterator[list[str]]:
    fd = os.open(path, os.O_RDONLY)
    try:
        yield from line_batches(fd, size, max_wait, name=str(path), warn=warn)
    finally:
        os.close(fd)


def table_batches(source: Source, columns: list[str], flags: list[str], size: int) -> Iterator[dict[str, list]]:
    """Batches of rows of `source` as {column: values} for `columns`. The first batch is read now, so that a
    missing file or column (named with its flag in `flags`) is an error before any other work. A plain-text file
    is one column, 'text'."""
    batches = _raw_batches(source, size)
    first = next(batches, None)
    found = list(first) if first is not None else []
    for col, flag in zip(columns, flags):
        if first is not None and col not in found:
            raise InputError(f"{source}: no column {col!r} (columns: {', '.join(found)}); choose one with {flag}")
    return _columns(first, batches, columns)


def _columns(first: dict | None, rest: Iterator[dict], columns: list[str]) -> Iterator[dict[str, list]]:
    if first is None:
        return
    yield {c: first[c] for c in columns}
    for batch in rest:
        yield {c: batch[c] for c in columns}


def _raw_batches(source: Source, size: int) -> Iterator[dict[str, list]]:
    if is_plain_text(source):
        for lines in text_batches(source, size):
            yield {"text": lines}
        return
    path = None if source.path is None else Path(source.path)
    if path is not None and path.suffix.lower() in TABLE_BUILDERS and not path.is_dir():
        check_file(path)
        datasets = quiet_datasets()
        with parse_errors(path):
            ds = datasets.load_dataset(
                TABLE_BUILDERS[path.suffix.lower()],
                data_files=str(path),
                split="train",
                streaming=True,
                **table_kwargs(path),
            )
            yield from ds.iter(batch_size=size)
        return
    ds, _ = load(source)  # a saved dataset (memory-mapped Arrow) or a Hub dataset (cached by datasets)
    for record in ds.data.to_batches(max_chunksize=size):
        yield {col: decode_json(ds.features, col, values) for col, values in record.to_pydict().items()}
