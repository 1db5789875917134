"""One interface for every image encoder: `embed(images) -> L2-normalised float32 [n, d]`.

Encoders are named by a spec string:
  builtin:efficientnet-lite0    packaged ImageNet weights (the offline default)
  timm:ARCH:/path/ckpt.pth      any timm architecture with a local checkpoint file (core.trunks)
  open_clip:MODEL:PRETRAINED    any open_clip image tower; PRETRAINED is a hub tag or a local file path
  /path/to/artefact             an encoder exported by `python -m training export`
"""
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from core.backbones import Preprocess
from core.calibration import Calibration, packaged_calibration
from core.transforms import eval_transform
from core.trunks import (  # noqa: F401  (file_digest is imported from here by training)
    builtin_lite0_encoder_id, create_architecture, feature_dim, file_digest, is_backbone_spec, load_backbone,
)

ARTEFACT_FORMAT = "attrib-encoder/1"


@dataclass
class Encoder:
    encoder_id: str
    model: nn.Module  # images [n, 3, H, W] -> features [n, d]
    preprocess: Preprocess
    dim: int
    calibration: Calibration
    device: str = "cpu"
    # Queries through another head than registered images (core.mapping); None: the same model.
    query_model: nn.Module | None = None
    channels_last: bool = False

    def __post_init__(self) -> None:
        self.model.eval().to(self.device)
        if self.query_model is not None:
            self.query_model.eval().to(self.device)
        self._transform = eval_transform(self.preprocess)

    @property
    def asymmetric(self) -> bool:
        return self.query_model is not None

    @torch.inference_mode()
    def embed(self, images: list[Image.Image], batch_size: int = 16, role: str = "source") -> np.ndarray:
        """RGB PIL images -> [n, dim] float32, each row of unit length. `role="query"` embeds images to be
        attributed (an asymmetric encoder maps them differently from registered images)."""
        model = self.query_model if role == "query" and self.query_model is not None else self.model
        chunks = [self._embed_batch(model, images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.dim), np.float32)

    def _embed_batch(self, model: nn.Module, images: list[Image.Image]) -> np.ndarray:
        return self.embed_tensor(torch.stack([self._transform(im.convert("RGB")) for im in images]), model)

    @torch.inference_mode()
    def embed_tensor(self, batch: torch.Tensor, model: nn.Module | None = None) -> np.ndarray:
        """Preprocessed images [n, 3, S, S] (core.pipeline) -> [n, dim] float32, each row of unit length.
        `model`: the query head of an asymmetric encoder; registered images use `self.model`."""
        batch = batch.to(self.device)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        features = (model or self.model)(batch).float()
        return nn.functional.normalize(features, dim=1).cpu().numpy().astype(np.float32)

    def use_channels_last(self, enabled: bool = True) -> "Encoder":
        """NHWC memory layout: 1.28x faster for EfficientNet-Lite0 on this project's CPU (issue 8)."""
        self.channels_last = enabled
        layout = torch.channels_last if enabled else torch.contiguous_format
        for model in (self.model, self.query_model):
            if model is not None:
                model.to(memory_format=layout)
        return self


def load_encoder(spec: str, device: str = "cpu") -> Encoder:
    if is_backbone_spec(spec):
        backbone = load_backbone(spec)
        return Encoder(backbone.backbone_id, backbone.trunk, backbone.preprocess, backbone.dim,
                       packaged_calibration(backbone.backbone_id), device)
    if Path(spec).is_dir():
        from core.mapping import is_mapped_artefact, load_mapped_artefact
        if is_mapped_artefact(Path(spec)):
            return load_mapped_artefact(Path(spec), device)
        return load_artefact(Path(spec), device)
    raise ValueError(f"unknown encoder spec {spec!r}")


def encoder_identity(spec: str) -> tuple[str, int]:
    """(encoder_id, dim) of an encoder spec without loading its weights: an artefact says both in its
    `encoder.json`, the built-in encoder is named by its weights' digest, a timm checkpoint by its file's
    digest (the width comes from the bare architecture); open_clip towers are built. For tools that only
    need to know which index belongs to the encoder (worker.consistency), not to embed anything."""
    if spec == "builtin:efficientnet-lite0":
        return builtin_lite0_encoder_id(), 1280
    if spec.startswith("timm:") and spec.count(":") >= 2:
        _, arch, weights = spec.split(":", 2)
        return f"timm-{arch}@{file_digest(weights)}", feature_dim(create_architecture(arch))
    if is_backbone_spec(spec):
        backbone = load_backbone(spec)
        return backbone.backbone_id, backbone.dim
    meta_path = Path(spec) / "encoder.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())  # exported and mapped artefacts alike
        return meta["encoder_id"], int(meta["dim"])
    raise ValueError(f"unknown encoder spec {spec!r}")


def load_artefact(directory: Path, device: str = "cpu") -> Encoder:
    """An exported encoder: `encoder.json` (self-description) + `weights.pt` (backbone + head)."""
    from core.heads import build_embedding_model
    meta = json.loads((directory / "encoder.json").read_text())
    if meta.get("format") != ARTEFACT_FORMAT:
        raise ValueError(f"{directory} is not an encoder artefact ({meta.get('format')!r})")
    model = build_embedding_model(meta["model"])
    state = torch.load(directory / "weights.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return Encoder(meta["encoder_id"], model, Preprocess.from_dict(meta["preprocess"]), int(meta["dim"]),
                   Calibration.from_dict(meta.get("calibration")), device)
