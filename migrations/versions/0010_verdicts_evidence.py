"""reviewer verdicts; the query's embedding kept on the job row

Revision ID: 0010
Revises: 0008
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa

revision = '0010'
down_revision = '0005'  # chain: 0003 -> 0008 -> 0007 -> 0009 -> 0005 -> 0010
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('attribution_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('query_vector', sa.LargeBinary(), nullable=True))
    op.create_table('verdicts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.Uuid(), nullable=True),
    sa.Column('query_sha256', sa.String(length=64), nullable=False),
    sa.Column('work_id', sa.Uuid(), nullable=True),
    sa.Column('verdict', sa.Enum('confirm', 'reject', 'none_of_these', name='verdict_kind', native_enum=False, length=20), nullable=False),
    sa.Column('reviewer_key_id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('encoder_id', sa.String(length=200), nullable=False),
    sa.Column('query_vector', sa.LargeBinary(), nullable=False),
    sa.Column('query_storage_key', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['attribution_jobs.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['reviewer_key_id'], ['api_keys.id'], ),
    sa.ForeignKeyConstraint(['work_id'], ['works.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('verdicts', schema=None) as batch_op:
        for column in ('job_id', 'query_sha256', 'work_id', 'reviewer_key_id', 'created_at'):
            batch_op.create_index(batch_op.f(f'ix_verdicts_{column}'), [column], unique=False)


def downgrade() -> None:
    op.drop_table('verdicts')
    with op.batch_alter_table('attribution_jobs', schema=None) as batch_op:
        batch_op.drop_column('query_vector')
