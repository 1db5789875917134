"""An encoder followed by learnt linear maps (AbC's supervised baseline, method.md §3): one map for
registered (real) images, another for queries (synthetic), both on the base encoder's L2-normalised
features. The maps are fitted from reviewers' verdicts on stored embeddings (training.verdicts), so the
base network is unchanged and a source's vector is `normalise(W_real @ base_vector)`.

Artefact: a directory with `encoder.json` (format attrib-mapped-encoder/1, the base encoder's spec, the
new encoder id, calibration) and `maps.pt` ({"real": [d, d], "synth": [d, d]})."""
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.calibration import Calibration

MAPPED_FORMAT = "attrib-mapped-encoder/1"


class MappedModel(nn.Module):
    """images -> W @ normalise(base(images)); the encoder normalises the result again."""

    def __init__(self, base: nn.Module, weight: torch.Tensor):
        super().__init__()
        self.base = base
        self.map = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        with torch.no_grad():
            self.map.weight.copy_(weight)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.map(nn.functional.normalize(self.base(images).float(), dim=1))


def map_vectors(vectors: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Stored base vectors [n, d] -> mapped, L2-normalised [n, d'] float32 (what MappedModel gives)."""
    out = vectors.astype(np.float32) @ weight.astype(np.float32).T
    return (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def is_mapped_artefact(directory: Path) -> bool:
    meta = directory / "encoder.json"
    return meta.is_file() and json.loads(meta.read_text()).get("format") == MAPPED_FORMAT


def read_maps(directory: Path) -> dict[str, np.ndarray]:
    maps = torch.load(Path(directory) / "maps.pt", map_location="cpu", weights_only=True)
    return {name: maps[name].numpy().astype(np.float32) for name in ("real", "synth")}


def load_mapped_artefact(directory: Path, device: str = "cpu"):
    """The base encoder (loaded by its own spec) with a source map and a query map, shape-checked."""
    from core.encoder import Encoder, load_encoder
    meta = json.loads((directory / "encoder.json").read_text())
    base = load_encoder(meta["base"], device)
    maps = {k: torch.from_numpy(v) for k, v in read_maps(directory).items()}
    for name, weight in maps.items():
        if weight.ndim != 2 or weight.shape[1] != base.dim or weight.shape[0] != int(meta["dim"]):
            raise ValueError(f"{directory}: map {name!r} has shape {tuple(weight.shape)}; "
                             f"expected ({meta['dim']}, {base.dim}) for base {base.encoder_id}")
    # A base that is itself mapped (a second verdict retrain) embeds queries through its own query map:
    # the stored query vectors the new maps were fitted on came from there, so the chain must too.
    base_query = base.query_model if base.query_model is not None else base.model
    return Encoder(meta["encoder_id"], MappedModel(base.model, maps["real"]), base.preprocess, int(meta["dim"]),
                   Calibration.from_dict(meta.get("calibration")), device,
                   query_model=MappedModel(base_query, maps["synth"]))
