"""Schema management through Alembic, for code that must start from a known database state."""
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from common.db.models import Base
from common.db.session import make_engine

REPO = Path(__file__).resolve().parents[2]


def alembic_config(url: str) -> Config:
    config = Config(str(REPO / "alembic.ini"))
    config.set_main_option("script_location", str(REPO / "migrations"))
    config.attributes["database_url"] = url
    return config


def reset_schema(url: str) -> None:
    """Drop every table, then migrate from empty. Destroys all data: tests and benchmarks only."""
    engine = make_engine(url)
    with engine.begin() as conn:
        Base.metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()
    command.upgrade(alembic_config(url), "head")
