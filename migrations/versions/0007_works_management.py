"""works management: keyset-pagination and external-reference indexes; a key's jobs by time

Revision ID: 0007
Revises: 0008
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa

revision = '0007'
down_revision = '0008'  # re-chained after main's 0008 (webhooks, audit) landed
branch_labels = None
depends_on = None

_LIVE = sa.text('deleted_at IS NULL')
_DELETED = sa.text('deleted_at IS NOT NULL')


def upgrade() -> None:
    op.drop_index('ix_works_deleted_at', table_name='works')
    op.create_index('ix_works_deleted_at', 'works', ['deleted_at'], unique=False,
                    postgresql_where=_DELETED, sqlite_where=_DELETED)
    op.create_index('ix_works_live_page', 'works', ['created_at', 'id'], unique=False,
                    postgresql_where=_LIVE, sqlite_where=_LIVE)
    op.create_index('ix_works_live_holder_page', 'works', ['rights_holder', 'created_at', 'id'], unique=False,
                    postgresql_where=_LIVE, sqlite_where=_LIVE)
    op.create_index('ix_works_rights_holder_external_ref', 'works', ['rights_holder', 'external_ref'], unique=False)
    op.create_index('ix_attribution_jobs_client_key_id_created_at', 'attribution_jobs',
                    ['client_key_id', 'created_at', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_attribution_jobs_client_key_id_created_at', table_name='attribution_jobs')
    op.drop_index('ix_works_rights_holder_external_ref', table_name='works')
    op.drop_index('ix_works_live_holder_page', table_name='works', postgresql_where=_LIVE, sqlite_where=_LIVE)
    op.drop_index('ix_works_live_page', table_name='works', postgresql_where=_LIVE, sqlite_where=_LIVE)
    op.drop_index('ix_works_deleted_at', table_name='works', postgresql_where=_DELETED, sqlite_where=_DELETED)
    op.create_index('ix_works_deleted_at', 'works', ['deleted_at'], unique=False)
