"""Losses: known values on tiny cases, and Infomax's preference for whitened embeddings."""
import math

import pytest
import torch

from training.config import load_config
from training.losses import AlignmentLoss, InfomaxLoss, total_loss
from training.model import moco_momentum


def test_alignment_loss_on_orthogonal_pairs():
    tau = 0.5
    q = k = torch.eye(2)
    # each row: logits (1/tau, 0) -> CE = log(1 + e^{-1/tau}); times 2·tau; two symmetric terms
    expected = 2 * (2 * tau * math.log(1 + math.exp(-1 / tau)))
    terms = AlignmentLoss(tau)(q, q, k, k)
    assert set(terms) == {"align_loss"}
    assert terms["align_loss"].item() == pytest.approx(expected, rel=1e-6)


def test_alignment_loss_matches_a_reference_on_random_views():
    """Distinct random views catch swapped pairings (q1 with k1), missing normalisation, transposed logits."""
    torch.manual_seed(0)
    q1, q2, k1, k2 = (torch.randn(6, 8) for _ in range(4))
    tau = 0.2

    def reference(q, k):
        q, k = q / q.norm(dim=1, keepdim=True), k / k.norm(dim=1, keepdim=True)
        logits = (q @ k.T / tau).double()
        log_probs = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        return -log_probs.diagonal().mean() * 2 * tau

    expected = reference(q1, k2) + reference(q2, k1)
    assert AlignmentLoss(tau)(q1, q2, k1, k2)["align_loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert AlignmentLoss(tau)(q1, q2, k2, k1)["align_loss"].item() != pytest.approx(expected.item(), rel=1e-3)


def test_infomax_prefers_whitened_to_collapsed():
    torch.manual_seed(0)
    whitened = torch.randn(256, 16)
    collapsed = torch.randn(1, 16).repeat(256, 1) + 1e-3 * torch.randn(256, 16)
    loss = InfomaxLoss(16, eps=0.05, covariance="batch")
    assert loss(whitened)["info_loss"] < loss(collapsed)["info_loss"]
    # for identity covariance the value is -log(1 + eps)
    assert loss(whitened)["info_loss"].item() == pytest.approx(-math.log(1.05), abs=0.1)


def test_infomax_ema_covariance_updates_running_buffer_and_passes_gradient():
    loss = InfomaxLoss(4, eps=0.1, covariance="ema", momentum=0.5)
    z = torch.randn(32, 4, requires_grad=True)
    value = loss(z)["info_loss"]
    value.backward()
    assert z.grad is not None and not torch.allclose(loss.running_cov, torch.eye(4))


def test_total_loss_weights_info_by_lambda():
    terms = {"align_loss": torch.tensor(2.0), "info_loss": torch.tensor(-1.0)}
    assert total_loss(terms, 0.1).item() == pytest.approx(1.9)
    assert total_loss(terms, 0.0).item() == pytest.approx(2.0)


def test_momentum_schedule_goes_from_base_to_one():
    assert moco_momentum(0, 100, 0.99) == pytest.approx(0.99)
    assert moco_momentum(100, 100, 0.99) == pytest.approx(1.0)


def test_config_overrides_parse_types():
    config = load_config("smoke", None, ["tau=1", "projector_dims=[1280,32]", "source_dirs=a,b", "amp=false"])
    assert config.tau == 1.0 and isinstance(config.tau, float)
    assert config.projector_dims == [1280, 32] and config.source_dirs == ["a", "b"] and config.amp is False
    with pytest.raises(ValueError):
        load_config("smoke", None, ["no_such_key=1"])
