"""MoCo-v3 module: query encoder = trunk + projector + predictor; key encoder = EMA of trunk + projector.

Only the last stages of the trunk are usually trained (config.trainable; training.stages splits the
trunk). The frozen stages are shared by both encoders (an EMA of frozen weights is those weights), so
they run once per view, under no_grad and in eval mode (their BatchNorm statistics stay pretrained).
The trunk is any backbone core.trunks loads (config.backbone); the projector's input width is its
feature width, whatever projector_dims[0] says."""
import copy
import math

import torch
from torch import nn

from core.heads import EmbeddingModel, mlp
from core.trunks import Backbone, architecture_of, create_architecture, feature_dim
from training.stages import count_frozen, trunk_stages


class MoCo(nn.Module):
    def __init__(self, trunk: nn.Module, projector_dims: list[int], predictor_dims: list[int],
                 trainable: str = "last_k", trainable_blocks: int = 1):
        super().__init__()
        self.trunk = trunk
        self.projector = mlp(projector_dims)
        self.predictor = mlp(predictor_dims, last_bn=False)
        self.n_frozen = count_frozen(trunk_stages(trunk), trainable, trainable_blocks)
        for stage in trunk_stages(trunk).modules[:self.n_frozen]:
            stage.requires_grad_(False)
        self.key_trunk = copy.deepcopy(trunk).requires_grad_(False)
        self.key_projector = copy.deepcopy(self.projector).requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        for trunk in (self.trunk, self.key_trunk):
            for stage in trunk_stages(trunk).modules[:self.n_frozen]:
                stage.eval()
        return self

    def frozen_features(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            for stage in trunk_stages(self.trunk).modules[:self.n_frozen]:
                images = stage(images)
        return images

    def _tail(self, trunk: nn.Module, x: torch.Tensor) -> torch.Tensor:
        for stage in trunk_stages(trunk).modules[self.n_frozen:]:
            x = stage(x)
        return x

    def forward(self, view_1: torch.Tensor, view_2: torch.Tensor) -> dict[str, torch.Tensor]:
        """Two views [n, 3, H, W] -> projector outputs z (for Infomax), predictions q and keys k."""
        h1, h2 = self.frozen_features(view_1), self.frozen_features(view_2)
        z1, z2 = self.projector(self._tail(self.trunk, h1)), self.projector(self._tail(self.trunk, h2))
        q1, q2 = self.predictor(z1), self.predictor(z2)
        with torch.no_grad():
            k1 = self.key_projector(self._tail(self.key_trunk, h1))
            k2 = self.key_projector(self._tail(self.key_trunk, h2))
        return {"z1": z1, "z2": z2, "q1": q1, "q2": q2, "k1": k1, "k2": k2}

    @torch.no_grad()
    def update_key_encoder(self, momentum: float) -> None:
        pairs = [(self.trunk, self.key_trunk), (self.projector, self.key_projector)]
        for online, key in pairs:
            for p, p_key in zip(online.parameters(), key.parameters()):
                p_key.mul_(momentum).add_(p.detach(), alpha=1 - momentum)

    def embedding_model(self, source: str = "query", with_projector: bool = True) -> EmbeddingModel:
        """The exported network: a copy of the query (or key) trunk, plus its projector if asked."""
        trunk, projector = (self.trunk, self.projector) if source == "query" else (self.key_trunk, self.key_projector)
        head = copy.deepcopy(projector) if with_projector else None
        return EmbeddingModel(copy.deepcopy(trunk), head).eval()


def moco_momentum(step: int, total_steps: int, base: float) -> float:
    """MoCo-v3 schedule: base -> 1 along a half cosine."""
    return 1 - (1 - base) * (math.cos(math.pi * step / max(1, total_steps)) + 1) / 2


def projector_dims(config, trunk: nn.Module) -> list[int]:
    """config.projector_dims with the first width set to the trunk's feature width."""
    return [feature_dim(trunk), *config.projector_dims[1:]]


def build_moco(config, backbone: Backbone | None = None) -> MoCo:
    """`backbone`: the loaded trunk (training); None: the architecture, randomly initialised (an export
    fills it from the checkpoint, so the backbone's original weights file is not needed there)."""
    trunk = backbone.trunk if backbone else create_architecture(architecture_of(config.backbone))
    return MoCo(trunk, projector_dims(config, trunk), config.predictor_dims, config.trainable,
                config.trainable_blocks)
