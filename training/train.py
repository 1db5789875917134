"""Train an attribution encoder without pairs: MoCo-v3 alignment + Infomax disentanglement.

    python -m training train --preset default source_dirs=[\"demo/data/dreambooth\"] epochs=4
    python -m training train --config run.json --resume var/training/default/checkpoint.pt
"""
import argparse
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from core.backbones import Preprocess
from core.trunks import load_backbone
from training.augment import two_view_transform
from training.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from training.config import PRESETS, TrainConfig, apply_overrides, load_config
from training.data import UnlabeledImages, gather_training_paths
from training.html_report import REPORT_NAME, training_facts, write_html_report
from training.losses import AlignmentLoss, InfomaxLoss, total_loss
from training.model import MoCo, build_moco, moco_momentum
from training.plots import plot_losses


def check_image_size(trunk: torch.nn.Module, size: int, spec: str) -> None:
    """A ViT takes its own input size only: say so before training starts, not at the first step."""
    was_training = trunk.training
    trunk.eval()
    try:
        with torch.no_grad():
            trunk(torch.zeros(1, 3, size, size))
    except Exception as exc:
        raise ValueError(f"backbone {spec} cannot take image_size={size} images ({type(exc).__name__}: {exc}); "
                         "set image_size to its input size") from exc
    finally:
        trunk.train(was_training)


def setup_runtime(config: TrainConfig) -> torch.device:
    from common.settings import get_settings
    torch.set_num_threads(config.num_threads or get_settings().torch_threads)
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device=cuda asked for, but no GPU is visible")
    return torch.device(config.device)


def make_loader(config: TrainConfig, preprocess: Preprocess) -> DataLoader:
    """Two augmented views per image, normalised as the backbone expects (its mean and std)."""
    paths = gather_training_paths(config)
    dataset = UnlabeledImages(paths, two_view_transform(config, preprocess))
    # BatchNorm in the heads needs > 1 sample; drop_last keeps every batch full.
    batch_size = min(config.batch_size, len(dataset))
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                      num_workers=config.num_workers, persistent_workers=config.num_workers > 0,
                      pin_memory=config.device.startswith("cuda"))


def learning_rate(step: int, total: int, config: TrainConfig) -> float:
    """Linear warm-up, then half-cosine decay to zero."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train(config: TrainConfig, resume: str | Path | None = None) -> Path:
    """Run (or continue) training; returns the checkpoint path."""
    # --- setup -----------------------------------------------------------------------------
    device = setup_runtime(config)
    out_dir = Path(config.out_dir)
    backbone = load_backbone(config.backbone, allow_random=True)
    check_image_size(backbone.trunk, config.image_size, config.backbone)
    loader = make_loader(config, backbone.preprocess)
    model = build_moco(config, backbone).to(device)
    align = AlignmentLoss(config.tau)
    infomax = InfomaxLoss(config.projector_dims[-1], config.infomax_eps, config.covariance,
                          config.covariance_momentum).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    total_steps = config.epochs * len(loader)
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    step, history = 0, []

    # --- resume ------------------------------------------------------------------------------
    if resume:
        state = load_checkpoint(resume)
        model.load_state_dict(state["model"])
        infomax.load_state_dict(state["infomax"])
        optimizer.load_state_dict(state["optimizer"])
        step, history = state["step"], state["history"]

    # --- loop --------------------------------------------------------------------------------
    started = time.time()
    model.train()
    progress = tqdm(total=total_steps, initial=step, desc=f"train {config.run_name}", unit="step")
    while step < total_steps:
        for view_1, view_2 in loader:
            if step >= total_steps:
                break
            lr = learning_rate(step, total_steps, config)
            momentum = moco_momentum(step, total_steps, config.moco_momentum)
            terms = train_step(model, (align, infomax), optimizer, (view_1, view_2), config, lr, momentum)
            step += 1
            history.append({"step": step, **terms})
            progress.set_postfix({k: f"{v:.3f}" for k, v in history[-1].items() if k.endswith("loss")})
            progress.update(1)
        # --- checkpoint once per epoch; the last one is written below, with the run's wall time --
        if step < total_steps:
            write_checkpoint(out_dir, model, infomax, optimizer, step, history, config, backbone.backbone_id)
    progress.close()
    path = write_checkpoint(out_dir, model, infomax, optimizer, step, history, config, backbone.backbone_id,
                            seconds=time.time() - started)
    loss_png = plot_losses(history, out_dir / "loss_curve.png")
    state = {"step": step, "base_encoder_id": backbone.backbone_id, "train_seconds": time.time() - started}
    write_html_report(out_dir / REPORT_NAME, title=f"Training run {config.run_name}",
                      command="python -m training train",
                      facts=training_facts(config.to_dict(), state), history=history, loss_png=loss_png)
    return path


def train_step(model: MoCo, losses: tuple[AlignmentLoss, InfomaxLoss], optimizer, views, config: TrainConfig,
               lr: float, momentum: float) -> dict[str, float]:
    """One optimiser step on a batch of view pairs, then the EMA update of the key encoder."""
    align, infomax = losses
    device = next(model.parameters()).device
    for group in optimizer.param_groups:
        group["lr"] = lr
    # bf16 autocast on GPUs only; the losses cast to float32 themselves (logdet needs it).
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.amp and device.type == "cuda"):
        out = model(*(v.to(device, non_blocking=True) for v in views))
    terms = {**align(out["q1"], out["q2"], out["k1"], out["k2"]), **infomax(out["z1"], out["z2"])}
    loss = total_loss(terms, config.infomax_lambda)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    model.update_key_encoder(momentum)
    return {"loss": loss.item(), **{name: value.item() for name, value in terms.items()}}


def write_checkpoint(out_dir: Path, model: MoCo, infomax: InfomaxLoss, optimizer, step: int,
                     history: list[dict], config: TrainConfig, base_id: str, seconds: float | None = None) -> Path:
    state = {
        "model": model.state_dict(), "infomax": infomax.state_dict(), "optimizer": optimizer.state_dict(),
        "step": step, "history": history, "config": config.to_dict(),
        "base_encoder_id": base_id, "train_seconds": seconds,
    }
    return save_checkpoint(out_dir / CHECKPOINT_NAME, state)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m training train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS))
    parser.add_argument("--config", help="JSON file with TrainConfig keys")
    parser.add_argument("--resume", help="checkpoint to continue from (its config is reused)")
    parser.add_argument("--device", help="shortcut for device=...; 'cuda' enables bf16 autocast")
    parser.add_argument("overrides", nargs="*", help="key=value (values parsed as JSON when they can be)")
    args = parser.parse_args(argv)
    overrides = args.overrides + ([f"device={args.device}"] if args.device else [])
    if args.resume:  # a resumed run keeps its own config; overrides may extend it (e.g. epochs=)
        config = apply_overrides(TrainConfig.from_dict(load_checkpoint(args.resume)["config"]), overrides)
    else:
        config = load_config(args.preset, args.config, overrides)
    path = train(config, resume=args.resume)
    print(f"checkpoint: {path}")
    return path

