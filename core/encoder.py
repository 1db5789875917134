"""One interface for every image encoder: `embed(images) -> L2-normalised float32 [n, d]`.

Encoders are named by a spec string:
  builtin:efficientnet-lite0    packaged ImageNet weights (the offline default)
  open_clip:MODEL:PRETRAINED    any open_clip model; PRETRAINED is a hub tag or a local file path
  /path/to/artefact             an encoder exported by `python -m training export`
"""
import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from core.backbones import LITE0_PREPROCESS, Preprocess, load_packaged_lite0, packaged_lite0_weights_path
from core.calibration import Calibration, packaged_calibration
from core.transforms import eval_transform

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
    if spec == "builtin:efficientnet-lite0":
        return _load_builtin_lite0(device)
    if spec.startswith("open_clip:"):
        _, model_name, pretrained = spec.split(":", 2)
        return load_open_clip_encoder(model_name, pretrained, device)
    if Path(spec).is_dir():
        from core.mapping import is_mapped_artefact, load_mapped_artefact
        if is_mapped_artefact(Path(spec)):
            return load_mapped_artefact(Path(spec), device)
        return load_artefact(Path(spec), device)
    raise ValueError(f"unknown encoder spec {spec!r}")


def encoder_identity(spec: str) -> tuple[str, int]:
    """(encoder_id, dim) of an encoder spec without building its model or reading its weights: an
    artefact says both in its `encoder.json`, the built-in encoder is named by its weights' digest, an
    open_clip model by its name and tag (its config gives the dim). For tools that only need to know
    which index belongs to the encoder (worker.consistency), not to run it."""
    if spec == "builtin:efficientnet-lite0":
        return builtin_lite0_encoder_id(), 1280
    if spec.startswith("open_clip:"):
        import open_clip
        _, model_name, pretrained = spec.split(":", 2)
        config = open_clip.get_model_config(model_name)
        if config is None or "embed_dim" not in config:
            encoder = load_open_clip_encoder(model_name, pretrained, "cpu")  # no config to read: ask the model
            return encoder.encoder_id, encoder.dim
        tag = file_digest(pretrained) if Path(pretrained).is_file() else pretrained
        return f"open_clip-{model_name}@{tag}", int(config["embed_dim"])
    meta_path = Path(spec) / "encoder.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())  # exported and mapped artefacts alike
        return meta["encoder_id"], int(meta["dim"])
    raise ValueError(f"unknown encoder spec {spec!r}")


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


def _load_builtin_lite0(device: str) -> Encoder:
    encoder_id = builtin_lite0_encoder_id()
    return Encoder(encoder_id, load_packaged_lite0(), LITE0_PREPROCESS, 1280, packaged_calibration(encoder_id), device)


class _OpenClipImageTower(nn.Module):
    def __init__(self, clip_model: nn.Module):
        super().__init__()
        self.clip_model = clip_model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.clip_model.encode_image(images)


def load_open_clip_encoder(model_name: str, pretrained: str, device: str = "cpu") -> Encoder:
    """An open_clip image tower. `pretrained` is a hub tag (fetched at image build time in production)
    or a local checkpoint file; the preprocessing comes from the model's own config."""
    import open_clip
    model, _, val_transform = open_clip.create_model_and_transforms(model_name, pretrained=pretrained)
    config = model.visual.preprocess_cfg
    preprocess = Preprocess(
        size=_first(config["size"]), crop_pct=1.0, mean=tuple(config["mean"]), std=tuple(config["std"]),
        interpolation=config.get("interpolation", "bicubic"))
    tag = file_digest(pretrained) if Path(pretrained).is_file() else pretrained
    dim = model.visual.output_dim if hasattr(model.visual, "output_dim") else model.text_projection.shape[1]
    encoder_id = f"open_clip-{model_name}@{tag}"
    return Encoder(encoder_id, _OpenClipImageTower(model), preprocess, int(dim), packaged_calibration(encoder_id),
                   device)


def _first(size) -> int:
    return int(size[0] if isinstance(size, (tuple, list)) else size)


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
