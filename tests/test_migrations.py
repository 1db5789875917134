"""Migrations upgrade from empty and downgrade cleanly, on PostgreSQL and SQLite."""
import pytest
from alembic import command
from sqlalchemy import inspect

from common.db.models import Base
from common.db.schema import alembic_config
from common.db.session import make_engine
from tests.conftest import reset_database, url_for


def table_names(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_upgrade_downgrade_upgrade(kind, tmp_path):
    url = url_for(kind, tmp_path)
    reset_database(url)
    assert table_names(url) == set(Base.metadata.tables)
    command.downgrade(alembic_config(url), "base")
    assert table_names(url) == set()
    command.upgrade(alembic_config(url), "head")
    assert table_names(url) == set(Base.metadata.tables)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_models_match_migrations(kind, tmp_path):
    """Autogenerate finds nothing to do: the models and the migrations agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    url = url_for(kind, tmp_path)
    reset_database(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []
