"""Any timm (or open_clip) architecture with a local checkpoint file serves as the encoder: the weights
really load (the embedding is the reference network's), DINO / MoCo v3 wrappings are unwrapped, the id is
the file's digest, and a checkpoint that does not fit the architecture is refused, naming the misfit.
Checkpoints are made here with random weights; nothing is downloaded (pretrained=False everywhere)."""
import argparse
import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from core.encoder import encoder_identity, load_encoder
from core.local_weights import CheckpointMismatch, fit_state_dict, read_tensors
from core.trunks import file_digest
from tests.factories import photo_path

SMALL = {"resnet18": 512, "vit_tiny_patch16_224": 192}


def reference(arch: str) -> torch.nn.Module:
    torch.manual_seed(1)
    return timm.create_model(arch, pretrained=False, num_classes=0).eval()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """arch -> (reference network, checkpoint path): ResNet as MoCo v3 saves it, ViT as DINO does."""
    root = tmp_path_factory.mktemp("ckpt")
    resnet, vit = reference("resnet18"), reference("vit_tiny_patch16_224")
    moco = {f"module.base_encoder.{k}": v for k, v in resnet.state_dict().items()}
    moco |= {f"module.momentum_encoder.{k}": torch.zeros_like(v) for k, v in resnet.state_dict().items()}
    moco |= {"module.base_encoder.fc.0.weight": torch.zeros(4096, 512), "module.predictor.0.weight": torch.zeros(8, 8)}
    torch.save({"arch": "resnet18", "epoch": 100, "state_dict": moco}, root / "moco.pth.tar")
    dino = {"student": {f"module.backbone.{k}": torch.zeros_like(v) for k, v in vit.state_dict().items()},
            "teacher": {**{f"backbone.{k}": v for k, v in vit.state_dict().items()},
                        "head.mlp.0.weight": torch.zeros(16, 192)},
            "epoch": 3, "args": argparse.Namespace(arch="vit_tiny", lr=0.1)}
    torch.save(dino, root / "dino.pth")
    return {"resnet18": (resnet, root / "moco.pth.tar"), "vit_tiny_patch16_224": (vit, root / "dino.pth")}


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_a_timm_checkpoint_serves_with_its_own_weights(checkpoints, arch):
    network, path = checkpoints[arch]
    encoder = load_encoder(f"timm:{arch}:{path}")
    image = Image.open(photo_path("dog", 0)).convert("RGB")
    vector = encoder.embed([image])
    assert vector.shape == (1, SMALL[arch]) and encoder.dim == SMALL[arch] and vector.dtype == np.float32
    with torch.inference_mode():  # the teacher / base encoder was loaded, not the zeroed student / momentum copy
        expected = torch.nn.functional.normalize(network(encoder._transform(image)[None]), dim=1).numpy()
    np.testing.assert_allclose(vector, expected, atol=1e-5)
    assert encoder.encoder_id == f"timm-{arch}@{file_digest(path)}"  # the file's digest: deterministic
    # the consistency check names it without loading the weights, and must name it the same
    assert encoder_identity(f"timm:{arch}:{path}") == (encoder.encoder_id, encoder.dim)


def test_plain_prefixed_and_safetensors_files_load_alike(checkpoints, tmp_path):
    from safetensors.torch import save_file
    network, _ = checkpoints["resnet18"]
    state = network.state_dict()
    torch.save({f"module.{k}": v for k, v in state.items()} | {"fc.weight": torch.zeros(1000, 512)},
               tmp_path / "plain.pth")
    save_file({f"encoder.{k}": v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    for name in ("plain.pth", "w.safetensors"):
        fitted = fit_state_dict(read_tensors(tmp_path / name), reference("resnet18"), name)
        assert all(torch.equal(fitted[k], state[k]) for k in state)


def test_a_checkpoint_of_another_architecture_is_refused_by_name(checkpoints):
    _, moco = checkpoints["resnet18"]
    _, dino = checkpoints["vit_tiny_patch16_224"]
    with pytest.raises(CheckpointMismatch, match=r"missing from the checkpoint \(layer1\.2\.conv1\.weight"):
        load_encoder(f"timm:resnet34:{moco}")
    shapes = r"shape mismatch.*cls_token: checkpoint \(1, 1, 192\), model \(1, 1, 384\)"
    with pytest.raises(CheckpointMismatch, match=shapes):
        load_encoder(f"timm:vit_small_patch16_224:{dino}")
    with pytest.raises(CheckpointMismatch, match="no tensor of the checkpoint fits"):
        load_encoder(f"timm:resnet18:{dino}")


def test_unusable_specs_are_refused_in_words(tmp_path):
    with pytest.raises(ValueError, match="needs a local checkpoint file"):
        load_encoder("timm:resnet18")
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        load_encoder(f"timm:resnet18:{tmp_path / 'missing.pth'}")
    with pytest.raises(ValueError, match="timm has no architecture"):
        load_encoder(f"timm:no_such_net:{tmp_path / 'missing.pth'}")
    torch.save({"epoch": 1, "note": "no weights"}, tmp_path / "empty.pth")
    with pytest.raises(CheckpointMismatch, match="holds no state dict"):
        load_encoder(f"timm:resnet18:{tmp_path / 'empty.pth'}")


def test_an_open_clip_tower_with_misfitting_weights_is_refused(tmp_path):
    import open_clip
    config = {"embed_dim": 32, "vision_cfg": {"timm_model_name": "resnet18", "timm_model_pretrained": False,
                                              "timm_pool": "avg", "timm_proj": "linear", "image_size": 64},
              "text_cfg": {"context_length": 16, "vocab_size": 500, "width": 32, "heads": 2, "layers": 1}}
    (tmp_path / "attrib-test-r18.json").write_text(json.dumps(config))
    (tmp_path / "attrib-test-r18-wide.json").write_text(json.dumps({**config, "embed_dim": 48}))
    open_clip.add_model_config(tmp_path)
    torch.save(open_clip.create_model("attrib-test-r18-wide").state_dict(), tmp_path / "wide.pt")
    with pytest.raises(CheckpointMismatch, match=r"head\.proj\.weight: checkpoint \(48, 512\), model \(32, 512\)"):
        load_encoder(f"open_clip:attrib-test-r18:{tmp_path / 'wide.pt'}")
