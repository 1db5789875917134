"""A trunk as a sequence of stages whose composition is its forward(), so training can freeze the leading
stages, run them once per view under no_grad, and train only the last `k` blocks (training.model).

Known families (timm): EfficientNet/MobileNet (stem, blocks, conv_head, bn2, pool), ResNet (stem, layer1-4,
pool) and ViT (patch and position embedding, one stage per transformer block, norm + pooling). Any other
trunk (an open_clip image tower, another timm family) is one stage: it trains whole (`trainable=all`) or
not at all (`trainable=head`); `last_k` names the families it knows."""
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Stages:
    modules: list[nn.Module]
    tail: int  # how many trailing stages are not blocks (always trained by `last_k`)
    family: str


class _VitEmbed(nn.Module):
    """timm ViT: patches -> tokens with class/register tokens and position embedding (forward_features'
    start). Registers the embedding modules and parameters, so freezing this stage freezes them."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        object.__setattr__(self, "vit", vit)  # not a submodule: freezing this stage must not freeze all
        self.patch_embed, self.patch_drop, self.norm_pre = vit.patch_embed, vit.patch_drop, vit.norm_pre
        for name in ("cls_token", "reg_token", "pos_embed"):
            if isinstance(getattr(vit, name, None), nn.Parameter):
                setattr(self, name, getattr(vit, name))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.norm_pre(self.patch_drop(self.vit._pos_embed(self.patch_embed(images))))


class _VitTail(nn.Module):
    def __init__(self, vit: nn.Module):
        super().__init__()
        object.__setattr__(self, "vit", vit)
        self.norm, self.fc_norm, self.head = vit.norm, vit.fc_norm, vit.head
        if getattr(vit, "attn_pool", None) is not None:
            self.attn_pool = vit.attn_pool

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.vit.forward_head(self.norm(tokens))


def _pool(trunk: nn.Module) -> nn.Module:
    pool = trunk.global_pool
    return nn.Flatten() if isinstance(pool, nn.Identity) else nn.Sequential(pool, nn.Flatten())


def trunk_stages(trunk: nn.Module) -> Stages:
    if all(hasattr(trunk, a) for a in ("conv_stem", "blocks", "conv_head", "bn2")):
        return Stages([trunk.conv_stem, trunk.bn1, *trunk.blocks, trunk.conv_head, trunk.bn2, _pool(trunk)], 3,
                      "efficientnet")
    if all(hasattr(trunk, a) for a in ("conv1", "bn1", "layer4", "global_pool")):
        stem = nn.Sequential(trunk.conv1, trunk.bn1, trunk.act1, trunk.maxpool)
        return Stages([stem, trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4, _pool(trunk)], 1, "resnet")
    if all(hasattr(trunk, a) for a in ("patch_embed", "_pos_embed", "blocks", "forward_head")):
        return Stages([_VitEmbed(trunk), *trunk.blocks, _VitTail(trunk)], 1, "vit")
    return Stages([trunk], 0, "whole")


def count_frozen(stages: Stages, trainable: str, k: int) -> int:
    """How many leading stages stay frozen. 'last_k' trains the last k blocks plus the tail stages."""
    n = len(stages.modules)
    if trainable == "all":
        return 0
    if trainable == "head":
        return n
    if trainable == "last_k":
        if stages.family == "whole":
            raise ValueError("trainable=last_k needs a trunk made of blocks (timm EfficientNet/MobileNet, ResNet, "
                             "ViT); train this backbone with trainable=head or trainable=all")
        return max(0, n - stages.tail - k)
    raise ValueError(f"trainable must be head, last_k or all, not {trainable!r}")
