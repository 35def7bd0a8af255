"""predict's tsv and label formats: every field escaped, so any label and any text give one line with a fixed
number of fields that unescape to what went in (issue 27, case 6)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ulmfit_cli.inference.formats import Formatter
from ulmfit_cli.tasks import MULTI

_UNESCAPE = {"\\\\": "\\", "\\t": "\t", "\\n": "\n", "\\r": "\r", "\\,": ","}


def unescape(field: str) -> str:
    return re.sub(r"\\[\\tnr,]", lambda m: _UNESCAPE[m.group(0)], field)


labels = st.lists(st.text(min_size=1, max_size=12), min_size=2, max_size=5, unique=True)


@settings(max_examples=200, deadline=None)
@given(classes=labels, text=st.text(max_size=40), seed=st.integers(0, 2**16), top_k=st.sampled_from([None, 1, 2]))
def test_single_label_tsv_round_trips(classes, text, seed, top_k):
    probs = np.random.default_rng(seed).dirichlet(np.ones(len(classes)))
    line = Formatter("tsv", "single-label", classes, None, top_k).line(text, probs)
    assert "\n" not in line and "\r" not in line
    fields = line.split("\t")
    k = min(top_k or 1, len(classes))
    assert len(fields) == 2 * k + 1
    assert unescape(fields[-1]) == text
    assert unescape(fields[0]) == classes[int(np.argmax(probs))]
    label_line = Formatter("label", "single-label", classes, None, top_k).line(text, probs)
    assert "\n" not in label_line and "\t" not in label_line and unescape(label_line) == classes[int(np.argmax(probs))]


@settings(max_examples=200, deadline=None)
@given(classes=labels, text=st.text(max_size=40), seed=st.integers(0, 2**16))
def test_multi_label_tsv_round_trips(classes, text, seed):
    rng = np.random.default_rng(seed)
    probs, cuts = rng.random(len(classes)), np.full(len(classes), 0.5)
    line = Formatter("tsv", MULTI, classes, cuts, None).line(text, probs)
    assert "\n" not in line and "\r" not in line
    fields = line.split("\t")
    assert len(fields) == 3 and unescape(fields[-1]) == text
    want = [c for c, p in zip(classes, probs) if p >= 0.5]
    got = [unescape(x) for x in _split(fields[0])] if fields[0] else []
    assert got == want


def _split(field: str) -> list[str]:
    """Split at commas not preceded by an odd number of backslashes."""
    out, cur, i = [], "", 0
    while i < len(field):
        if field[i] == "\\" and i + 1 < len(field):
            cur += field[i : i + 2]
            i += 2
        elif field[i] == ",":
            out.append(cur)
            cur, i = "", i + 1
        else:
            cur += field[i]
            i += 1
    return [*out, cur]


# ---- tables with two columns of one name (issue 27, case 9) ------------------------------------------------

DUPLICATES = [("text,text,label", "'text'"), ("text,label,label", "'label'"), ("a,text,a,label,b,b", "'a', 'b'")]


@pytest.mark.parametrize("header,named", DUPLICATES)
@pytest.mark.parametrize("command", ["finetune-clf", "evaluate", "predict", "inspect"])
def test_duplicate_column_names_are_an_error_naming_them(pipeline, ulmfit, tmp_path, header, named, command):
    from conftest import one_line_error

    n = header.count(",") + 1
    table = tmp_path / "t.csv"
    table.write_text(header + "\n" + "\n".join(",".join(["what is it"] * (n - 1) + ["DESC"]) for _ in range(40)) + "\n")
    args = {
        "finetune-clf": ["finetune-clf", pipeline["ft"], table, "--out", tmp_path / "c", "--preset", "tiny"],
        "evaluate": ["evaluate", pipeline["clf"], table],
        "predict": ["predict", pipeline["clf"], table],
        "inspect": ["inspect", table],
    }[command]
    one_line_error(ulmfit(*args), 2, "more than once", named)
    assert not (tmp_path / "c").exists()
