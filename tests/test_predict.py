"""`predict` as a pipeline stage and `evaluate` streamed: alignment with blank lines, the output formats and
--top-k, batching that never changes an answer, answers to slow input before the next line, no `datasets` on
stdin, and evaluate's batch-by-batch metrics equal to the whole-array ones. The CLI where the CLI is the point;
in-process (one loaded model) for the property tests."""

import csv
import io
import json
import os
import select
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, SAMPLE
from ulmfit_cli import metrics, tasks
from ulmfit_cli.data.readers import Source, read_table
from ulmfit_cli.data.rows import line_batches, table_batches
from ulmfit_cli.errors import ConfigError, InputError
from ulmfit_cli.inference import predictor as inference
from ulmfit_cli.inference.formats import Formatter, escape
from ulmfit_cli.runfolder.artifacts import open_run

QUESTIONS = [r[0] for r in csv.reader(open(SAMPLE / "trec_test.csv", encoding="utf-8"))][1:80]
NEWS = [" ".join(r[0].split()) for r in csv.reader(open(SAMPLE / "reuters_test.csv", encoding="utf-8"))][1:40]
CLASSES = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]


@pytest.fixture(scope="module")
def predictor(pipeline):
    import torch

    torch.set_num_threads(1)
    return inference.Predictor([open_run(pipeline["clf"], ("finetune-clf",), "predict")])


def _lines(predictor, texts, batch_size, chunks=None, fmt="jsonl"):
    """What `ulmfit predict RUN -` writes for `texts`, the input arriving through a pipe in `chunks` bytes."""
    data = "".join(t + "\n" for t in texts).encode()
    cuts = sorted(chunks or [])
    r, w = os.pipe()

    def feed():
        with os.fdopen(w, "wb") as f:
            for a, b in zip([0, *cuts], [*cuts, len(data)]):
                f.write(data[a:b])
                f.flush()

    threading.Thread(target=feed, daemon=True).start()
    out = io.StringIO()
    predictor.batch_size = batch_size
    line = Formatter(fmt, predictor.task, predictor.classes, predictor.cuts, None).line
    try:
        inference.predict(predictor, line_batches(r, batch_size, 0.0), line, out)
    finally:
        os.close(r)
    return out.getvalue().splitlines()


# ---- alignment, formats --------------------------------------------------------------------------------------


def _jsonl(predictor, texts, top_k=None):
    line = Formatter("jsonl", predictor.task, predictor.classes, predictor.cuts, top_k).line
    return [json.loads(line(t, row)) for t, row in zip(texts, predictor.rows(texts))]


def test_blank_lines_get_null_lines_and_outputs_stay_aligned(cli, pipeline, predictor):
    stdin = "What is the capital of France ?\n\n   \r\nWho wrote Hamlet ?\r\n\nHow far is the moon ?"  # no last \n
    r = cli("predict", pipeline["clf"], "-", stdin=stdin)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 6
    assert [row["label"] is None for row in rows] == [False, True, True, False, True, False]
    assert all(row == {"label": None, "probs": None} for row in rows if row["label"] is None)
    alone = _jsonl(predictor, ["Who wrote Hamlet ?"])[0]  # the same text on its own
    assert alone["label"] == rows[3]["label"]
    assert list(alone["probs"].values()) == pytest.approx(list(rows[3]["probs"].values()), abs=2e-6)


def test_formats_and_top_k_say_the_same_thing(cli, pipeline, predictor):
    texts = ["What is the capital of France ?", "", "who wrote\tHamlet ? a \\ back\\slash"]
    r = cli("predict", pipeline["clf"], "-", "--format", "tsv", "--top-k", "2", stdin="\n".join(texts) + "\n")
    assert r.returncode == 0, r.stderr
    tsv = r.stdout.split("\n")
    assert len(tsv) == 4 and tsv[-1] == ""  # one line per input, nothing else
    label = Formatter("label", predictor.task, predictor.classes, None, None).line
    full, top = _jsonl(predictor, texts), _jsonl(predictor, texts, top_k=2)
    for text, row, f, t, fields in zip(texts, predictor.rows(texts), full, top, tsv):
        fields = fields.split("\t")
        assert len(fields) == 5 and fields[-1] == escape(text)
        if f["label"] is None:
            assert t == f and fields[:4] == [""] * 4 and label(text, row) == ""
            continue
        best = sorted(f["probs"], key=lambda c: -f["probs"][c])[:2]
        assert list(t["probs"]) == best and t["label"] == f["label"] == best[0] == label(text, row) == fields[0]
        assert [fields[0], fields[2]] == best
        assert [float(fields[1]), float(fields[3])] == pytest.approx([f["probs"][c] for c in best], abs=2e-6)
    assert tsv[2].split("\t")[-1] == "who wrote\\tHamlet ? a \\\\ back\\\\slash"


@pytest.mark.parametrize(
    "fmt, top_k, out, line",
    [
        ("jsonl", None, [0.7, 0.2, 0.6], '{"labels": ["a", "c"], "probs": {"a": 0.7, "b": 0.2, "c": 0.6}}'),
        ("jsonl", 2, [0.7, 0.2, 0.6], '{"labels": ["a", "c"], "probs": {"a": 0.7, "c": 0.6}}'),
        ("jsonl", 1, [0.7, 0.2, 0.6], '{"labels": ["a"], "probs": {"a": 0.7}}'),
        ("tsv", None, [0.7, 0.2, 0.6], "a,c\t0.700000,0.600000\tx\\ty"),
        ("tsv", None, [0.1, 0.2, 0.3], "\t\tx\\ty"),  # none passes its threshold
        ("label", None, [0.1, 0.5, 0.6], "b,c"),  # b's threshold is 0.5: at it counts
        ("tsv", None, None, "\t\tx\\ty"),  # a blank input
        ("jsonl", None, None, '{"labels": null, "probs": null}'),
    ],
)
def test_multi_label_lines(fmt, top_k, out, line):
    f = Formatter(fmt, tasks.MULTI, ["a", "b", "c"], np.array([0.5, 0.5, 0.4]), top_k)
    assert f.line("x\ty", None if out is None else np.array(out)) == line


@pytest.mark.parametrize(
    "fmt, out, line",
    [("jsonl", 2.5, '{"value": 2.5}'), ("tsv", 2.5, "2.5\tx"), ("label", -0.125, "-0.125"), ("label", None, "")],
)
def test_regression_lines(fmt, out, line):
    assert Formatter(fmt, tasks.REGRESSION, None, None, None).line("x", out) == line


def test_top_k_is_for_classifiers_and_formats_are_checked():
    with pytest.raises(ConfigError, match="`--top-k` is for classifiers"):
        Formatter("tsv", tasks.REGRESSION, None, None, 2)
    with pytest.raises(ConfigError, match="`--format` is one of jsonl, tsv, label; got 'csv'"):
        Formatter("csv", tasks.SINGLE, CLASSES, None, None)


# ---- batching never changes an answer --------------------------------------------------------------------------

TEXTS = st.lists(
    st.one_of(
        st.sampled_from(QUESTIONS),
        st.sampled_from(NEWS),  # longer than the tiny model's bptt: several chunks, padding first
        st.sampled_from(["", "  ", "?"]),
        st.text(alphabet="abcé日 ?\t", max_size=30),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=TEXTS, batch_size=st.integers(1, 9), chunks=st.lists(st.integers(0, 2000), max_size=6))
def test_answers_do_not_depend_on_batch_size_or_how_the_input_arrives(predictor, texts, batch_size, chunks):
    reference = _lines(predictor, texts, 64)
    got = _lines(predictor, texts, batch_size, [c for c in chunks if c < len("".join(texts).encode())])
    assert len(got) == len(reference) == len(texts)
    for a, b in zip(got, reference):
        a, b = json.loads(a), json.loads(b)
        assert a["label"] == b["label"]
        if a["probs"] is not None:
            assert list(a["probs"].values()) == pytest.approx(list(b["probs"].values()), abs=2e-6)


# ---- a pipeline stage ------------------------------------------------------------------------------------------


def _wrapped(*args):
    """`ulmfit ARGS` in a Python that reports at exit which heavy readers it imported (on stderr)."""
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: sys.stderr.write('\\nloaded: %s\\n' % sorted("
        "{m.split('.')[0] for m in sys.modules} & {'datasets', 'pandas', 'pyarrow'})))\n"
        f"sys.argv = ['ulmfit', *{[str(a) for a in args]!r}]\n"
        "from ulmfit_cli.cli.main import run\n"
        "run()\n"
    )
    return [sys.executable, "-c", code]


def _answer(proc, timeout: float) -> str:
    ready = select.select([proc.stdout], [], [], timeout)[0]
    assert ready, f"no answer within {timeout} s"
    return proc.stdout.readline()


def test_each_slow_line_is_answered_before_the_next_is_sent_and_stdin_needs_no_datasets(pipeline, cli_env):
    """`tail -f log | ulmfit predict RUN -`: a partial batch goes out after --max-wait, not when 64 lines came.
    And reading stdin imports none of `datasets`, pandas or pyarrow (fastai's import, until the model no longer
    needs it, brings pandas: only `datasets` is asserted)."""
    proc = subprocess.Popen(
        _wrapped("predict", pipeline["clf"], "-", "--max-wait", "0.05", "-f", "label"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
        env=cli_env,
        cwd=ROOT,
    )
    try:
        answers = []
        for i, q in enumerate(["What is the capital of France ?", "", "Who wrote Hamlet ?", "How far is it ?"]):
            proc.stdin.write(q + "\n")
            proc.stdin.flush()
            answers.append(_answer(proc, 120 if i == 0 else 20).rstrip("\n"))  # the first waits for the model
            time.sleep(0.2)
        proc.stdin.close()
        rest, err = proc.stdout.read(), proc.stderr.read()
        assert proc.wait(60) == 0, err
    finally:
        proc.kill()
    assert rest == "" and answers[1] == "" and all(a in CLASSES for a in answers[::2] + answers[3:])
    assert "loaded:" in err and "'datasets'" not in err.split("loaded:")[-1], err


# ---- evaluate, streamed --------------------------------------------------------------------------------------


def test_streamed_evaluate_equals_the_whole_array_metrics(pipeline, predictor, monkeypatch):
    run = open_run(pipeline["clf"], ("finetune-clf",), "evaluate")
    src = Source(path=str(SAMPLE / "trec_test.csv"))
    table = read_table(src, "text", "label")  # as evaluate read it before: all at once
    cfg, tok, model = predictor.models[0]
    probs = tasks.outputs(tasks.SINGLE, inference.predict_logits(model, inference.docs_of(tok, table.texts, cfg), cfg))
    y = np.array([CLASSES.index(v) for v in table.labels])
    before = metrics.classification_report(y, probs.argmax(1), CLASSES)
    monkeypatch.setattr(inference, "READ_ROWS", 37)  # many reads, so the sums are merged
    after = inference.evaluate([run], src, None, None, batch_size=5, threads=1)
    assert {k: after[k] for k in before} == before and after["n"] == 500


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 60),
    cuts=st.lists(st.integers(1, 59), max_size=4),
    seed=st.integers(0, 2**16),
    task=st.sampled_from([tasks.SINGLE, tasks.MULTI, tasks.REGRESSION]),
)
def test_tallies_summed_in_batches_equal_the_report_of_all(n, cuts, seed, task):
    rng = np.random.default_rng(seed)
    classes = ["a", "b", "c", "d"]
    if task == tasks.REGRESSION:
        labels, out = list(rng.normal(50, 10, n)), rng.normal(50, 12, n)
        whole = metrics.regression_report(np.array(labels), out)
    elif task == tasks.MULTI:
        labels = [sorted(set(rng.choice(classes, rng.integers(0, 3)).tolist())) for _ in range(n)]
        out, thr = rng.random((n, 4)), np.array([0.5, 0.3, 0.7, 0.5])
        true = tasks.encode(task, labels, classes, None) > 0.5
        whole = metrics.multilabel_report(true, out >= thr, classes, thr)
    else:
        labels, out = list(rng.choice(classes, n)), rng.random((n, 4))
        whole = metrics.classification_report(np.array([classes.index(v) for v in labels]), out.argmax(1), classes)
    tally = inference.Tally(task, None if task == tasks.REGRESSION else classes, thr if task == tasks.MULTI else None)
    bounds = [0, *sorted(c for c in cuts if c < n), n]
    for a, b in zip(bounds, bounds[1:]):
        tally.add(labels[a:b], out[a:b])
    got = tally.report()
    for k, v in whole.items():
        assert got[k] == (pytest.approx(v, rel=1e-9, abs=1e-12) if isinstance(v, float) else v), k


def test_evaluate_checks_every_label_before_loading_a_model(pipeline, tmp_path, monkeypatch):
    run = open_run(pipeline["clf"], ("finetune-clf",), "evaluate")
    monkeypatch.setattr(inference, "Predictor", None)  # loading a model would fail: the checks must come first
    p = tmp_path / "t.csv"
    p.write_text("text,label\nwho ?,HUM\n,\nwhere ?,\nwhat ?,ENTY\nwhen ?,\n")  # row 2: no text, no label: skipped
    with pytest.raises(InputError, match=r"2 row\(s\) have no label in column 'label' \(first at row 3\)"):
        inference.evaluate([run], Source(path=str(p)), None, None)
    p.write_text("text,label\n" + "".join(f"q{i} ?,{'ZZZ' if i == 3000 else 'HUM'}\n" for i in range(3001)))
    with pytest.raises(InputError, match="'ZZZ' never seen in training"):
        inference.evaluate([run], Source(path=str(p)), None, None)


def test_predict_reads_a_table_row_by_row_and_names_a_missing_column(ulmfit, pipeline, tmp_path):
    p = tmp_path / "q.jsonl"
    p.write_text("".join(json.dumps({"q": t}) + "\n" for t in ["Who wrote Hamlet ?", "", "What is it ?"]))
    r = ulmfit("predict", pipeline["clf"], p, "--text-col", "q", "--batch-size", "2", "-f", "label")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[0] in CLASSES and lines[2] in CLASSES
    with pytest.raises(InputError, match="q.jsonl: no column 'text' \\(columns: q\\); choose one with --text-col"):
        table_batches(Source(path=str(p)), ["text"], ["--text-col"], 2)
