"""bulk imports tracked until embedded: the import row, the works it created, its webhook deliveries

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-27
"""
from alembic import op
import sqlalchemy as sa

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('bulk_imports',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('key_id', sa.Uuid(), nullable=True),
    sa.Column('rights_holder', sa.String(length=200), nullable=True),
    sa.Column('status', sa.Enum('registering', 'embedding', 'finished', name='import_status', native_enum=False,
                                length=20), nullable=False),
    sa.Column('callback_url', sa.String(length=2000), nullable=True),
    sa.Column('created_items', sa.Integer(), nullable=False),
    sa.Column('duplicate_items', sa.Integer(), nullable=False),
    sa.Column('refused_items', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['key_id'], ['api_keys.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_bulk_imports_status'), 'bulk_imports', ['status'], unique=False)
    if op.get_bind().dialect.name == 'sqlite':
        # Never batch-recreate `works` on SQLite: with foreign keys on, dropping the old table would cascade
        # into source_images. SQLite adds a column with an inline REFERENCES clause in place (no ON DELETE:
        # SQLAlchemy does not reflect it from an inline clause, and import rows are never deleted anyway).
        op.execute('ALTER TABLE works ADD COLUMN import_id CHAR(32) REFERENCES bulk_imports (id)')
    else:
        op.add_column('works', sa.Column('import_id', sa.Uuid(), nullable=True))
        op.create_foreign_key('fk_works_import_id', 'works', 'bulk_imports', ['import_id'], ['id'])
    op.create_index(op.f('ix_works_import_id'), 'works', ['import_id'], unique=False)
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('import_id', sa.Uuid(), nullable=True))
        batch_op.create_index(batch_op.f('ix_webhook_deliveries_import_id'), ['import_id'], unique=False)
        batch_op.create_foreign_key('fk_webhook_deliveries_import_id', 'bulk_imports', ['import_id'], ['id'],
                                    ondelete='CASCADE')


def downgrade() -> None:
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_constraint('fk_webhook_deliveries_import_id', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_webhook_deliveries_import_id'))
        batch_op.drop_column('import_id')
    op.drop_index(op.f('ix_works_import_id'), table_name='works')
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('ALTER TABLE works DROP COLUMN import_id')  # in place, as it was added (SQLite >= 3.35)
    else:
        op.drop_constraint('fk_works_import_id', 'works', type_='foreignkey')
        op.drop_column('works', 'import_id')
    op.drop_index(op.f('ix_bulk_imports_status'), table_name='bulk_imports')
    op.drop_table('bulk_imports')
