"""Per-block training diagnostics (diagnostics.py): what they measure, on blocks whose answer is known."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from ulmfit_cli.training.diagnostics import LayerDiagnostics


@pytest.fixture(autouse=True)
def _one_thread():
    torch.manual_seed(0)
    torch.set_num_threads(1)


def test_means_per_block_match_a_direct_computation_and_skip_frozen_and_eval():
    blocks = nn.ModuleList(nn.Sequential(nn.Linear(8, 8), nn.Tanh()) for _ in range(3))
    blocks[0].requires_grad_(False)  # frozen, as under gradual unfreezing
    diag = LayerDiagnostics(blocks)
    expected_cos, expected_grad = [[] for _ in blocks], [[] for _ in blocks]
    for _ in range(4):
        h = torch.randn(5, 7, 8)
        for i, b in enumerate(blocks):
            out = b(h)
            expected_cos[i].append(F.cosine_similarity(h, out, dim=-1).mean().item())
            h = out
        for b in blocks:
            b.zero_grad()
        h.pow(2).sum().backward()
        diag.after_backward()
        for i, b in enumerate(blocks[1:], 1):
            expected_grad[i].append(torch.cat([p.grad.flatten() for p in b.parameters()]).norm().item())
    blocks.eval()
    blocks[0](torch.randn(2, 3, 8))  # evaluation passes are not training diagnostics
    row = diag.epoch()
    assert row["layer_cos"] == pytest.approx([sum(c) / 4 for c in expected_cos], abs=1e-5)
    assert row["grad_norm"][0] is None
    assert row["grad_norm"][1:] == pytest.approx([sum(g) / 4 for g in expected_grad[1:]], rel=1e-5)
    assert diag.epoch() == {"grad_norm": [None] * 3, "layer_cos": [None] * 3}  # each epoch starts from zero
    diag.close()
    blocks.train()
    blocks[0](torch.randn(2, 3, 8))
    assert diag.epoch()["layer_cos"] == [None] * 3  # closed: the hooks are gone


def test_a_block_that_adds_nothing_reads_as_collapsed():
    """cos(output, input) is 1 when a block passes its input through (the collapse the plot is there to show)."""
    identity = nn.ModuleList([nn.Identity(), nn.Linear(4, 4)])
    diag = LayerDiagnostics(identity)
    identity[1](identity[0](torch.randn(3, 4)))
    cos = diag.epoch()["layer_cos"]
    assert cos[0] == pytest.approx(1.0) and cos[1] < 0.99
