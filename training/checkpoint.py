"""Self-describing training checkpoints: weights, optimiser, step, loss history and the run's config,
plus the encoder id of the base backbone. Written to a temp file then os.replace'd (never half-written)."""
import os
import tempfile
from pathlib import Path

import torch

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(path: str | Path, state: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ckpt-", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    # Our own files: they hold plain dicts/lists besides tensors, so weights_only=False is needed.
    return torch.load(path, map_location="cpu", weights_only=False)
