"""run tags and metadata

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 14:30:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tags', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('metadata', sa.JSON(), nullable=False, server_default='{}'))
    op.create_table('run_tags',
    sa.Column('run_id', sa.String(length=40), nullable=False),
    sa.Column('tag', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_run_tags_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'tag', name=op.f('pk_run_tags'))
    )
    with op.batch_alter_table('run_tags', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_run_tags_tag'), ['tag'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('run_tags', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_run_tags_tag'))
    op.drop_table('run_tags')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('metadata')
        batch_op.drop_column('tags')
