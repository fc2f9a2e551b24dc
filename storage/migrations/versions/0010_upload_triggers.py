"""upload triggers: a trigger's kind and the file parameter its files go to

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 17:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('triggers', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('kind', sa.String(length=20), nullable=False, server_default='webhook')
        )
        batch_op.add_column(sa.Column('file_parameter', sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('triggers', schema=None) as batch_op:
        batch_op.drop_column('file_parameter')
        batch_op.drop_column('kind')
