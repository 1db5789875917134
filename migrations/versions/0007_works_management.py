"""works management: keyset-pagination and external-reference indexes; a key's jobs by time

Revision ID: 0007
Revises: 0003
Create Date: 2026-11-26
"""
from alembic import op

revision = '0007'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('works', schema=None) as batch_op:
        batch_op.create_index('ix_works_created_at_id', ['created_at', 'id'], unique=False)
        batch_op.create_index('ix_works_rights_holder_external_ref', ['rights_holder', 'external_ref'], unique=False)
    with op.batch_alter_table('attribution_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_attribution_jobs_client_key_id_created_at',
                              ['client_key_id', 'created_at', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('attribution_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_attribution_jobs_client_key_id_created_at')
    with op.batch_alter_table('works', schema=None) as batch_op:
        batch_op.drop_index('ix_works_rights_holder_external_ref')
        batch_op.drop_index('ix_works_created_at_id')
