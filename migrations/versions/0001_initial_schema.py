"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-25
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('attribution_jobs',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('status', sa.Enum('queued', 'running', 'done', 'failed', name='job_status', native_enum=False, length=20), nullable=False),
    sa.Column('query_sha256', sa.String(length=64), nullable=False),
    sa.Column('storage_key', sa.String(length=200), nullable=False),
    sa.Column('top_k', sa.Integer(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('worker', sa.String(length=200), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('encoder_id', sa.String(length=200), nullable=True),
    sa.Column('index_id', sa.String(length=200), nullable=True),
    sa.Column('index_size', sa.BigInteger(), nullable=True),
    sa.Column('unattributed', sa.Float(), nullable=True),
    sa.Column('training_use', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('attribution_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attribution_jobs_status'), ['status'], unique=False)

    op.create_table('model_pairs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('encoder_id', sa.String(length=200), nullable=False),
    sa.Column('encoder_uri', sa.String(length=500), nullable=False),
    sa.Column('index_path', sa.String(length=500), nullable=True),
    sa.Column('index_id', sa.String(length=200), nullable=True),
    sa.Column('report', sa.JSON(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('activated_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('model_pairs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_model_pairs_active'), ['active'], unique=False)

    op.create_table('works',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('rights_holder', sa.String(length=200), nullable=False),
    sa.Column('external_ref', sa.String(length=500), nullable=True),
    sa.Column('licence', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('works', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_works_deleted_at'), ['deleted_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_works_rights_holder'), ['rights_holder'], unique=False)

    op.create_table('matches',
    sa.Column('job_id', sa.Uuid(), nullable=False),
    sa.Column('rank', sa.Integer(), nullable=False),
    sa.Column('work_id', sa.Uuid(), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('share', sa.Float(), nullable=False),
    sa.Column('best_image_id', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['attribution_jobs.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['work_id'], ['works.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'rank')
    )
    with op.batch_alter_table('matches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_matches_work_id'), ['work_id'], unique=False)

    op.create_table('source_images',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('work_id', sa.Uuid(), nullable=False),
    sa.Column('content_sha256', sa.String(length=64), nullable=False),
    sa.Column('storage_key', sa.String(length=200), nullable=False),
    sa.Column('media_type', sa.String(length=50), nullable=False),
    sa.Column('byte_size', sa.Integer(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('state', sa.Enum('pending', 'embedded', 'failed', name='image_state', native_enum=False, length=20), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['work_id'], ['works.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('work_id', 'content_sha256')
    )
    with op.batch_alter_table('source_images', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_source_images_content_sha256'), ['content_sha256'], unique=False)
        batch_op.create_index(batch_op.f('ix_source_images_work_id'), ['work_id'], unique=False)

    op.create_table('embeddings',
    sa.Column('image_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('encoder_id', sa.String(length=200), nullable=False),
    sa.Column('vector', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['source_images.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('image_id', 'encoder_id')
    )
    with op.batch_alter_table('embeddings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_embeddings_encoder_id'), ['encoder_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('embeddings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_embeddings_encoder_id'))

    op.drop_table('embeddings')
    with op.batch_alter_table('source_images', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_source_images_work_id'))
        batch_op.drop_index(batch_op.f('ix_source_images_content_sha256'))

    op.drop_table('source_images')
    with op.batch_alter_table('matches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_matches_work_id'))

    op.drop_table('matches')
    with op.batch_alter_table('works', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_works_rights_holder'))
        batch_op.drop_index(batch_op.f('ix_works_deleted_at'))

    op.drop_table('works')
    with op.batch_alter_table('model_pairs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_model_pairs_active'))

    op.drop_table('model_pairs')
    with op.batch_alter_table('attribution_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attribution_jobs_status'))

    op.drop_table('attribution_jobs')
