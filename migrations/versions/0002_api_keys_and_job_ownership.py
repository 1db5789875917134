"""api keys and job ownership

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('scope', sa.Enum('admin', 'registrar', 'attributor', name='key_scope', native_enum=False, length=20), nullable=False),
    sa.Column('rights_holder', sa.String(length=200), nullable=True),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('secret_sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('secret_sha256')
    )
    with op.batch_alter_table('attribution_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('client_key_id', sa.Uuid(), nullable=True))
        batch_op.create_index(batch_op.f('ix_attribution_jobs_client_key_id'), ['client_key_id'], unique=False)
        batch_op.create_foreign_key('fk_attribution_jobs_client_key_id', 'api_keys', ['client_key_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('attribution_jobs', schema=None) as batch_op:
        batch_op.drop_constraint('fk_attribution_jobs_client_key_id', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_attribution_jobs_client_key_id'))
        batch_op.drop_column('client_key_id')

    op.drop_table('api_keys')
