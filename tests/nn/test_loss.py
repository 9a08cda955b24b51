"""The frozen-head loss is cross-entropy: same sum, same gradient, chunk by chunk, at any logit scale."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import tunery.nn.loss as loss_module
from tunery.nn.loss import frozen_head_cross_entropy


@pytest.mark.parametrize("chunk", [1024, 3])  # 3: seven positions run in three chunks
@pytest.mark.parametrize("scale", [1.0, 300.0])  # 300: logits in the thousands, exp() overflows unshifted
def test_the_frozen_head_loss_is_the_summed_cross_entropy_and_its_gradient(monkeypatch, chunk, scale):
    monkeypatch.setattr(loss_module, "HEAD_CHUNK", chunk)
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 11, dtype=torch.float64).requires_grad_(False)
    head.weight.mul_(scale)
    hidden = torch.randn(7, 8, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 11, (7,))

    got = frozen_head_cross_entropy(hidden, head, targets)
    (grad,) = torch.autograd.grad(got * 0.5, hidden)
    expected = F.cross_entropy(head(hidden), targets, reduction="sum")
    (expected_grad,) = torch.autograd.grad(expected * 0.5, hidden)

    assert torch.isfinite(got)
    torch.testing.assert_close(got.double(), expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-6)  # the logits are float32
