"""runs that start themselves: not_before (follow-ups), concurrency_key

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 15:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

from storage.models import UTCDateTime


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('not_before', UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('concurrency_key', sa.String(length=200), nullable=True))
        batch_op.create_index(batch_op.f('ix_runs_concurrency_key'), ['concurrency_key'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_runs_concurrency_key'))
        batch_op.drop_column('concurrency_key')
        batch_op.drop_column('not_before')
