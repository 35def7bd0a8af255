"""Schedule arithmetic against hand-computed tables (Howard & Ruder 2018, eq. 3 and section 3.2)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ulmfit_cli.training.schedule import discriminative_lrs, lr_trace, phase_steps, stlr, unfreeze_plan

# T = 100, cut_frac 0.1, ratio 32: cut = 10; decay denominator cut * (1 / cut_frac - 1) = 90.
STLR_100 = [
    (0, 1 / 32),  # p = 0
    (5, 16.5 / 32),  # p = 0.5 on the way up
    (10, 1.0),  # the peak: p = 1
    (55, 16.5 / 32),  # p = 1 - 45 / 90 = 0.5 on the way down
    (99, (1 + (1 / 90) * 31) / 32),  # p = 1 - 89 / 90
]


@pytest.mark.parametrize("t,expected", STLR_100)
def test_stlr_matches_the_paper_formula(t, expected):
    assert stlr(t, 100, 0.1, 32) == pytest.approx(expected)


def test_stlr_short_phase_keeps_one_warmup_step_and_never_drops_below_the_floor():
    # T = 5: floor(0.5) = 0 would divide by zero; cut becomes 1.
    assert stlr(0, 5) == pytest.approx(1 / 32)
    assert stlr(1, 5) == pytest.approx(1.0)
    assert stlr(4, 5) == pytest.approx((1 + (1 - 3 / 9) * 31) / 32)
    # T = 15, cut 1: t = 14 gives p = 1 - 13 / 9 < 0 in the raw formula; clamped to the floor 1 / ratio.
    assert stlr(14, 15) == pytest.approx(1 / 32)
    assert min(stlr(t, 15) for t in range(15)) > 0


def test_stlr_rejects_empty_phase():
    with pytest.raises(ValueError):
        stlr(0, 0)


def test_discriminative_rates_divide_by_the_factor_per_group():
    # 2.6^1..4 = 2.6, 6.76, 17.576, 45.6976
    assert discriminative_lrs(0.01, 5, 2.6) == pytest.approx(
        [2.188299e-4, 5.689576e-4, 1.479290e-3, 3.846154e-3, 0.01], rel=1e-5
    )
    # the factor holds for any group count, unlike fastai's slice(lo, hi)
    four = discriminative_lrs(0.004, 4, 2.6)
    assert [four[i + 1] / four[i] for i in range(3)] == pytest.approx([2.6, 2.6, 2.6])
    assert discriminative_lrs(0.01, 3, 1.0) == [0.01, 0.01, 0.01]


@settings(max_examples=60, deadline=None)
@given(
    st.floats(1e-6, 1.0),
    st.integers(1, 12),
    st.floats(1.0, 5.0),
    st.floats(0.1, 50.0),
    st.integers(1, 12),
    st.booleans(),
)
def test_the_head_multiplier_moves_the_top_group_alone(lr, n, factor, mult, epochs, gradual):
    plain, headed = discriminative_lrs(lr, n, factor), discriminative_lrs(lr, n, factor, mult)
    assert headed[:-1] == plain[:-1] and headed[-1] == pytest.approx(lr * mult)
    for a, b in zip(unfreeze_plan(n, epochs, lr, factor, gradual), unfreeze_plan(n, epochs, lr, factor, gradual, mult)):
        assert a.trainable == b.trainable and b.trainable[-1] == n - 1  # the head trains every epoch
        assert b.peak_lrs[:-1] == a.peak_lrs[:-1] and b.peak_lrs[-1] == pytest.approx(a.peak_lrs[-1] * mult)


def test_gradual_unfreezing_plan_for_the_five_group_classifier():
    plan = unfreeze_plan(5, 7, 0.01, 2.6, gradual=True)
    assert [p.trainable for p in plan] == [
        (4,),
        (3, 4),
        (2, 3, 4),
        (1, 2, 3, 4),
        (0, 1, 2, 3, 4),
        (0, 1, 2, 3, 4),
        (0, 1, 2, 3, 4),
    ]
    assert [p.phase for p in plan] == [0, 1, 2, 3, 4, 4, 4]  # one STLR cycle per unfreezing step, then one for the rest
    assert plan[0].peak_lrs == pytest.approx((0, 0, 0, 0, 0.01))
    assert plan[1].peak_lrs == pytest.approx((0, 0, 0, 0.01 / 2.6, 0.01))
    assert phase_steps(plan, 10) == {0: 10, 1: 10, 2: 10, 3: 10, 4: 30}


def test_plan_without_gradual_unfreezing_is_one_phase():
    plan = unfreeze_plan(4, 3, 0.004, 2.6, gradual=False)
    assert {p.phase for p in plan} == {0}
    assert all(p.trainable == (0, 1, 2, 3) for p in plan)
    assert phase_steps(plan, 7) == {0: 21}


def test_fewer_epochs_than_groups_leaves_lower_groups_frozen():
    plan = unfreeze_plan(5, 2, 0.01, 2.6, gradual=True)
    assert plan[-1].trainable == (3, 4)


# 3 groups, 4 epochs of 10 steps, gradual: phases 0, 1, 2, 2 -> T = 10, 10, 20 (cut 1, 1, 2).
LR = 0.01
TRACE = [
    (0, (0, 0, LR / 32)),  # the head alone, at the floor of its first cycle
    (1, (0, 0, LR)),  # its peak after cut = 1 step
    (10, (0, LR / 2.6 / 32, LR / 32)),  # epoch 2: one more group, and a new cycle for both
    (20, (LR / 2.6**2 / 32, LR / 2.6 / 32, LR / 32)),  # epoch 3: everything, the last cycle begins
    (22, (LR / 2.6**2, LR / 2.6, LR)),  # its peak after cut = 2 steps
    (39, tuple(r * (1 + (1 - 17 / 18) * 31) / 32 for r in (LR / 2.6**2, LR / 2.6, LR))),  # t 19 of 20
]


@pytest.mark.parametrize("step,rates", TRACE)
def test_lr_trace_gives_every_group_its_rate_at_every_step(step, rates):
    trace = list(lr_trace(unfreeze_plan(3, 4, LR, 2.6, gradual=True), 10, 0.1, 32))
    assert len(trace) == 40
    assert trace[step] == pytest.approx(rates)


def test_lr_trace_keeps_frozen_groups_at_zero_until_they_unfreeze():
    trace = list(lr_trace(unfreeze_plan(4, 5, LR, 2.6, gradual=True), 3, 0.1, 32))
    first = [next(i for i, r in enumerate(trace) if r[g] > 0) for g in range(4)]
    assert first == [9, 6, 3, 0]  # the head from the start, one group more every epoch of 3 steps
