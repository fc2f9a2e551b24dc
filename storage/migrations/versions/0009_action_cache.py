"""replay: the action cache (action_records), runs.replay, runs.sealed_state

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 17:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

from storage.models import UTCDateTime


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'action_records',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('run_id', sa.String(length=40), nullable=False),
        sa.Column('workflow_id', sa.String(length=40), nullable=True),
        sa.Column('cache_key', sa.String(length=200), nullable=True),
        sa.Column('cached', sa.Boolean(), nullable=False),
        sa.Column('pinned', sa.Boolean(), nullable=False),
        sa.Column('note', sa.Text(), nullable=True),
        sa.Column('blocks', sa.JSON(), nullable=False),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ['workflow_id'], ['workflows.id'],
            name=op.f('fk_action_records_workflow_id_workflows'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_action_records')),
        sa.UniqueConstraint('run_id', name=op.f('uq_action_records_run_id')),
    )
    with op.batch_alter_table('action_records', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_action_records_workflow_id'), ['workflow_id'], unique=False
        )
        batch_op.create_index(
            'ix_action_records_cache',
            ['workflow_id', 'cache_key', 'cached', 'created_at'],
            unique=False,
        )
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('replay', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('sealed_state', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('sealed_state')
        batch_op.drop_column('replay')
    with op.batch_alter_table('action_records', schema=None) as batch_op:
        batch_op.drop_index('ix_action_records_cache')
        batch_op.drop_index(batch_op.f('ix_action_records_workflow_id'))
    op.drop_table('action_records')
