"""Which (encoder, index) pair serves results, which served before, and how each was evaluated, so a
client can tell which model produced a result (its `encoder_id`/`index_id` receipt)."""
from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import select

from app.api.deps import RedisDep, SessionDep, SettingsDep
from app.schemas import CalibrationPublic
from app.security import CurrentKey
from common.db.models import ApiKey, ModelPair, Scope
from core.calibration import Calibration
from common.jobs import live_heartbeats

router = APIRouter(prefix="/models", tags=["models"])
_PAIRS_SHOWN = 50


class ModelPairPublic(BaseModel):
    id: int
    encoder_id: str
    index_id: str | None
    active: bool
    created_at: datetime = Field(description="when the pair was published (first made available)")
    activated_at: datetime | None = Field(description="when it last became the serving pair")
    evaluation: dict | None = Field(description="the evaluation summary recorded at publication "
                                                "(numbers only unless the caller is an admin)")
    calibration: CalibrationPublic | None = Field(
        default=None, description="what the pair's shares were fitted on (null: the encoder's own or the default)")


class WorkerModelPublic(BaseModel):
    encoder_id: str | None = None
    index_id: str | None = Field(default=None, description="null: this worker holds no index (it only embeds)")
    index_size: int | None = None
    index_type: str | None = Field(default=None, description="the FAISS factory string or the engine's index")
    queues: list[str] = Field(default_factory=list, description="the queues it serves, in priority order")
    pair_id: int | None = None
    calibration: CalibrationPublic | None = None


class ModelsPublic(BaseModel):
    serving: ModelPairPublic | None = Field(description="the published pair workers follow; null: the "
                                                        "configured default encoder serves")
    workers: list[WorkerModelPublic] = Field(description="what each live worker has loaded right now")
    previous: list[ModelPairPublic] = Field(description="earlier pairs, newest first (rollback targets)")


@router.get("", response_model=ModelsPublic)
def read_models(key: CurrentKey, session: SessionDep, redis: RedisDep, settings: SettingsDep) -> ModelsPublic:
    """The serving (encoder, index) pair, the earlier ones, their evaluations and publication times."""
    pairs = session.scalars(select(ModelPair).order_by(ModelPair.created_at.desc(), ModelPair.id.desc())
                            .limit(_PAIRS_SHOWN))
    shown = [_pair_public(pair, key) for pair in pairs]
    return ModelsPublic(serving=next((p for p in shown if p.active), None),
                        workers=_workers(redis, settings.queue_name),
                        previous=[p for p in shown if not p.active])


def _pair_public(pair: ModelPair, key: ApiKey) -> ModelPairPublic:
    return ModelPairPublic(id=pair.id, encoder_id=pair.encoder_id, index_id=pair.index_id, active=pair.active,
                           created_at=pair.created_at, activated_at=pair.activated_at,
                           evaluation=_evaluation(pair.report, key),
                           calibration=Calibration.from_dict(pair.calibration).summary() if pair.calibration else None)


def _evaluation(report: dict | None, key: ApiKey) -> dict | None:
    """Admins see the whole report; other keys its numbers and the evaluation set's name, never the
    server paths it may name (artefact locations)."""
    if report is None or key.scope == Scope.admin:
        return report
    return {k: v for k, v in report.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) or k == "eval_set"}


def _workers(redis, queue_name: str) -> list[WorkerModelPublic]:
    return [WorkerModelPublic.model_validate(beat) for beat in live_heartbeats(redis, queue_name)]
