"""Training data sources: folders, registered sources of live works, opted-in queries; two-view augmentation."""
from datetime import datetime, timezone
from pathlib import Path

import pytest
import torch

from training.augment import two_view_transform
from training.config import load_config
from training.data import UnlabeledImages, collected_query_paths, gather_training_paths, registered_works
from core.backbones import LITE0_PREPROCESS

PHOTO = Path(__file__).resolve().parents[2] / "demo" / "data" / "dreambooth" / "cat" / "00.jpg"


@pytest.fixture
def service_db(tmp_path, monkeypatch):
    """A fresh SQLite database and storage dir, with the cached settings/engine rebuilt around it."""
    from common.db import session as db_session
    from common.db.models import Base
    from common.settings import get_settings
    monkeypatch.setenv("ATTRIB_DATABASE_URL", f"sqlite:///{tmp_path}/test.db")
    monkeypatch.setenv("ATTRIB_DATA_DIR", str(tmp_path))
    caches = (get_settings, db_session.get_engine, db_session.get_sessionmaker)
    for cached in caches:
        cached.cache_clear()
    Base.metadata.create_all(db_session.get_engine())
    yield db_session
    db_session.get_engine().dispose()
    for cached in caches:
        cached.cache_clear()


def test_registered_sources_skip_deleted_works_and_queries_need_opt_in(service_db):
    from common.db.models import AttributionJob, SourceImage, Work
    from common.settings import get_settings
    from common.storage import LocalStorage
    storage, data = LocalStorage(get_settings().storage_dir), PHOTO.read_bytes()
    for key in ("sources/a/live.jpg", "sources/b/gone.jpg", "queries/c/yes.jpg", "queries/d/no.jpg"):
        storage.put(key, data)
    with service_db.new_session() as session:
        live, gone = Work(title="live", rights_holder="r"), Work(title="gone", rights_holder="r",
                                                                 deleted_at=datetime.now(timezone.utc))
        session.add_all([live, gone])
        session.flush()
        for work, key in ((live, "sources/a/live.jpg"), (gone, "sources/b/gone.jpg")):
            session.add(SourceImage(work_id=work.id, content_sha256=key, storage_key=key,
                                    media_type="image/jpeg", byte_size=1, width=1, height=1))
        session.add_all([AttributionJob(query_sha256="y", storage_key="queries/c/yes.jpg", top_k=5, training_use=True),
                         AttributionJob(query_sha256="n", storage_key="queries/d/no.jpg", top_k=5)])
        session.commit()
        live_id = str(live.id)
    assert {k: [p.name for p in v] for k, v in registered_works().items()} == {live_id: ["live.jpg"]}
    assert [p.name for p in collected_query_paths()] == ["yes.jpg"]
    config = load_config("smoke", None, ["use_registered_sources=true", "use_collected_queries=true"])
    assert sorted(p.name for p in gather_training_paths(config)) == ["live.jpg", "yes.jpg"]


def test_two_views_differ_and_have_the_training_size():
    torch.manual_seed(0)
    config = load_config("smoke")
    dataset = UnlabeledImages([PHOTO], two_view_transform(config, LITE0_PREPROCESS))
    view_1, view_2 = dataset[0]
    assert view_1.shape == view_2.shape == (3, 64, 64)
    assert not torch.equal(view_1, view_2)


def test_empty_training_set_is_an_error():
    with pytest.raises(ValueError):
        UnlabeledImages([], None)
