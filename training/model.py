"""MoCo-v3 module: query encoder = trunk + projector + predictor; key encoder = EMA of trunk + projector.

Only the last stages of the trunk are usually trained (config.trainable). The frozen stages are
shared by both encoders (an EMA of frozen weights is those weights), so they run once per view,
under no_grad and in eval mode (their BatchNorm statistics stay the ImageNet ones)."""
import copy
import math

import torch
from torch import nn

from core.backbones import load_packaged_lite0, create_trunk
from core.heads import EmbeddingModel, mlp


def trunk_stages(trunk: nn.Module) -> list[nn.Module]:
    """A timm EfficientNet/MobileNet trunk as a sequence of stages whose composition is forward()."""
    pool = nn.Sequential(trunk.global_pool, nn.Flatten()) if not isinstance(trunk.global_pool, nn.Identity) \
        else nn.Flatten()
    return [trunk.conv_stem, trunk.bn1, *trunk.blocks, trunk.conv_head, trunk.bn2, pool]


def count_frozen(trunk: nn.Module, trainable: str, k: int) -> int:
    """How many leading stages stay frozen. 'last_k' trains the last k blocks plus conv_head/bn2."""
    n = len(trunk_stages(trunk))
    if trainable == "all":
        return 0
    if trainable == "head":
        return n
    if trainable == "last_k":
        return max(0, n - 3 - k)  # the 3 = conv_head, bn2, pool
    raise ValueError(f"trainable must be head, last_k or all, not {trainable!r}")


def load_backbone(name: str) -> nn.Module:
    """Packaged ImageNet weights where we have them (offline); otherwise random init, loudly."""
    if name == "tf_efficientnet_lite0":
        return load_packaged_lite0()
    import warnings
    warnings.warn(f"no offline weights for {name}: starting from random initialisation")
    return create_trunk(name)


class MoCo(nn.Module):
    def __init__(self, trunk: nn.Module, projector_dims: list[int], predictor_dims: list[int],
                 trainable: str = "last_k", trainable_blocks: int = 1):
        super().__init__()
        self.trunk = trunk
        self.projector = mlp(projector_dims)
        self.predictor = mlp(predictor_dims, last_bn=False)
        self.n_frozen = count_frozen(trunk, trainable, trainable_blocks)
        for stage in trunk_stages(trunk)[:self.n_frozen]:
            stage.requires_grad_(False)
        self.key_trunk = copy.deepcopy(trunk).requires_grad_(False)
        self.key_projector = copy.deepcopy(self.projector).requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        for stages in (trunk_stages(self.trunk), trunk_stages(self.key_trunk)):
            for stage in stages[:self.n_frozen]:
                stage.eval()
        return self

    def frozen_features(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            for stage in trunk_stages(self.trunk)[:self.n_frozen]:
                images = stage(images)
        return images

    def _tail(self, trunk: nn.Module, x: torch.Tensor) -> torch.Tensor:
        for stage in trunk_stages(trunk)[self.n_frozen:]:
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


def build_moco(config) -> MoCo:
    trunk = load_backbone(config.backbone)
    return MoCo(trunk, config.projector_dims, config.predictor_dims, config.trainable, config.trainable_blocks)
