"""Text that is not UTF-8 (issue 27, case 4): every command that reads text counts the bytes that are not UTF-8
and says so once per file on stderr, with the count and the first line holding one; `--encoding NAME` reads the
file as that encoding, exactly; `inspect` reports the count and suggests the flag."""

from __future__ import annotations

import csv
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

WORDS = ["café", "naïve", "résumé", "déjà vu", "smörgåsbord", "über", "façade", "jalapeño", "Zürich", "crème"]


def _latin1_table(path, n=60):
    rows = [(f"what is a {WORDS[i % len(WORDS)]} ?", "DESC" if i % 2 else "ENTY") for i in range(n)]
    with open(path, "w", newline="", encoding="latin-1") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return rows


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "not UTF-8" in line and line.startswith("warning:")]


@pytest.mark.parametrize("command", ["finetune-clf", "finetune-lm", "evaluate", "predict", "inspect"])
def test_latin1_is_said_once_and_read_exactly_with_encoding(pipeline, ulmfit, tmp_path, command):
    table = tmp_path / "latin.csv"
    rows = _latin1_table(table)
    args = {
        "finetune-clf": [
            "finetune-clf",
            pipeline["ft"],
            table,
            "--out",
            tmp_path / "c",
            "--preset",
            "tiny",
            "--epochs",
            "1",
        ],
        "finetune-lm": ["finetune-lm", pipeline["lm"], table, "--out", tmp_path / "l", "--preset", "tiny"],
        "evaluate": ["evaluate", pipeline["clf"], table],
        "predict": ["predict", pipeline["clf"], table, "--format", "tsv"],
        "inspect": ["inspect", table],
    }[command]
    r = ulmfit(*args)
    assert r.returncode == 0, r.stderr
    said = _warnings(r.stderr)
    n_bytes = sum(sum(1 for ch in t if ord(ch) > 127) for t, _ in rows)
    assert len(said) == 1 and f"{n_bytes} byte(s)" in said[0] and "first on line 2" in said[0], r.stderr
    assert "--encoding" in said[0]
    for p in (tmp_path / "c", tmp_path / "l"):
        if p.exists():
            import shutil

            shutil.rmtree(p)
    r = ulmfit(*args, "--encoding", "latin-1")
    assert r.returncode == 0, r.stderr
    assert not _warnings(r.stderr) and "\ufffd" not in r.stdout
    if command == "predict":  # the texts come back exactly
        assert [line.split("\t")[-1] for line in r.stdout.splitlines()] == [t for t, _ in rows]


def test_inspect_reports_the_count_and_the_flag(ulmfit, tmp_path):
    table = tmp_path / "latin.csv"
    _latin1_table(table)
    rep = json.loads(ulmfit("inspect", table, "--json").stdout)
    assert rep["files"][0]["undecodable_bytes"] > 0 and rep["files"][0]["undecodable_first_line"] == 2
    assert any(v["kind"] == "encoding" and "--encoding" in v["message"] for v in rep["verdicts"])
    rep = json.loads(ulmfit("inspect", table, "--json", "--encoding", "latin-1").stdout)
    assert rep["files"][0]["undecodable_bytes"] == 0 and not any(v["kind"] == "encoding" for v in rep["verdicts"])


def test_a_wrong_or_unknown_encoding_is_one_line(ulmfit, tmp_path):
    from conftest import one_line_error

    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n" + b"\xff\xfe\xfa broken utf-16?\n")
    one_line_error(ulmfit("inspect", bad, "--encoding", "nope"), 2, "--encoding", "no such encoding")
    one_line_error(ulmfit("inspect", bad, "--encoding", "ascii"), 2, "not ascii text", "line 2")
    one_line_error(ulmfit("inspect", bad, "--encoding", "utf-16"), 2, "not utf-16 text")  # no BOM: a UnicodeError


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=30).filter(lambda b: b"\n" not in b), min_size=1, max_size=12),
)
def test_count_undecodable_matches_pythons_decoder(tmp_path_factory, lines):
    """Over random bytes: the count is the bytes Python's strict decoder rejects, the line the first's."""
    from ulmfit_cli.data.readers import count_undecodable

    path = tmp_path_factory.mktemp("b") / "f.txt"
    data = b"\n".join(lines)
    path.write_bytes(data)
    want, first = 0, 0
    for i, line in enumerate(data.split(b"\n"), start=1):
        bad = sum(len(x) for x in _rejected(line))
        want += bad
        if bad and not first:
            first = i
    if data.startswith(b"\xef\xbb\xbf"):  # a BOM is not counted
        return
    assert count_undecodable(path) == (want, first)


def _rejected(line: bytes):
    out, rest = [], line
    while rest:
        try:
            rest.decode("utf-8")
            break
        except UnicodeDecodeError as e:
            out.append(rest[e.start : e.end])
            rest = rest[e.end :]
    return out


def test_predict_streaming_stdin_counts_and_reads_encoding(pipeline, cli):
    """predict streams stdin (never copied): its bytes that are not UTF-8 are counted and said once at the end;
    with --encoding it decodes them exactly."""
    text = "what is a café ?\nwho wrote the crème brûlée recipe ?\nwhen is it ?\n"
    data = text.encode("latin-1").decode("latin-1")  # the same text; sent below as Latin-1 bytes
    import subprocess
    import sys

    from conftest import _env

    def run(*flags):
        return subprocess.run(
            [sys.executable, "-m", "ulmfit_cli", "predict", str(pipeline["clf"]), "-", "--format", "tsv", *flags],
            input=data.encode("latin-1"), capture_output=True, env=_env(pipeline["clf"].parent), timeout=300,
        )  # fmt: skip

    r = run()
    assert r.returncode == 0, r.stderr
    said = [x for x in r.stderr.decode().splitlines() if "not UTF-8" in x and x.startswith("warning:")]
    assert len(said) == 1 and "stdin: 4 byte(s)" in said[0] and "first on line 1" in said[0], r.stderr
    r = run("--encoding", "latin-1")
    assert r.returncode == 0 and "not UTF-8" not in r.stderr.decode()
    assert [x.split("\t")[-1] for x in r.stdout.decode().splitlines()] == text.splitlines()


def test_a_command_in_the_same_process_sees_nothing_of_the_one_before(pipeline, ulmfit, tmp_path):
    """Each command reads and says its inputs itself (a second `inspect` of the file counts its bytes again and
    says so again), and a --config file belongs to the command that read it (the next --print-config, without
    one, names no file)."""
    table = tmp_path / "latin.csv"
    _latin1_table(table)
    for _ in range(2):
        r = ulmfit("inspect", table, "--json")
        assert json.loads(r.stdout)["files"][0]["undecodable_bytes"] > 0
        assert len(_warnings(r.stderr)) == 1, r.stderr
    settings = tmp_path / "s.toml"
    settings.write_text('preset = "tiny"\nepochs = 3\n')
    first = ulmfit("finetune-clf", pipeline["ft"], table, "--config", settings, "--print-config")
    second = ulmfit("finetune-clf", pipeline["ft"], table, "--print-config")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert str(settings) in first.stdout and "epochs = 3" in first.stdout
    assert str(settings) not in second.stdout and "epochs = 3" not in second.stdout
