"""change log of vector upserts and deletes, with its one-row sequence counter

Revision ID: 0005
Revises: 0008
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa

revision = '0005'
down_revision = '0009'  # chain: 0003 -> 0008 -> 0007 -> 0009 -> 0005
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'vector_changes',
        sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('op', sa.String(length=10), nullable=False),
        sa.Column('image_id', sa.BigInteger(), nullable=False),
        sa.Column('encoder_id', sa.String(length=200), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('seq'))
    head = op.create_table(
        'changelog_head',
        sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id'))
    op.bulk_insert(head, [{'id': 1, 'seq': 0}])


def downgrade() -> None:
    op.drop_table('changelog_head')
    op.drop_table('vector_changes')
