"""Training checkpoint -> encoder artefact (`encoder.json` + `weights.pt`) that core.encoder loads.

    python -m training export var/training/default/checkpoint.pt var/artifacts/encoders/my-run [--calibrate ...]

We export the *query* encoder by default: it is the network both losses optimise directly (Infomax
whitens its projector output), while the EMA key encoder lags it by ~1/(1-m) steps, which is most of
a short CPU run. `export_from=key` in the config picks the EMA copy instead (DINO-style teacher)."""
import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from core.calibration import Calibration
from core.encoder import ARTEFACT_FORMAT, file_digest
from core.trunks import LITE0, architecture_of, architecture_preprocess, feature_dim
from training.checkpoint import load_checkpoint
from training.config import TrainConfig
from training.model import MoCo, build_moco, projector_dims


def rebuild_moco(config: TrainConfig, state: dict) -> MoCo:
    model = build_moco(config)
    model.load_state_dict(state)
    return model.eval()


def encoder_metadata(config: TrainConfig, checkpoint: dict, encoder_id: str, dim: int,
                     projector: list[int] | None, trunk) -> dict:
    architecture = architecture_of(config.backbone)
    return {
        "format": ARTEFACT_FORMAT,
        "encoder_id": encoder_id,
        "model": {"backbone": architecture, "projector_dims": projector},
        "preprocess": architecture_preprocess(architecture, trunk).to_dict(),
        "dim": dim,
        "calibration": Calibration().to_dict(),
        "base_encoder_id": checkpoint.get("base_encoder_id"),
        "training": {"config": config.to_dict(), "steps": checkpoint["step"],
                     "train_seconds": checkpoint.get("train_seconds"),
                     "final_losses": checkpoint["history"][-1] if checkpoint["history"] else None},
    }


def _id_stem(config: TrainConfig) -> str:
    """`attrib-lite0-RUN` for the default backbone (as before), else `attrib-ARCH-RUN`."""
    architecture = architecture_of(config.backbone)
    name = "lite0" if architecture == LITE0 else architecture.replace("open_clip:", "open_clip-").replace("/", "-")
    return f"attrib-{name}-{config.run_name}"


def export_checkpoint(checkpoint_path: str | Path, out_dir: str | Path, embed_from: str | None = None,
                      export_from: str | None = None) -> Path:
    """Write the artefact to a temp dir next to `out_dir`, then rename it into place."""
    checkpoint = load_checkpoint(checkpoint_path)
    config = TrainConfig.from_dict(checkpoint["config"])
    embed_from = embed_from or config.embed_from
    with_projector = embed_from == "projector"
    model = rebuild_moco(config, checkpoint["model"]).embedding_model(export_from or config.export_from,
                                                                      with_projector)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}-"))
    torch.save(model.state_dict(), tmp / "weights.pt")
    encoder_id = f"{_id_stem(config)}-{embed_from}@{file_digest(tmp / 'weights.pt')}"
    dims = projector_dims(config, model.trunk)
    dim = dims[-1] if with_projector else feature_dim(model.trunk)
    meta = encoder_metadata(config, checkpoint, encoder_id, dim, dims if with_projector else None, model.trunk)
    (tmp / "encoder.json").write_text(json.dumps(meta, indent=2))
    tmp.chmod(0o755)  # mkdtemp makes 0700; workers may run as another user
    if out_dir.exists():
        # A published pair may point here: replacing its weights would break the pair's encoder id.
        shutil.rmtree(tmp)
        raise FileExistsError(f"{out_dir} exists; export to a new directory")
    os.replace(tmp, out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m training export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("out_dir")
    parser.add_argument("--embed-from", choices=["projector", "backbone"],
                        help="default: the run's config.embed_from")
    parser.add_argument("--export-from", choices=["query", "key"], help="default: config.export_from")
    parser.add_argument("--calibrate", metavar="DATASET", nargs="?", const="",
                        help="fit calibration after export: on a labelled folder-format DATASET, "
                             "or (no value) on pseudo-pairs from the registered works")
    args = parser.parse_args(argv)
    path = export_checkpoint(args.checkpoint, args.out_dir, args.embed_from, args.export_from)
    if args.calibrate is not None:
        from training.calibrate import calibrate_artefact
        calibrate_artefact(path, args.calibrate or None)
    print(f"encoder artefact: {path}")
    return path
