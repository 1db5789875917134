"""TrainConfig: every knob of a training run, with named presets, JSON files and key=value overrides.

The whole config is saved inside each checkpoint, so a run describes itself (nanoGPT habit)."""
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path


@dataclass
class TrainConfig:
    run_name: str = "default"
    out_dir: str = "var/training/default"
    # Backbone, as serving names it (core.trunks): tf_efficientnet_lite0 / builtin:efficientnet-lite0 (packaged
    # ImageNet weights), timm:ARCH:/path/ckpt.pth (a local checkpoint: DINO, MoCo v3, ...), open_clip:MODEL:TAG
    # or open_clip:MODEL:/path. A bare timm name starts from random weights. No hub download happens.
    backbone: str = "tf_efficientnet_lite0"
    # "head": projector/predictor only; "last_k": the last `trainable_blocks` blocks (EfficientNet stages,
    # ResNet layers, ViT transformer blocks) + what follows them (conv_head/bn2, norm); "all".
    trainable: str = "last_k"
    trainable_blocks: int = 1
    projector_dims: list[int] = field(default_factory=lambda: [1280, 1024, 256])  # [0]: set to the trunk's width
    predictor_dims: list[int] = field(default_factory=lambda: [256, 1024, 256])
    # Losses (method.md §2): L = align_loss + infomax_lambda * info_loss.
    tau: float = 0.2
    infomax_lambda: float = 0.1
    infomax_eps: float = 0.05
    # "batch", or "ema": a running covariance (for small batches) whose newest batch carries the
    # gradient, so the effective weight of the Infomax gradient is infomax_lambda * (1 - momentum).
    covariance: str = "ema"
    covariance_momentum: float = 0.9
    # MoCo-v3 key encoder momentum, cosine-increased from base to 1 over training.
    moco_momentum: float = 0.99
    # Optimiser.
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 10
    epochs: int = 8
    max_steps: int = 0  # 0 = no cap; a cap makes smoke runs finish in seconds
    batch_size: int = 32
    image_size: int = 160
    # Augmentation strengths (moco-v3 recipe, plus cross-domain ops: our queries are renderings).
    crop_min_scale: float = 0.3
    jitter_strength: float = 0.4
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    solarize_p: float = 0.1
    posterize_p: float = 0.2
    edge_p: float = 0.2
    # Data: folders are scanned recursively; source and synthetic images are mixed, never paired.
    source_dirs: list[str] = field(default_factory=list)
    synthetic_dirs: list[str] = field(default_factory=list)
    use_registered_sources: bool = False
    use_collected_queries: bool = False
    # Export: which encoder becomes the artefact, and where serving reads its embedding.
    export_from: str = "query"  # "query" or "key"
    embed_from: str = "projector"  # "projector" output, or "backbone" features (projector_dims=None)
    seed: int = 0
    device: str = "cpu"
    amp: bool = True  # only takes effect on cuda
    num_threads: int = 0  # 0 = settings.torch_threads
    num_workers: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        return cls(**data)


PRESETS: dict[str, dict] = {
    # Seconds on a 2-core CPU: tiny images, a handful of steps. For tests and wiring checks.
    "smoke": dict(run_name="smoke", out_dir="var/training/smoke", image_size=64, epochs=1, max_steps=3,
                  batch_size=8, projector_dims=[1280, 256, 64], predictor_dims=[64, 256, 64],
                  warmup_steps=1, covariance="batch"),
    # Well under 20 min on a 2-core CPU for ~160 photos + a few hundred pool images: only the last
    # stage and conv_head are trained, the frozen stages run once per view under no_grad.
    "default": dict(),
    # A GPU run: more of the backbone, larger images and batches.
    "gpu": dict(run_name="gpu", out_dir="var/training/gpu", trainable="last_k", trainable_blocks=3,
                image_size=224, batch_size=128, epochs=50, device="cuda", covariance="batch"),
}


def parse_value(text: str, current):
    """'key=value' values are JSON when they parse (numbers, lists, booleans), strings otherwise."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(current, list) and isinstance(value, str):
        value = [v for v in value.split(",") if v]
    return value


def load_config(preset: str = "default", config_file: str | None = None,
                overrides: list[str] | None = None) -> TrainConfig:
    """Preset, then a JSON file on top, then key=value overrides on top of that."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    config = TrainConfig.from_dict(PRESETS[preset])
    if config_file:
        data = json.loads(Path(config_file).read_text())
        config = TrainConfig.from_dict({**config.to_dict(), **data})
    return apply_overrides(config, overrides or [])


def apply_overrides(config: TrainConfig, overrides: list[str]) -> TrainConfig:
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not hasattr(config, key):
            raise ValueError(f"bad override {item!r} (expected key=value with a TrainConfig key)")
        config = replace(config, **{key: parse_value(text, getattr(config, key))})
    return config
