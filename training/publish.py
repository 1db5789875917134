"""`python -m training publish` / `rollback`: make an (encoder, index) pair the active one, in one
database transaction. Running workers compare the active pair before every job and switch to it
without a restart; results then report the new encoder and index ids, and the pair (and so the
calibration) that answered. A new calibration of the same encoder and index is a new pair too
(publish_calibration), so rollback also undoes a calibration."""
import argparse
import json
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import select, update

from common.audit import record
from common.db.models import ModelPair
from common.db.session import new_session
from common.settings import get_settings
from common.storage import get_storage
from core.calibration import Calibration
from core.encoder import Encoder, load_encoder
from indexing import artifacts, pair_collections
from indexing.backends.faiss import load_store

# The evaluation number that decides whether a new pair is better (service protocol, mean AP).
GATE_METRIC = "map"
REPORTS_PREFIX = "reports"  # storage keys of the runs' HTML reports: reports/<index id>/report.html


class WorsePairRefused(RuntimeError):
    """The candidate evaluates worse than the active pair and publishing was not forced."""


class ActivePairChanged(RuntimeError):
    """Another pair was published while a calibration was being fitted for the previous one."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training publish", description=__doc__)
    parser.add_argument("--encoder", required=True, help="encoder spec or exported artefact dir")
    parser.add_argument("--index", type=Path, required=True, help="index dir made by rebuild-index")
    parser.add_argument("--report", type=Path, default=None,
                        help=f"evaluation JSON with a top-level '{GATE_METRIC}' (compared with the active pair)")
    parser.add_argument("--force", action="store_true", help="publish even if it evaluates worse")
    parser.add_argument("--html-report", type=Path, default=None,
                        help="the run's report.html: stored with the pair, linked from the console's admin page")
    return parser.parse_args(argv)


def publish_pair(encoder_spec: str, index_dir: Path, report: dict | None = None, force: bool = False,
                 html_report: Path | None = None) -> ModelPair:
    """Check that the index was made by this encoder, refuse a worse pair, then activate it atomically.
    `html_report`: the run's page, put in shared storage and named in the pair's report (`html_report`)."""
    encoder = load_encoder(encoder_spec)
    index = load_store(index_dir, encoder.encoder_id, mmap=True)  # raises IndexEncoderMismatch
    settings = get_settings()
    collection = pair_collections.pair_collection(settings, encoder.encoder_id, index.index_id)
    with new_session() as session:
        active = session.scalar(select(ModelPair).where(ModelPair.active.is_(True)))
        refuse_if_worse(active, report, force)
        with new_session() as filling:  # a shared Milvus collection is filled before the row names it
            pair_collections.prepare(filling, settings, encoder.encoder_id, encoder.dim, collection)
        if html_report is not None:
            report = {**(report or {}), "html_report": share_html_report(html_report, index.index_id)}
        encoder_uri, index_path = _shared_locations(encoder_spec, index_dir, index.index_id)
        calibration = encoder.calibration.to_dict() if encoder.calibration.fitted else None
        pair = ModelPair(encoder_id=encoder.encoder_id, encoder_uri=encoder_uri, index_path=index_path,
                         index_id=index.index_id, collection=collection, report=report, calibration=calibration)
        session.add(pair)
        _activate(session, pair)
        record(session, action="model.publish", actor="cli", target=pair.id,
               detail={"encoder_id": pair.encoder_id, "index_id": pair.index_id, "collection": collection,
                       "forced": force})
        session.commit()
    pair_collections.point_serving_alias(settings, encoder.encoder_id, collection)
    return pair


def publish_calibration(calibration: Calibration, encoder: Encoder, based_on: int | None) -> ModelPair:
    """Activate a copy of pair `based_on` (None: the configured encoder, no pair yet) that carries this
    calibration. Refused if the active pair is no longer `based_on`: the fit belongs to that encoder."""
    from common.settings import get_settings
    with new_session() as session:
        active = session.scalar(select(ModelPair).where(ModelPair.active.is_(True)).with_for_update())
        if (active.id if active else None) != based_on:
            raise ActivePairChanged(f"the active pair is now {active.id if active else None}, not {based_on}; "
                                    "calibrate again")
        if active is not None and active.encoder_id != encoder.encoder_id:
            raise ActivePairChanged(f"pair {active.id} serves {active.encoder_id}, not {encoder.encoder_id}")
        pair = ModelPair(encoder_id=encoder.encoder_id,
                         encoder_uri=active.encoder_uri if active else get_settings().encoder,
                         index_path=active.index_path if active else None,
                         index_id=active.index_id if active else None,
                         collection=active.collection if active else None,
                         report=active.report if active else None, calibration=calibration.to_dict())
        session.add(pair)
        _activate(session, pair)
        record(session, action="model.calibrate", actor="cli", target=pair.id,
               detail={"encoder_id": pair.encoder_id, "based_on": based_on, "fitted_on": calibration.fitted_on})
        session.commit()
        return pair


def _shared_locations(encoder_spec: str, index_dir: Path, index_id: str) -> tuple[str, str]:
    """Local paths on one machine; with remote storage, upload both so workers on other hosts find them."""
    settings = get_settings()
    if not artifacts.uploads_artifacts(settings):
        return str(encoder_spec), str(index_dir.resolve())
    prefix = f"artifacts/pairs/{index_id}"
    encoder_uri = (artifacts.upload_dir(settings, Path(encoder_spec), f"{prefix}/encoder")
                   if Path(encoder_spec).is_dir() else str(encoder_spec))
    return encoder_uri, artifacts.upload_dir(settings, index_dir, f"{prefix}/index")


def share_html_report(html: Path, index_id: str) -> str:
    """Through storage, not a local path: the API that shows it to admins may run on another host."""
    key = f"{REPORTS_PREFIX}/{index_id}/report.html"
    get_storage(get_settings()).put(key, Path(html).read_bytes())
    return key


def refuse_if_worse(active: ModelPair | None, report: dict | None, force: bool) -> None:
    old = (active.report or {}).get(GATE_METRIC) if active else None
    new = (report or {}).get(GATE_METRIC)
    if force or old is None or new is None or new >= old:
        return
    raise WorsePairRefused(f"candidate {GATE_METRIC} {new:.4f} is below the active pair's {old:.4f}; "
                           "use --force to publish anyway")


def _activate(session, pair: ModelPair | None) -> None:
    session.execute(update(ModelPair).where(ModelPair.active.is_(True)).values(active=False))
    if pair is not None:
        session.flush()
        pair.active, pair.activated_at = True, datetime.now(timezone.utc)


def rollback() -> ModelPair | None:
    """Re-activate the pair that was active before the current one (none: the configured default)."""
    with new_session() as session:
        current = session.scalar(select(ModelPair).where(ModelPair.active.is_(True)))
        earlier = select(ModelPair).where(ModelPair.activated_at.is_not(None))
        if current is not None:
            earlier = earlier.where(ModelPair.id != current.id, ModelPair.activated_at < current.activated_at)
        previous = session.scalar(earlier.order_by(ModelPair.activated_at.desc()).limit(1))
        _activate(session, previous)
        record(session, action="model.rollback", actor="cli", target=previous.id if previous else None,
               detail={"from_pair": current.id if current else None})
        session.commit()
    _point_alias_after_rollback(previous)
    return previous


def _point_alias_after_rollback(previous: ModelPair | None) -> None:
    """Where a shared Milvus has aliases, the encoder now served gets its alias back on what it serves."""
    settings = get_settings()
    if not pair_collections.uses_shared_milvus(settings):
        return
    encoder_id = previous.encoder_id if previous else load_encoder(settings.encoder).encoder_id
    collection = (previous.collection if previous else None) or pair_collections.default_collection(settings, encoder_id)
    pair_collections.point_serving_alias(settings, encoder_id, collection)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    report = json.loads(args.report.read_text()) if args.report else None
    if report is not None and GATE_METRIC not in report:
        print(f"error: {args.report} has no top-level '{GATE_METRIC}' (a verdict.json from retrain has one)")
        return 2
    try:
        pair = publish_pair(args.encoder, args.index, report, args.force, args.html_report)
    except WorsePairRefused as exc:
        print(f"refused: {exc}")
        return 1
    print(f"published pair {pair.id}: encoder {pair.encoder_id}, index {pair.index_id}")
    return 0


def rollback_main(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="python -m training rollback", description=rollback.__doc__).parse_args(argv)
    previous = rollback()
    print(f"active pair is now {previous.id} ({previous.encoder_id})" if previous
          else "no earlier pair: workers fall back to the configured default encoder")
    return 0
