"""A checkpoint file an operator downloaded elsewhere (DINO, MoCo v3, timm, open_clip) -> the state dict of
one architecture, every key and shape checked before anything is loaded.

Self-supervised checkpoints wrap the backbone's tensors in several ways, so this module finds them:
- a container key: DINO's full checkpoints hold `teacher` and `student` (the teacher is what DINO evaluates,
  so it wins), MoCo v3's `state_dict`, others `model`, `state_dict_ema`, ...;
- a key prefix: `module.` (DistributedDataParallel, stripped everywhere), then whichever of `backbone.`,
  `base_encoder.` (MoCo v3's online encoder, preferred over `momentum_encoder.`), `encoder.`, `visual.`, ...
  makes the most of the model's keys match;
- the checkpoint's own classifier or projection head (`fc.*`, `head.*`, ...), which a trunk without a
  classifier does not have, is dropped.
Anything else that does not fit (a missing tensor, an unexpected one, a shape) refuses the file, naming the
mismatch: serving a half-loaded network would give confident nonsense.

Files are read with `torch.load(weights_only=True)` (no arbitrary code from a pickle; argparse namespaces,
which DINO stores as `args`, are allowed) or as `.safetensors`."""
import argparse
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

CONTAINERS = ("teacher", "state_dict", "model", "module", "model_state", "model_state_dict", "net",
              "state_dict_ema", "model_ema", "student")
PREFERRED_PREFIXES = ("", "backbone.", "base_encoder.", "encoder.", "trunk.", "visual.", "model.",
                      "momentum_encoder.")
HEAD_NAMES = ("fc", "head", "heads", "classifier", "last_linear", "projection_head", "projector", "predictor")
SHOWN = 5  # mismatching names shown per kind in an error


class CheckpointMismatch(ValueError):
    """The file holds no state dict, or one that does not fit the architecture; the message says where."""


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The flat name -> tensor dict inside a checkpoint file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointMismatch(f"{path} holds Python objects that torch will not unpickle safely; save its "
                                 f"state dict alone (torch.save(ckpt['state_dict'], ...)) and use that file. "
                                 f"torch said: {str(exc).splitlines()[0]}") from exc
    tensors = _find_state(content)
    if tensors is None:
        keys = sorted(content)[:10] if isinstance(content, Mapping) else type(content).__name__
        raise CheckpointMismatch(f"{path} holds no state dict of tensors (top level: {keys})")
    return tensors


def _is_state(value) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def _find_state(content, depth: int = 0) -> dict[str, torch.Tensor] | None:
    if _is_state(content):
        return dict(content)
    if not isinstance(content, Mapping) or depth > 2:
        return None
    for key in CONTAINERS:
        if key in content:
            found = _find_state(content[key], depth + 1)
            if found is not None:
                return found
    return None


def _strip_module(name: str) -> str:
    while name.startswith("module."):
        name = name[len("module."):]
    return name


def _candidate_prefixes(names: list[str]) -> list[str]:
    found = {""}
    for name in names:
        parts = name.split(".")
        found.update(".".join(parts[:i]) + "." for i in range(1, min(3, len(parts))))
    rank = {p: i for i, p in enumerate(PREFERRED_PREFIXES)}
    return sorted(found, key=lambda p: (rank.get(p, len(rank)), len(p), p))


def _best_prefix(tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> tuple[str, int]:
    """The prefix under which most tensors match the model by name and shape, then by name alone (a CLIP
    checkpoint's text tower shares names like `transformer.resblocks.0...` with its image tower, not their
    shapes); returns it and how many names it matches."""
    best, best_score = "", (-1, -1)
    for prefix in _candidate_prefixes(list(tensors)):
        named = [(n[len(prefix):], t) for n, t in tensors.items()
                 if n.startswith(prefix) and n[len(prefix):] in expected]
        score = (sum(tuple(expected[n].shape) == tuple(t.shape) for n, t in named), len(named))
        if score > best_score:  # candidates come in preference order: a tie keeps the preferred one
            best, best_score = prefix, score
    return best, best_score[1]


def _listed(names) -> str:
    names = list(names)
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def fit_state_dict(tensors: Mapping[str, torch.Tensor], model: nn.Module, what: str,
                   head_names: tuple[str, ...] = HEAD_NAMES) -> dict[str, torch.Tensor]:
    """The tensors of `model`'s state dict, taken from `tensors`; CheckpointMismatch names every misfit.
    `what` names checkpoint and architecture in the message."""
    target = model.state_dict()
    stripped = {_strip_module(k): v for k, v in tensors.items()}
    prefix, hits = _best_prefix(stripped, target)
    if hits <= 0:
        raise CheckpointMismatch(f"{what}: no tensor of the checkpoint fits the architecture (checkpoint keys "
                                 f"look like {_listed(stripped)}; the model expects {_listed(target)})")
    picked = {k[len(prefix):]: v for k, v in stripped.items() if k.startswith(prefix)}
    unexpected = [k for k in picked if k not in target and k.split(".")[0] not in head_names]
    missing = [k for k in target if k not in picked and not k.endswith("num_batches_tracked")]
    shapes = [f"{k}: checkpoint {tuple(picked[k].shape)}, model {tuple(v.shape)}"
              for k, v in target.items() if k in picked and tuple(picked[k].shape) != tuple(v.shape)]
    problems = [f"{len(shapes)} shape mismatch(es) ({_listed(shapes)})" if shapes else "",
                f"{len(missing)} tensor(s) missing from the checkpoint ({_listed(missing)})" if missing else "",
                f"{len(unexpected)} unexpected tensor(s) ({_listed(unexpected)})" if unexpected else ""]
    problems = [p for p in problems if p]
    if problems:
        where = f" under prefix {prefix!r}" if prefix else ""
        raise CheckpointMismatch(f"{what} does not fit{where}: " + "; ".join(problems))
    loaded = {k: picked[k].to(target[k].dtype) for k in target if k in picked}
    return {**{k: v for k, v in target.items() if k not in loaded}, **loaded}


def load_local_weights(model: nn.Module, path: str | Path, what: str) -> nn.Module:
    """Load `path` into `model` (strictly, after `fit_state_dict`'s checks); returns the model."""
    model.load_state_dict(fit_state_dict(read_tensors(path), model, f"checkpoint {path} for {what}"), strict=True)
    return model
