"""Backbone specs -> a trunk network (images -> pooled features), its preprocessing and an id, for serving
and training alike, so both accept the same choice:

  builtin:efficientnet-lite0     packaged ImageNet weights (the offline default; `tf_efficientnet_lite0` too)
  timm:ARCH:/path/ckpt.pth       any timm architecture with a local checkpoint (DINO, MoCo v3, timm, ...)
  open_clip:MODEL:PRETRAINED     an open_clip image tower; PRETRAINED is a hub tag (fetched at image build
                                 time) or a local checkpoint file
  ARCH                           (training only) a bare timm name: random initialisation, loudly

Local files go through core.local_weights (prefixes and DINO/MoCo containers handled, every key and shape
checked). timm models are always created with `pretrained=False`: nothing is downloaded. The preprocessing
is the architecture's own (timm's data config, open_clip's preprocess_cfg). An id names the weights by the
file's digest, so another file is another encoder."""
import hashlib
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from torch import nn

from core.backbones import (
    LITE0_PREPROCESS,
    Preprocess,
    create_trunk,
    load_packaged_lite0,
    packaged_lite0_weights_path,
)
from core.local_weights import load_local_weights

BUILTIN = "builtin:efficientnet-lite0"
LITE0 = "tf_efficientnet_lite0"
_INTERPOLATIONS = ("bicubic", "bilinear")


@dataclass
class Backbone:
    trunk: nn.Module          # images [n, 3, S, S] -> features [n, dim]
    preprocess: Preprocess    # how serving turns an image into the trunk's input
    dim: int
    backbone_id: str          # the encoder id serving gives this backbone unchanged
    architecture: str         # rebuilds the network without weights: a timm name, or "open_clip:MODEL"


def file_digest(path: str | Path, length: int = 12) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


@lru_cache
def builtin_lite0_encoder_id() -> str:
    """Named by the digest of the packaged weights, so another package version is another encoder."""
    return f"efficientnet-lite0-imagenet@{file_digest(packaged_lite0_weights_path())}"


def is_backbone_spec(spec: str) -> bool:
    return spec == BUILTIN or spec.startswith(("timm:", "open_clip:"))


def load_backbone(spec: str, allow_random: bool = False) -> Backbone:
    """The trunk a spec names, with its weights. `allow_random`: a bare timm name other than Lite0 starts
    from random initialisation (training experiments); serving never allows it."""
    if spec in (BUILTIN, LITE0):
        return Backbone(load_packaged_lite0(), LITE0_PREPROCESS, 1280, builtin_lite0_encoder_id(), LITE0)
    if spec.startswith("timm:"):
        _, arch, weights = (spec.split(":", 2) + [""])[:3]
        if not weights:
            raise ValueError(f"{spec!r}: a timm backbone needs a local checkpoint file (timm:ARCH:/path/file); "
                             "nothing is downloaded")
        trunk = load_local_weights(timm_trunk(arch), weights, f"timm {arch}")
        return Backbone(trunk, timm_preprocess(trunk), int(trunk.num_features), f"timm-{arch}@{file_digest(weights)}",
                        arch)
    if spec.startswith("open_clip:"):
        _, model_name, pretrained = (spec.split(":", 2) + [""])[:3]
        return _open_clip_backbone(model_name, pretrained)
    if allow_random and ":" not in spec:
        warnings.warn(f"no weights for {spec}: starting from random initialisation")
        trunk = timm_trunk(spec)
        return Backbone(trunk, timm_preprocess(trunk), int(trunk.num_features), f"{spec}@random-init", spec)
    raise ValueError(f"unknown backbone spec {spec!r} (builtin:efficientnet-lite0, timm:ARCH:FILE, "
                     "open_clip:MODEL:PRETRAINED)")


def create_architecture(architecture: str) -> nn.Module:
    """The network of `Backbone.architecture`, randomly initialised (an artefact's weights.pt fills it)."""
    if architecture.startswith("open_clip:"):
        import open_clip
        return open_clip.create_model(architecture.split(":", 1)[1], pretrained=None, pretrained_text=False).visual
    return timm_trunk(architecture)


def architecture_of(spec: str) -> str:
    """`Backbone.architecture` of a spec, without loading anything (an export rebuilds the network)."""
    if spec in (BUILTIN, LITE0):
        return LITE0
    family, _, rest = spec.partition(":")
    if family == "timm":
        return rest.split(":", 1)[0]
    if family == "open_clip":
        return f"open_clip:{rest.split(':', 1)[0]}"
    return spec


def architecture_preprocess(architecture: str, trunk: nn.Module) -> Preprocess:
    """The serving preprocessing of an architecture's network (as `load_backbone` gives it)."""
    if architecture == LITE0:
        return LITE0_PREPROCESS
    if architecture.startswith("open_clip:"):
        return _open_clip_preprocess(trunk)
    return timm_preprocess(trunk)


def feature_dim(trunk: nn.Module) -> int:
    """Width of a trunk's pooled features: timm's `num_features`, an open_clip tower's `output_dim`."""
    for name in ("num_features", "output_dim"):
        if isinstance(getattr(trunk, name, None), int):
            return int(getattr(trunk, name))
    raise ValueError(f"cannot tell the feature width of {type(trunk).__name__}")


def timm_trunk(arch: str) -> nn.Module:
    try:
        return create_trunk(arch)
    except RuntimeError as exc:  # timm: "Unknown model (...)"
        raise ValueError(f"timm has no architecture {arch!r}: {exc}") from exc


def timm_preprocess(trunk: nn.Module) -> Preprocess:
    from timm.data import resolve_model_data_config
    config = resolve_model_data_config(trunk)
    return Preprocess(size=int(config["input_size"][-1]), crop_pct=float(config["crop_pct"]),
                      mean=tuple(config["mean"]), std=tuple(config["std"]),
                      interpolation=_interpolation(config.get("interpolation")))


def _interpolation(name: str | None) -> str:
    """Our transforms know bicubic and bilinear (core.transforms, core.preprocess); anything else -> bicubic."""
    return name if name in _INTERPOLATIONS else "bicubic"


def _open_clip_backbone(model_name: str, pretrained: str) -> Backbone:
    import open_clip
    if not pretrained:
        raise ValueError(f"open_clip:{model_name}: name the weights (open_clip:MODEL:TAG or open_clip:MODEL:/path)")
    local = Path(pretrained).is_file()
    if not local and ("/" in pretrained or Path(pretrained).suffix):
        raise FileNotFoundError(f"no checkpoint file {pretrained}")
    # A local file: build the bare network (no text-tower weights fetched from a hub), then load and check.
    model = open_clip.create_model(model_name, pretrained=None, pretrained_text=False) if local else \
        open_clip.create_model(model_name, pretrained=pretrained)
    visual = model.visual
    if local:
        load_local_weights(visual, pretrained, f"open_clip {model_name} image tower")
    dim = visual.output_dim if hasattr(visual, "output_dim") else model.text_projection.shape[1]
    tag = file_digest(pretrained) if local else pretrained
    return Backbone(visual, _open_clip_preprocess(visual), int(dim), f"open_clip-{model_name}@{tag}",
                    f"open_clip:{model_name}")


def _open_clip_preprocess(visual: nn.Module) -> Preprocess:
    config = visual.preprocess_cfg
    return Preprocess(size=_first(config["size"]), crop_pct=1.0, mean=tuple(config["mean"]),
                      std=tuple(config["std"]), interpolation=_interpolation(config.get("interpolation")))


def _first(size) -> int:
    return int(size[0] if isinstance(size, (tuple, list)) else size)
