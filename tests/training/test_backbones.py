"""Training accepts the backbone specs serving accepts: a timm ResNet and ViT from local checkpoint files
(random weights made here) train a step with only their last block unfrozen, export, and serve. The stage
split that freezing relies on composes to the trunk's own forward."""
import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from core.encoder import load_encoder
from core.trunks import file_digest
from training.__main__ import main as cli
from training.checkpoint import load_checkpoint
from training.stages import Stages, count_frozen, trunk_stages

# Small stand-ins of the families an operator brings (ResNet-50, ViT-S/B): same code paths, seconds here.
ARCHS = {"resnet18": 64, "test_vit": 160}  # architecture -> training image size


@pytest.mark.parametrize("arch", ["tf_efficientnet_lite0", "resnet18", "test_vit"])
def test_stages_compose_to_the_trunks_forward(arch):
    trunk = timm.create_model(arch, pretrained=False, num_classes=0).eval()
    stages = trunk_stages(trunk)
    assert stages.family != "whole"
    x = torch.randn(2, 3, 64 if arch != "test_vit" else 160, 64 if arch != "test_vit" else 160)
    with torch.no_grad():
        staged = x
        for stage in stages.modules:
            staged = stage(staged)
        torch.testing.assert_close(staged, trunk(x))


def test_last_k_needs_a_staged_trunk():
    with pytest.raises(ValueError, match="trainable=head or trainable=all"):
        count_frozen(Stages([torch.nn.Identity()], 0, "whole"), "last_k", 1)
    assert count_frozen(Stages([torch.nn.Identity()], 0, "whole"), "all", 1) == 0


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray((rng.random((72, 72, 3)) * 255).astype("uint8")).save(root / f"{i}.jpg")
    return root


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_a_local_checkpoint_trains_exports_and_serves(arch, images, tmp_path):
    torch.set_num_threads(2)
    original = timm.create_model(arch, pretrained=False, num_classes=0).state_dict()
    weights = tmp_path / "ssl.pth"
    torch.save({"state_dict": {f"module.backbone.{k}": v for k, v in original.items()}}, weights)
    spec = f"timm:{arch}:{weights}"
    checkpoint = cli(["train", "--preset", "smoke", f"backbone={spec}", f"source_dirs=[\"{images}\"]",
                      f"out_dir={tmp_path / 'run'}", f"image_size={ARCHS[arch]}", "batch_size=4", "max_steps=1",
                      "trainable_blocks=1", "num_threads=2"])
    state = load_checkpoint(checkpoint)
    assert state["base_encoder_id"] == f"timm-{arch}@{file_digest(weights)}"
    trained = {k[len("trunk."):]: v for k, v in state["model"].items() if k.startswith("trunk.")}
    first, last = ("conv1.weight", "layer4.1.conv2.weight") if arch == "resnet18" else \
        ("patch_embed.proj.weight", f"blocks.{len(timm.create_model(arch).blocks) - 1}.attn.qkv.weight")
    assert torch.equal(trained[first], original[first])  # frozen: the checkpoint's weights, untouched
    assert not torch.equal(trained[last], original[last])  # the last block trained

    artefact = cli(["export", str(checkpoint), str(tmp_path / "encoder")])
    meta = json.loads((artefact / "encoder.json").read_text())
    assert meta["model"]["backbone"] == arch and meta["model"]["projector_dims"][0] == original_width(arch)
    encoder = load_encoder(str(artefact))
    vectors = encoder.embed([Image.open(p) for p in sorted(images.glob("*.jpg"))[:2]])
    assert vectors.shape == (2, 64) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def original_width(arch: str) -> int:
    return timm.create_model(arch, pretrained=False, num_classes=0).num_features


def test_a_vit_at_another_image_size_is_refused_before_training(images, tmp_path):
    weights = tmp_path / "vit.pth"
    torch.save(timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0).state_dict(), weights)
    with pytest.raises(ValueError, match="cannot take image_size=64 images"):
        cli(["train", "--preset", "smoke", f"backbone=timm:vit_tiny_patch16_224:{weights}",
             f"source_dirs=[\"{images}\"]",
             f"out_dir={tmp_path / 'run'}", "image_size=64"])
