"""bulk registration: a work remembers the import item it came from

Revision ID: 0006
Revises: 0008
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0004'  # chain: 0003 -> 0008 -> 0007 -> 0009 -> 0005 -> 0010 -> 0004 -> 0006
branch_labels = None
depends_on = None

_LIVE_ITEM = 'import_item_id IS NOT NULL AND deleted_at IS NULL'


def upgrade() -> None:
    with op.batch_alter_table('works', schema=None) as batch_op:
        batch_op.add_column(sa.Column('import_item_id', sa.String(length=200), nullable=True))
    op.create_index('uq_works_live_import_item', 'works', ['rights_holder', 'import_item_id'], unique=True,
                    postgresql_where=sa.text(_LIVE_ITEM), sqlite_where=sa.text(_LIVE_ITEM))


def downgrade() -> None:
    op.drop_index('uq_works_live_import_item', table_name='works',
                  postgresql_where=sa.text(_LIVE_ITEM), sqlite_where=sa.text(_LIVE_ITEM))
    with op.batch_alter_table('works', schema=None) as batch_op:
        batch_op.drop_column('import_item_id')
