"""Learning from verdicts on stored embeddings: split by query, AbC-style maps, the head-to-head gate
(held-out verdicts better, unreviewed works not worse), and a published mapped encoder whose source
vectors come from the stored ones and whose queries go through their own map.

The vectors are synthetic but shaped like the real problem: every query carries a strong shared "style"
direction that registered images contain in varying amounts, so in the zero-shot space queries drift to
the most "stylish" works; a map can learn to ignore that direction."""
import hashlib
import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.apikeys import create_key
from common.db import crud
from common.db.models import AttributionJob, Embedding, ImageState, Scope, SourceImage, Verdict, VerdictKind
from common.db.session import new_session
from common.settings import get_settings
from common.storage import get_storage
from core.encoder import builtin_lite0_encoder_id, load_encoder
from tests.factories import photo_bytes
from training.retrain_verdicts import main as retrain_verdicts
from training.verdict_images import load_image_views, pick_image_keys
from training.verdict_mapper import MapperConfig, fit_verdict_mapper, maps_of
from training.verdicts import VerdictQuery, load_verdict_data, split_by_query

DIM = 1280


def unit(v):
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def populate(n_works=12, n_reviewed=8, queries_per_work=8, style_strength=2.0, seed=0):
    """Works with 3 stored images each; reviewed works get confirmed queries (+ a rejection each)."""
    rng = np.random.default_rng(seed)
    encoder_id = builtin_lite0_encoder_id()
    centres = unit(rng.standard_normal((n_works, DIM)))
    style = unit(rng.standard_normal(DIM))
    style_in_work = rng.uniform(0, 1.5, n_works) * (style_strength > 0)
    with new_session() as session:
        reviewer, _ = create_key(session, name="reviewer", scope=Scope.reviewer)
        works = []
        for w in range(n_works):
            images = [SourceImage(content_sha256=f"{w:04d}{i}".ljust(64, "0"), storage_key=f"sources/x/{w}-{i}.jpg",
                                  media_type="image/jpeg", byte_size=1, width=64, height=64, state=ImageState.embedded)
                      for i in range(3)]
            work = crud.create_work(session, work_id=uuid.uuid4(), title=f"w{w}", rights_holder="s",
                                    external_ref=None, licence=None, images=images)
            for image in images:
                vector = unit(centres[w] + style_in_work[w] * style + 0.3 * unit(rng.standard_normal(DIM)))
                session.add(Embedding(image_id=image.id, encoder_id=encoder_id, vector=vector.tobytes()))
            works.append(work)
        for w in range(n_reviewed):
            for k in range(queries_per_work):
                query = unit(centres[w] + style_strength * style + 0.5 * unit(rng.standard_normal(DIM)))
                sha = hashlib.sha256(f"{w}-{k}".encode()).hexdigest()
                job = AttributionJob(query_sha256=sha, storage_key="q", top_k=5, encoder_id=encoder_id,
                                     query_vector=query.tobytes())
                session.add(job)
                session.flush()
                wrong = works[(w + 1) % n_reviewed]
                for work, kind in ((works[w], VerdictKind.confirm), (wrong, VerdictKind.reject)):
                    session.add(Verdict(job_id=job.id, query_sha256=sha, work_id=work.id, verdict=kind,
                                        reviewer_key_id=reviewer.id, encoder_id=encoder_id, query_vector=query.tobytes()))
        session.commit()
    return works


def test_split_by_query_is_stable_and_disjoint():
    queries = [VerdictQuery(hashlib.sha256(str(i).encode()).hexdigest(), np.zeros(2)) for i in range(400)]
    train, test = split_by_query(queries, 0.25, seed=3)
    assert not {q.query_sha256 for q in train} & {q.query_sha256 for q in test}
    assert 60 < len(test) < 140
    _, test_more = split_by_query(queries + [VerdictQuery("f" * 64, np.zeros(2))], 0.25, seed=3)
    assert {q.query_sha256 for q in test} <= {q.query_sha256 for q in test_more}


def test_verdicts_train_gate_and_publish_a_mapped_encoder(service_env, tmp_path, capsys):
    populate()
    assert retrain_verdicts(["--held-out", "0.25", "--steps", "40"]) == 0
    out = capsys.readouterr().out
    with new_session() as session:
        pair = crud.get_active_pair(session)
        copied = session.query(Embedding).filter(Embedding.encoder_id == pair.encoder_id).count()
    assert pair is not None and "+verdicts@" in pair.encoder_id, out
    held = pair.report["held_out"]
    assert held["candidate"]["map"] > held["serving"]["map"] + 10, held
    unreviewed = pair.report["unreviewed"]
    assert unreviewed["candidate"]["map"] >= unreviewed["serving"]["map"] - 1.0, unreviewed
    assert copied == 36  # every source vector derived from the stored one, none re-embedded
    assert pair.report["unsupervised_images"] == {}  # no image in storage: the verdict-only fit
    assert "align_loss" not in pair.report["losses"]["last"] and "unsupervised images: none" in out
    encoder = load_encoder(pair.encoder_uri)
    image = [Image.new("RGB", (64, 64), (120, 30, 200))]
    as_query, as_source = encoder.embed(image, role="query"), encoder.embed(image)
    assert as_query.shape == as_source.shape == (1, DIM)
    assert not np.allclose(as_query, as_source)  # queries go through their own map
    index = json.loads((tmp_path.joinpath(pair.index_path) / "index.json").read_text())
    assert index["encoder_id"] == pair.encoder_id and index["count"] == 36


def test_gate_refuses_when_verdicts_teach_nothing(service_env, capsys):
    populate(style_strength=0.0, queries_per_work=6)  # zero-shot is already right: nothing to gain
    assert retrain_verdicts(["--held-out", "0.3", "--steps", "20"]) == 1
    assert "refused" in capsys.readouterr().out
    with new_session() as session:
        assert crud.get_active_pair(session) is None


def test_no_verdicts_is_a_clear_error(service_env):
    with pytest.raises(ValueError, match="at least 2 works"):
        retrain_verdicts(["--no-publish"])


def store_photos(works, per_work=2):
    """Real photos (demo/data/dreambooth) at the first works' storage keys, and one verdict's query kept
    (as if its client allowed training use): images for the unsupervised term."""
    storage = get_storage(get_settings())
    subjects = ["dog", "cat", "backpack"]
    with new_session() as session:
        for w, subject in enumerate(subjects):
            images = session.query(SourceImage).filter(SourceImage.work_id == works[w].id).order_by(SourceImage.id)
            for i, image in enumerate(images.limit(per_work)):
                storage.put(image.storage_key, photo_bytes(subject, i))
        confirmed = session.query(Verdict).filter(Verdict.verdict == VerdictKind.confirm).order_by(Verdict.id)
        for k, verdict in enumerate(confirmed.limit(2)):  # two queries (a query's verdicts share its image)
            verdict.query_storage_key = f"verdicts/q/{k}.jpg"
            storage.put(verdict.query_storage_key, photo_bytes("candle", k))
        session.commit()


def fit_both_ways(seed=0, steps=8):
    """The same verdict fit with and without the stored images."""
    encoder = load_encoder("builtin:efficientnet-lite0")
    with new_session() as session:
        data = load_verdict_data(session, encoder_id=encoder.encoder_id)
        keys = pick_image_keys(session, 64, seed)  # more than stored: every image
    images = load_image_views(get_storage(get_settings()), encoder, keys, seed)
    config = MapperConfig(steps=steps, seed=seed)
    return images, fit_verdict_mapper(data.queries, data.work_vectors, config, images), \
        fit_verdict_mapper(data.queries, data.work_vectors, config)


@pytest.mark.parametrize("service_env", ["sqlite", "postgresql"], indirect=True)
def test_unsupervised_term_joins_the_fit_where_images_exist(service_env):
    store_photos(populate())
    images, combined, verdicts_only = fit_both_ways()
    assert images.counts == {"source": 6, "query": 2}  # the missing keys of the other works were skipped
    assert images.view_1.shape == images.view_2.shape == (8, DIM)
    assert not np.allclose(images.view_1, images.view_2)  # two different augmentations
    assert {"align_loss", "info_loss", "verdict_loss"} <= set(combined.losses["last"])
    assert combined.images == {"source": 6, "query": 2}
    assert "align_loss" not in verdicts_only.losses["last"] and verdicts_only.images == {}
    for name, weight in maps_of(combined).items():
        assert not np.allclose(weight, maps_of(verdicts_only)[name], atol=1e-6), name


def test_retrain_reports_the_unsupervised_term_and_can_turn_it_off(service_env, capsys):
    store_photos(populate())
    with new_session() as session:  # the bound: half queries (2 kept), sources fill the rest
        picked = pick_image_keys(session, 3, seed=0)
    assert len(picked) == 3 and sum(query for _, query in picked) == 1
    assert retrain_verdicts(["--held-out", "0.25", "--steps", "10", "--unsupervised-images", "64",
                             "--no-publish"]) == 0
    with_images = json.loads(next(Path(get_settings().artifacts_dir, "encoders").glob("verdicts-*/gate.json"))
                             .read_text())
    assert with_images["unsupervised_images"] == {"source": 6, "query": 2}
    assert "align_loss" in with_images["losses"]["last"]
    assert "unsupervised images: none" not in capsys.readouterr().out
    assert retrain_verdicts(["--held-out", "0.25", "--steps", "10", "--unsupervised-images", "0",
                             "--no-publish"]) == 0
    assert "unsupervised images: none (verdicts only)" in capsys.readouterr().out
