"""The embedding model an exported encoder runs: backbone trunk, optionally followed by the
trained projector. Shared by training (which adds the predictor and the EMA key encoder) and
serving (which rebuilds the model from the artefact's config alone)."""
import torch
from torch import nn

from core.trunks import create_architecture


def mlp(dims: list[int], last_bn: bool = True) -> nn.Sequential:
    """MoCo-v3 style MLP: Linear-BN-ReLU between layers, BN without affine after the last one."""
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        last = i == len(dims) - 2
        layers.append(nn.Linear(d_in, d_out, bias=False))
        if not last:
            layers += [nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)]
        elif last_bn:
            layers.append(nn.BatchNorm1d(d_out, affine=False))
    return nn.Sequential(*layers)


class EmbeddingModel(nn.Module):
    """images [n, 3, H, W] -> [n, d]: trunk features, or the projector's output when it has one."""

    def __init__(self, trunk: nn.Module, projector: nn.Module | None = None):
        super().__init__()
        self.trunk = trunk
        self.projector = projector

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.trunk(images)
        return self.projector(features) if self.projector is not None else features


def build_embedding_model(config: dict) -> EmbeddingModel:
    """config: {"backbone": a timm name or "open_clip:MODEL" (core.trunks.Backbone.architecture),
    "projector_dims": [in, hidden, ..., out] or None}."""
    trunk = create_architecture(config["backbone"])
    dims = config.get("projector_dims")
    return EmbeddingModel(trunk, mlp(dims) if dims else None)
