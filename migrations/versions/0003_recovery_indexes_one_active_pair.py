"""indexes for the recovery pass; at most one active model pair

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""
from alembic import op
import sqlalchemy as sa

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('source_images', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_source_images_state'), ['state'], unique=False)
    with op.batch_alter_table('attribution_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attribution_jobs_created_at'), ['created_at'], unique=False)
    op.create_index('uq_model_pairs_one_active', 'model_pairs', ['active'], unique=True,
                    postgresql_where=sa.text('active'), sqlite_where=sa.text('active'))


def downgrade() -> None:
    op.drop_index('uq_model_pairs_one_active', table_name='model_pairs',
                  postgresql_where=sa.text('active'), sqlite_where=sa.text('active'))
    with op.batch_alter_table('attribution_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attribution_jobs_created_at'))
    with op.batch_alter_table('source_images', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_source_images_state'))
