"""The encoder interface: packaged ImageNet weights load offline and recognise real photos; the
open_clip path (hub tags in production) loads a checkpoint from a local file."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from core.backbones import copy_by_position, create_trunk, packaged_lite0_weights_path
from core.encoder import encoder_identity, load_encoder
from tests.factories import photo_path


@pytest.fixture(scope="module")
def lite0():
    return load_encoder("builtin:efficientnet-lite0")


def test_packaged_weights_classify_real_photos():
    """The full ImageNet classifier built from the package recognises the DreamBooth dog."""
    import timm
    classifier = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    state = torch.load(packaged_lite0_weights_path(), map_location="cpu", weights_only=True)
    target = classifier.state_dict()
    classifier.load_state_dict(dict(zip(target, state.values())), strict=True)
    from core.backbones import LITE0_PREPROCESS
    from core.transforms import eval_transform
    image = eval_transform(LITE0_PREPROCESS)(Image.open(photo_path("dog", 0)).convert("RGB"))
    with torch.inference_mode():
        top5 = classifier.eval()(image[None]).topk(5).indices[0].tolist()
    assert any(151 <= c <= 268 for c in top5), top5  # ImageNet dog breeds


def test_copy_by_position_refuses_shape_mismatch():
    state = torch.load(packaged_lite0_weights_path(), map_location="cpu", weights_only=True)
    with pytest.raises(ValueError, match="shape mismatch|tensors"):
        copy_by_position(state, create_trunk("mobilenetv2_100"))


def test_embeddings_are_unit_float32_and_separate_subjects(lite0):
    images = [Image.open(photo_path(s, i)) for s, i in [("dog", 0), ("dog", 1), ("teapot", 0)]]
    vectors = lite0.embed(images)
    assert vectors.shape == (3, 1280) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert lite0.embed([]).shape == (0, 1280)


def test_batching_does_not_change_embeddings(lite0):
    images = [Image.open(photo_path("cat", i)) for i in range(3)]
    np.testing.assert_allclose(lite0.embed(images, batch_size=1), lite0.embed(images, batch_size=3), atol=1e-4)


def test_open_clip_model_from_local_checkpoint(tmp_path):
    import open_clip
    config = {"embed_dim": 32, "vision_cfg": {"timm_model_name": "tf_efficientnet_lite0", "timm_model_pretrained": False,
                                              "timm_pool": "avg", "timm_proj": "linear", "image_size": 64},
              "text_cfg": {"context_length": 16, "vocab_size": 500, "width": 32, "heads": 2, "layers": 1}}
    (tmp_path / "attrib-test-lite0.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path)
    reference = open_clip.create_model("attrib-test-lite0").eval()
    torch.save(reference.state_dict(), tmp_path / "weights.pt")

    encoder = load_encoder(f"open_clip:attrib-test-lite0:{tmp_path / 'weights.pt'}")
    image = Image.open(photo_path("vase", 0)).convert("RGB")
    with torch.inference_mode():
        expected = torch.nn.functional.normalize(reference.encode_image(encoder._transform(image)[None]), dim=1)
    np.testing.assert_allclose(encoder.embed([image]), expected.numpy(), atol=1e-5)
    assert encoder.dim == 32 and encoder.encoder_id.startswith("open_clip-attrib-test-lite0@")
    assert encoder_identity(f"open_clip:attrib-test-lite0:{tmp_path / 'weights.pt'}") == (encoder.encoder_id, 32)


def test_unknown_spec_is_refused():
    with pytest.raises(ValueError, match="unknown encoder spec"):
        load_encoder("nonsense:thing")
    with pytest.raises(ValueError, match="unknown encoder spec"):
        encoder_identity("nonsense:thing")


def test_identity_without_loading_the_model(lite0, tmp_path):
    """What worker.consistency needs: the encoder's id and dim, read from its self-description. An
    artefact whose weights are absent still names itself (nothing tries to load them)."""
    assert encoder_identity("builtin:efficientnet-lite0") == (lite0.encoder_id, lite0.dim)
    (tmp_path / "encoder.json").write_text(json.dumps({"format": "attrib-encoder/1", "encoder_id": "tuned@abc",
                                                       "dim": 256}))
    assert encoder_identity(str(tmp_path)) == ("tuned@abc", 256)
    with pytest.raises((KeyError, FileNotFoundError)):  # loading it would need the model and its weights
        load_encoder(str(tmp_path))
