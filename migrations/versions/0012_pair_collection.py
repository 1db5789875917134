"""the active pair names the vector collection it serves (Milvus), so a publish switches collections
atomically with the row

Revision ID: 0012
Revises: 0006
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa

revision = '0012'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('model_pairs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('collection', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('model_pairs', schema=None) as batch_op:
        batch_op.drop_column('collection')
