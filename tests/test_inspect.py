"""`ulmfit inspect` through the real CLI on sample data and crafted files, and its duplicate finder as a property."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SAMPLE, one_line_error
from ulmfit_cli.workflows.inspect_data import FileData, near_key, shared


def _csv(path, rows):
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


def test_leakage_duplicates_and_label_gaps_between_crafted_files(ulmfit, tmp_path):
    train = _csv(
        tmp_path / "train.csv",
        [
            ("What is a cat ?", "A"),
            ("what is a CAT?", "A"),
            ("Who was Ada ?", "B"),
            ("   ", "A"),
            ("Where is Rome ?", ""),
        ]
        + [(f"question number {i} ?", "AB"[i % 2]) for i in range(30)],
    )
    test = _csv(
        tmp_path / "test.csv",
        [("Who  was ADA?", "B"), ("question number 3 ?", "B"), ("A new one ?", "C"), ("fresh text", "A")],
    )
    r = ulmfit("inspect", train, test, "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    tr, te = rep["files"]
    assert (tr["rows"], tr["blank"], tr["blank_rows"]) == (35, 1, [4])
    assert (tr["exact_duplicates"], tr["near_duplicates"]) == (0, 1)  # case and punctuation ignored
    assert tr["labels"]["missing"] == 1 and tr["labels"]["missing_rows"] == [5]
    assert rep["shared_rows"] == 2 and rep["pairs"][0]["exact"] == 1
    assert {e["row_b"] for e in rep["pairs"][0]["examples"]} == {1, 2}
    assert rep["pairs"][0]["labels"]["only_in_b"] == ["C"]
    kinds = {v["kind"] for v in rep["verdicts"]}
    assert {"blank", "duplicates", "missing_labels", "shared_rows", "unseen_labels"} <= kinds
    assert "small_classes" not in kinds  # A and B have 17+ examples each
    # the same as tables and verdict lines on stdout, progress on stderr
    r = ulmfit("inspect", train, test)
    assert r.returncode == 0 and "reading" in r.stderr and "reading" not in r.stdout
    verdicts = [line for line in r.stdout.splitlines() if line.startswith("verdict:")]
    assert any("2 row(s) also in" in v and "remove them" in v for v in verdicts)
    assert any("'C'" in v or "C never in" in v for v in verdicts)


def test_a_list_column_is_multi_label_and_numbers_look_like_regression(ulmfit, tmp_path):
    lists = tmp_path / "multi.jsonl"
    lists.write_text(
        "".join(json.dumps({"text": f"doc {i}", "label": ["x", "y"][: 1 + i % 2]}) + "\n" for i in range(40))
    )
    nums = _csv(tmp_path / "nums.csv", [(f"review {i}", f"{i * 0.37:.2f}") for i in range(40)])
    r = ulmfit("inspect", lists, "--json", "-q")
    lab = json.loads(r.stdout)["files"][0]["labels"]
    assert r.returncode == 0 and lab["kind"] == "multi-label" and lab["counts"] == {"x": 40, "y": 20}
    r = ulmfit("inspect", nums, "--json", "-q")
    rep = json.loads(r.stdout)
    assert rep["files"][0]["labels"]["kind"] == "numeric"
    assert any(v["kind"] == "numeric" and "--regression" in v["message"] for v in rep["verdicts"])


def test_delimited_label_sets_and_small_classes_on_reuters_sample(ulmfit):
    r = ulmfit("inspect", SAMPLE / "reuters_train.csv", "--json", "-q")
    rep = json.loads(r.stdout)
    assert rep["files"][0]["labels"]["kind"] == "multi-label" and rep["files"][0]["labels"]["delimiter"] == " "
    kinds = {v["kind"] for v in rep["verdicts"]}
    assert {"multi_label", "small_classes"} <= kinds


def test_parent_tokenizer_stats_and_a_tokenizer_of_another_language(ulmfit, pipeline, tmp_path):
    r = ulmfit("inspect", SAMPLE / "trec_test.csv", "--parent", pipeline["clf"], "--max-len", "32", "--json", "-q")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    t = rep["files"][0]["tokens"]
    assert t["p50"] <= t["p90"] <= t["p99"] <= t["max"] and t["documents"] == 500
    assert 0 < t["over_max_len"] < 1 and t["max_len"] == 32
    assert rep["suggest"]["max_len"] % rep["suggest"]["bptt"] == 0 and rep["suggest"]["max_len"] >= t["p99"]
    english_unk = t["unk_rate"]
    greek = _csv(
        tmp_path / "greek.csv",
        [("Πού βρίσκεται η Αθήνα ;", "LOC"), ("Ποιος έγραψε την Οδύσσεια ;", "HUM"), ("Τι είναι ένα άτομο ;", "DESC")],
    )
    r = ulmfit("inspect", greek, "--parent", pipeline["lm"], "--json", "-q")  # an English books tokenizer
    rep = json.loads(r.stdout)
    g = rep["files"][0]["tokens"]
    assert g["unk_rate"] > 0.5 > english_unk and g["split_4plus"] > 0.5
    assert "α" in g["unknown_chars"]
    assert {"unknown_tokens", "split_words", "small_classes"} <= {v["kind"] for v in rep["verdicts"]}


def test_unreadable_data_is_one_line_and_exit_2(ulmfit, tmp_path):
    one_line_error(ulmfit("inspect", tmp_path / "nope.csv"), 2, "nope.csv", "no such file")
    one_line_error(ulmfit("inspect", SAMPLE / "trec_test.csv", "--text-col", "body"), 2, "no column 'body'")
    one_line_error(ulmfit("inspect", SAMPLE / "trec_test.csv", "--label-col", "topic"), 2, "no column 'topic'")


_words = st.lists(st.text("abcdefgh", min_size=1, max_size=6), min_size=1, max_size=6).map(" ".join)


@settings(max_examples=60, deadline=None)
@given(st.lists(_words, min_size=1, max_size=12, unique_by=near_key), st.data())
def test_case_punctuation_and_space_variants_of_training_rows_are_all_found(texts, data):
    """Any test row that is a training row up to case, punctuation and spacing counts as shared; others do not."""
    picks = data.draw(st.lists(st.sampled_from(texts), max_size=8))
    variants = [
        data.draw(st.sampled_from([t.upper(), f"  {t}?", t.replace(" ", " , "), t.title() + " !", t])) for t in picks
    ]
    fresh = [t + " zz" for t in texts if near_key(t + " zz") not in {near_key(x) for x in texts}]
    rep = shared(FileData("a", texts, None), FileData("b", variants + fresh, None))
    assert rep["shared_rows"] == len(variants)
    assert rep["exact"] == sum(v in texts for v in variants)


def test_duplicates_with_the_same_label_set_in_another_order_do_not_conflict():
    from ulmfit_cli.workflows.inspect_data import file_report

    texts = ["US urges Japan", "us urges japan.", "Fed sets repo", "FED SETS REPO"]
    rep = file_report(FileData("f", texts, ["trade grain", "grain trade", "interest", "interest money-fx"]), " ")
    assert rep["labels"]["conflicting_duplicates"] == 1
    assert rep["labels"]["conflict_examples"][0]["labels"] == ["interest", "interest money-fx"]


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_near_key_is_lowercase_text_without_punctuation_or_extra_space(text):
    import re

    assert near_key(text) == " ".join(re.sub(r"[^\w\s]|_", " ", text.lower()).split())


@pytest.mark.parametrize(
    "counts, fires",
    [
        ((2, 70), True),
        ((8, 8, 8), True),
        ((58, 70), True),
        ((59, 70), False),
        ((18, 244, 220), False),
        ((200, 70), False),
    ],  # fmt: skip
)
def test_inspect_says_what_few_labels_imply(ulmfit, tmp_path, counts, fires):
    """At 64 examples a class or fewer on average (a rare class among many rows is not few labels), inspect names
    the few-shot regime and what the tool does in it (validation too small to choose an epoch, a schedule in
    steps, the contrastive step), with the counts."""
    import csv

    path = tmp_path / "few.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows([f"question number {i} about c{k}", f"c{k}"] for k, n in enumerate(counts) for i in range(n))
    r = ulmfit("inspect", path, "--json")
    assert r.returncode == 0, r.stderr
    found = [v["message"] for v in json.loads(r.stdout)["verdicts"] if v["kind"] == "few_labels"]
    assert bool(found) == fires
    if fires:
        total = sum(counts)
        assert f"{total} labelled rows over {len(counts)} classes ({total / len(counts):.0f} a class" in found[0]
        assert "--min-steps" in found[0] and "--contrastive-steps" in found[0] and "--head auto" in found[0]
