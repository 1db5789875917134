"""calibration served with each model pair; jobs name the pair and calibration they used

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa

revision = '0009'
down_revision = '0007'  # re-chained: 0008 (webhooks) -> 0007 (works management) -> 0009
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('model_pairs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('calibration', sa.JSON(), nullable=True))
    with op.batch_alter_table('attribution_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pair_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch_op.add_column(sa.Column('calibration', sa.JSON(), nullable=True))
        batch_op.create_foreign_key('fk_attribution_jobs_pair_id_model_pairs', 'model_pairs', ['pair_id'], ['id'],
                                    ondelete='SET NULL')


def downgrade() -> None:
    with op.batch_alter_table('attribution_jobs', schema=None) as batch_op:
        batch_op.drop_constraint('fk_attribution_jobs_pair_id_model_pairs', type_='foreignkey')
        batch_op.drop_column('calibration')
        batch_op.drop_column('pair_id')
    with op.batch_alter_table('model_pairs', schema=None) as batch_op:
        batch_op.drop_column('calibration')
