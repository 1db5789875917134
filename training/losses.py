"""Losses of the method (method.md §2), each returning named terms that end in `_loss`.

The total `align_loss + infomax_lambda * info_loss` is formed in one place: `total_loss`."""
import torch
from torch import nn
from torch.nn import functional as F


class AlignmentLoss(nn.Module):
    """MoCo-v3 contrastive loss: CE(q·kᵀ/τ, identity)·2τ, symmetrised over the two views.

    In-batch negatives come from both domains (source and synthetic are mixed). The 2τ factor
    keeps the gradient scale independent of τ, as in moco-v3."""

    def __init__(self, tau: float = 0.2):
        super().__init__()
        self.tau = tau

    def contrast(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        q, k = F.normalize(q.float(), dim=1), F.normalize(k.float(), dim=1)
        logits = q @ k.T / self.tau
        labels = torch.arange(len(q), device=q.device)
        return F.cross_entropy(logits, labels) * 2 * self.tau

    def forward(self, q1, q2, k1, k2) -> dict[str, torch.Tensor]:
        return {"align_loss": self.contrast(q1, k2) + self.contrast(q2, k1)}


class InfomaxLoss(nn.Module):
    """-(1/d)·log det(Σ_z + εI): maximises Gaussian entropy, whitening and decorrelating z.

    covariance="batch" uses the batch covariance; "ema" uses a running covariance whose newest
    batch term carries the gradient (CorInfoMax-style), which is steadier for small batches."""

    def __init__(self, dim: int, eps: float = 0.05, covariance: str = "batch", momentum: float = 0.9):
        super().__init__()
        if covariance not in ("batch", "ema"):
            raise ValueError(f"covariance must be 'batch' or 'ema', not {covariance!r}")
        self.eps, self.covariance, self.momentum = eps, covariance, momentum
        self.register_buffer("running_cov", torch.eye(dim))

    @staticmethod
    def batch_covariance(z: torch.Tensor) -> torch.Tensor:
        z = z - z.mean(dim=0, keepdim=True)
        return z.T @ z / max(1, len(z) - 1)

    def forward(self, *embeddings: torch.Tensor) -> dict[str, torch.Tensor]:
        z = torch.cat([e.float() for e in embeddings])
        cov = self.batch_covariance(z)
        if self.covariance == "ema":
            cov = self.momentum * self.running_cov + (1 - self.momentum) * cov
            if self.training:
                self.running_cov.copy_(cov.detach())
        eye = torch.eye(cov.shape[0], device=cov.device)
        return {"info_loss": -torch.logdet(cov + self.eps * eye) / cov.shape[0]}


def total_loss(terms: dict[str, torch.Tensor], infomax_lambda: float) -> torch.Tensor:
    """The one place the named terms are weighted and summed."""
    weights = {"align_loss": 1.0, "info_loss": infomax_lambda}
    return sum(weights[name] * value for name, value in terms.items())
