"""schedules and triggers

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 14:05:00.000000
"""
from alembic import op
import sqlalchemy as sa

from storage.models import UTCDateTime


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('schedules',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('workflow_id', sa.String(length=40), nullable=False),
    sa.Column('title', sa.String(length=500), nullable=True),
    sa.Column('cron', sa.String(length=200), nullable=True),
    sa.Column('interval_s', sa.Integer(), nullable=True),
    sa.Column('at', UTCDateTime(timezone=True), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('catch_up', sa.String(length=20), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('next_fire_at', UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_fire_at', UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_run_id', sa.String(length=40), nullable=True),
    sa.Column('skipped', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workflow_id'], ['workflows.id'], name=op.f('fk_schedules_workflow_id_workflows'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_schedules'))
    )
    with op.batch_alter_table('schedules', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_schedules_workflow_id'), ['workflow_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_schedules_next_fire_at'), ['next_fire_at'], unique=False)
    op.create_table('triggers',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('workflow_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('token_prefix', sa.String(length=16), nullable=False),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('sealed_hmac_secret', sa.Text(), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('fire_count', sa.Integer(), nullable=False),
    sa.Column('last_fired_at', UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_run_id', sa.String(length=40), nullable=True),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workflow_id'], ['workflows.id'], name=op.f('fk_triggers_workflow_id_workflows'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_triggers'))
    )
    with op.batch_alter_table('triggers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_triggers_workflow_id'), ['workflow_id'], unique=False)
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('schedule_id', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('trigger_id', sa.String(length=40), nullable=True))
        batch_op.create_index(batch_op.f('ix_runs_schedule_id'), ['schedule_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_runs_trigger_id'), ['trigger_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_runs_trigger_id'))
        batch_op.drop_index(batch_op.f('ix_runs_schedule_id'))
        batch_op.drop_column('trigger_id')
        batch_op.drop_column('schedule_id')
    with op.batch_alter_table('triggers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_triggers_workflow_id'))
    op.drop_table('triggers')
    with op.batch_alter_table('schedules', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_schedules_next_fire_at'))
        batch_op.drop_index(batch_op.f('ix_schedules_workflow_id'))
    op.drop_table('schedules')
