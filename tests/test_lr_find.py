"""`ulmfit lr-find` through the real CLI (tiny models), and its suggestion rule against fastai's own."""

import bisect
import hashlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SAMPLE, one_line_error
from ulmfit_cli.workflows.lr_find import RULES, slide, steep, suggest, valley


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_finetune_clf_range_test_suggests_a_rate_and_writes_only_the_png(cli, pipeline, tmp_path):
    before = _digest(pipeline["ft"])
    png = tmp_path / "lr_find.png"
    r = cli(
        "lr-find", pipeline["ft"], SAMPLE / "trec_train.csv", "--stage", "finetune-clf", "--preset", "tiny",
        "--num-it", "30", "--png", png, "--json", "-q", cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    lrs, losses = out["lrs"], out["losses"]
    assert 10 <= out["steps"] == len(lrs) == len(losses) <= 30
    assert lrs[0] == 1e-7 and all(b / a > 1 for a, b in zip(lrs, lrs[1:]))  # exponentially increasing
    assert lrs[30 // 10] <= out["suggested_lr"] <= lrs[-5]
    assert out["suggested_lr"] in lrs and out["steep_lr"] in lrs
    assert out["rule"] == "bottom" and list(out["suggestions"]) == list(RULES)
    assert out["suggested_lr"] == out["suggestions"]["bottom"]
    assert out["suggestions"]["lowest"] == min(zip(losses[3:-5], lrs[3:-5]))[1]
    # discriminative rates: the top group gets the suggestion, each lower one / --lr-factor
    g = out["group_lrs"]
    assert g[-1] == out["suggested_lr"] and all(abs(b / a - out["lr_factor"]) < 1e-9 for a, b in zip(g, g[1:]))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["lr_find.png"]  # no run folder
    assert _digest(pipeline["ft"]) == before  # the parent is only read


def test_pretrain_range_test_on_a_corpus_prints_the_suggestion(cli, tmp_path):
    r = cli("lr-find", SAMPLE / "books.txt", "--stage", "pretrain", "--preset", "tiny", "--num-it", "20", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("suggested --lr ") and all(rule in r.stdout.splitlines()[0] for rule in RULES)
    assert "tokenizer" in r.stderr and list(tmp_path.iterdir()) == []


def test_bad_stage_and_wrong_parent_are_one_line_errors(ulmfit, pipeline):
    one_line_error(ulmfit("lr-find", SAMPLE / "books.txt", "--stage", "predict"), 2, "`--stage` must be one of")
    one_line_error(
        ulmfit("lr-find", pipeline["clf"], SAMPLE / "trec_train.csv", "--stage", "finetune-clf"), 2, "finetune-clf run"
    )
    one_line_error(ulmfit("lr-find", pipeline["ft"], "--stage", "finetune-lm"), 2, "needs PARENT and DATA")


def test_the_head_multiplier_is_refused_for_a_language_model_stage(ulmfit, pipeline):
    r = ulmfit("lr-find", pipeline["lm"], SAMPLE / "books.txt", "--stage", "finetune-lm", "--head-lr-mult", "5")
    one_line_error(r, 2, "--head-lr-mult", "language model")


def test_a_png_that_cannot_be_written_is_refused_before_the_range_test(cli, tmp_path):
    base = ("lr-find", SAMPLE / "books.txt", "--stage", "pretrain", "--preset", "tiny", "--num-it", "20")
    for png, says in ((tmp_path / "no" / "lr.png", "does not exist"), (tmp_path / "lr.jpg", "ending in .png")):
        r = cli(*base, "--png", png, cwd=tmp_path)
        one_line_error(r, 2, says)
        assert "tokenizer" not in r.stderr and list(tmp_path.iterdir()) == []  # refused before any work


_curves = st.lists(st.floats(0.1, 10, allow_nan=False), min_size=4, max_size=60)


@settings(max_examples=40, deadline=None)
@given(_curves)
def test_valley_steep_slide_and_minimum_pick_the_rates_fastai_picks(losses):
    import torch
    from fastai.callback.schedule import minimum as fa_minimum
    from fastai.callback.schedule import slide as fa_slide
    from fastai.callback.schedule import steep as fa_steep
    from fastai.callback.schedule import valley as fa_valley

    lrs = [1e-7 * 1.2**i for i in range(len(losses))]
    assert lrs[valley(lrs, losses)] == fa_valley(lrs, losses, 100)[0]
    t = torch.float64
    tl, ty = torch.tensor(lrs, dtype=t), torch.tensor(losses, dtype=t)
    assert lrs[steep(lrs, losses)] == fa_steep(tl, ty, 100)[0]
    if len(losses) > 15:  # fastai's slide needs more points than its interval (15); ours shrinks it
        assert slide(lrs, losses) == fa_slide(tl, ty, 100)[0]
    # suggest() reads fastai's slice of the curve: 10 leading steps (num_it 100) and 5 trailing ones more
    full_lrs, full = [1e-8 * 1.2**i for i in range(10)] + lrs + [9.0] * 5, [5.0] * 10 + losses + [50.0] * 5
    found = suggest(full_lrs, full, 100)["suggestions"]
    assert found["minimum"] == fa_minimum(tl, ty, 100)[0] == found["lowest"] / 10
    assert found["valley"] == fa_valley(lrs, losses, 100)[0] and found["slide"] == slide(lrs, losses)
    # the bottom: the first point where a strictly falling subsequence as long as any ends (lengths by patience
    # sorting, not fastai's O(n^2) table)
    tails, ending = [], []
    for x in losses:
        k = bisect.bisect_left(tails, -x)
        tails[k : k + 1] = [-x]
        ending.append(k + 1)
    assert lrs.index(found["bottom"]) == ending.index(max(ending))


def test_an_unknown_rule_is_a_one_line_error(ulmfit, pipeline):
    r = ulmfit("lr-find", pipeline["ft"], SAMPLE / "trec_train.csv", "--stage", "finetune-clf", "--rule", "max")
    one_line_error(r, 2, "`--rule` must be one of")


def test_a_stage_prints_its_steps_and_a_time_estimate_and_reports_both_times(ulmfit, pipeline, tmp_path):
    r = ulmfit(
        "finetune-clf", pipeline["ft"], SAMPLE / "trec_test.csv", "--out", tmp_path / "c", "--preset", "tiny",
        "--epochs", "2", "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    steps = r.stderr.index("steps to run")
    assert steps < r.stderr.index("estimate:") < r.stderr.index("accuracy")  # the estimate comes before epoch 1 ends
    s = json.loads(r.stdout)
    assert 0 < s["estimate_s"] and 0 < s["train_s"] <= s["wall_s"]
