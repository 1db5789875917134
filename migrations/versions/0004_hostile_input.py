"""hostile input: embedding attempts per image; one live copy of an image per rights holder

Revision ID: 0004
Revises: 0008
Create Date: 2026-11-26

Images stored twice for one rights holder before this revision (concurrent registrations could do it)
are not merged and never fail the upgrade: the oldest copy keeps `live`, later copies are set
`live = false` (outside the uniqueness index) and listed in the log, so an operator can delete the
duplicate works (`DELETE /sources/{id}`).
"""
import logging

from alembic import op
import sqlalchemy as sa

revision = '0004'
down_revision = '0010'  # chain: 0003 -> 0008 -> 0007 -> 0009 -> 0005 -> 0010 -> 0004
branch_labels = None
depends_on = None
log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    with op.batch_alter_table('source_images', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempts', sa.Integer(), server_default=sa.text('0'), nullable=False))
        batch_op.add_column(sa.Column('rights_holder', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('live', sa.Boolean(), server_default=sa.true(), nullable=False))
    op.execute("UPDATE source_images SET rights_holder = (SELECT works.rights_holder FROM works "
               "WHERE works.id = source_images.work_id)")
    op.execute("UPDATE source_images SET live = false WHERE work_id IN "
               "(SELECT id FROM works WHERE deleted_at IS NOT NULL)")
    _set_aside_duplicates()
    op.create_index('uq_source_images_live_hash', 'source_images', ['rights_holder', 'content_sha256'],
                    unique=True, postgresql_where=sa.text('live'), sqlite_where=sa.text('live'))


def _set_aside_duplicates() -> None:
    """Keep the oldest live copy of each (rights holder, image hash); report and set aside the rest."""
    connection = op.get_bind()
    groups = connection.execute(sa.text(
        "SELECT rights_holder, content_sha256 FROM source_images WHERE live "
        "GROUP BY rights_holder, content_sha256 HAVING count(*) > 1")).all()
    for holder, sha in groups:
        copies = connection.execute(sa.text(
            "SELECT id, work_id FROM source_images WHERE live AND rights_holder = :holder "
            "AND content_sha256 = :sha ORDER BY created_at, id"), {"holder": holder, "sha": sha}).all()
        kept = copies[0][0]
        for image_id, work_id in copies[1:]:
            log.warning("duplicate image %s (work %s) of %r: same bytes as image %s; set aside from the "
                        "uniqueness index, delete the duplicate work to clean up", image_id, work_id, holder, kept)
            connection.execute(sa.text("UPDATE source_images SET live = false WHERE id = :id"), {"id": image_id})


def downgrade() -> None:
    op.drop_index('uq_source_images_live_hash', table_name='source_images',
                  postgresql_where=sa.text('live'), sqlite_where=sa.text('live'))
    with op.batch_alter_table('source_images', schema=None) as batch_op:
        batch_op.drop_column('live')
        batch_op.drop_column('rights_holder')
        batch_op.drop_column('attempts')
