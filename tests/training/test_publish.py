"""Retraining swaps the service: rebuild an index with a new encoder artefact, publish the pair, and a
running worker serves it on its next job without a restart; rollback returns to the previous one."""
import json
import time

import pytest
import torch

from core.backbones import LITE0_PREPROCESS, load_packaged_lite0
from core.calibration import Calibration
from core.encoder import ARTEFACT_FORMAT, file_digest
from core.heads import EmbeddingModel, mlp
from indexing.vectorstore import IndexEncoderMismatch
from training.publish import WorsePairRefused, publish_pair, rollback
from training.rebuild_index import rebuild_index
from tests.factories import photo_bytes


def make_artefact(directory, seed: int = 0):
    """An exported encoder: the packaged trunk plus a random 64-d projector (a stand-in for training)."""
    torch.manual_seed(seed)
    model = EmbeddingModel(load_packaged_lite0(), mlp([1280, 256, 64])).eval()
    directory.mkdir(parents=True)
    torch.save(model.state_dict(), directory / "weights.pt")
    meta = {"format": ARTEFACT_FORMAT, "encoder_id": f"test-artefact@{file_digest(directory / 'weights.pt')}",
            "model": {"backbone": "tf_efficientnet_lite0", "projector_dims": [1280, 256, 64]},
            "preprocess": LITE0_PREPROCESS.to_dict(), "dim": 64,
            "calibration": Calibration(inv_tau=5.0, bias=0.0, fitted=True).to_dict()}
    (directory / "encoder.json").write_text(json.dumps(meta))
    return directory, meta["encoder_id"]


def register(client, subject):
    files = [("images", (f"{subject}{i}.jpg", photo_bytes(subject, i), "image/jpeg")) for i in (0, 1)]
    return client.post("/sources", files=files, data={"title": subject, "rights_holder": "s"}).json()["id"]


def attribute(client, subject="dog", index=0):
    response = client.post("/attribute", params={"wait": 60},
                           files={"image": ("q.jpg", photo_bytes(subject, index), "image/jpeg")})
    body = response.json()
    assert body["status"] == "done", body
    return body


def wait_searchable(client, ids):
    deadline = time.monotonic() + 60
    while not all(client.get(f"/sources/{i}").json()["searchable"] for i in ids):
        assert time.monotonic() < deadline
        time.sleep(0.2)


@pytest.mark.parametrize("service_env, vector_backend", [("sqlite", "faiss"), ("postgresql", "milvus")],
                         indirect=True)
def test_publish_swaps_running_worker_and_rollback_restores(vector_backend, client, start_worker, tmp_path):
    start_worker()
    ids = {s: register(client, s) for s in ("dog", "teapot", "vase")}
    wait_searchable(client, ids.values())
    before = attribute(client)
    assert before["encoder_id"].startswith("efficientnet-lite0-imagenet@")

    artefact, encoder_id = make_artefact(tmp_path / "encoder")
    index_dir = rebuild_index(str(artefact), tmp_path / "index")
    assert json.loads((index_dir / "index.json").read_text())["count"] == 6
    pair = publish_pair(str(artefact), index_dir, report={"map": 0.5})
    assert (pair.collection is not None) == (vector_backend == "milvus")  # the row names what serves

    after = attribute(client)
    assert after["encoder_id"] == encoder_id and after["index_id"] == (pair.collection or pair.index_id)
    assert after["matches"][0]["work_id"] == ids["dog"]

    late = register(client, "cat")  # registered after the swap: embedded by the new encoder
    wait_searchable(client, [late])
    assert attribute(client, "cat", 0)["matches"][0]["work_id"] == late

    assert rollback() is None  # no earlier pair: back to the configured default
    restored = attribute(client)
    assert restored["encoder_id"] == before["encoder_id"]
    assert restored["index_size"] == 8  # the cat, embedded meanwhile by the new encoder, caught up


def test_publish_refuses_foreign_index_and_worse_pairs(service_env, tmp_path):
    first, _ = make_artefact(tmp_path / "a", seed=0)
    second, _ = make_artefact(tmp_path / "b", seed=1)
    index_a = rebuild_index(str(first), tmp_path / "index-a")
    with pytest.raises(IndexEncoderMismatch):
        publish_pair(str(second), index_a)
    publish_pair(str(first), index_a, report={"map": 0.6})
    index_b = rebuild_index(str(second), tmp_path / "index-b")
    with pytest.raises(WorsePairRefused):
        publish_pair(str(second), index_b, report={"map": 0.4})
    assert publish_pair(str(second), index_b, report={"map": 0.4}, force=True).active
    assert rollback().index_id == json.loads((index_a / "index.json").read_text())["index_id"]
