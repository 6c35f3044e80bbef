"""indexes for the operator dashboard (stuck reasons, overview, list)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

PENDING = "status = 'pending'"
UNDELIVERED = "status <> 'delivered'"
FAILED = "error is not null"


def _where(sql: str) -> dict:
    return {"sqlite_where": sa.text(sql), "postgresql_where": sa.text(sql)}


def upgrade() -> None:
    with op.batch_alter_table('bindings', schema=None) as batch_op:
        batch_op.create_index('ix_bindings_state_updated', ['state', 'updated_at', 'id'], unique=False)
        batch_op.create_index('ix_bindings_region_state_updated', ['grantor_region', 'state', 'updated_at', 'id'],
                              unique=False)

    with op.batch_alter_table('binding_transitions', schema=None) as batch_op:
        batch_op.create_index('ix_binding_transitions_at', ['at'], unique=False)

    with op.batch_alter_table('verification_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_verification_attempts_pending', ['opened_at'], unique=False, **_where(PENDING))

    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_binding_id', ['binding_id'], unique=False)
        batch_op.create_index('ix_deliveries_undelivered', ['platform_id', 'status', 'created_at'], unique=False,
                              **_where(UNDELIVERED))

    with op.batch_alter_table('delivery_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_delivery_attempts_failed', ['at'], unique=False, **_where(FAILED))

    with op.batch_alter_table('platform_sync', schema=None) as batch_op:
        batch_op.create_index('ix_platform_sync_binding_id', ['binding_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('platform_sync', schema=None) as batch_op:
        batch_op.drop_index('ix_platform_sync_binding_id')

    with op.batch_alter_table('delivery_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_delivery_attempts_failed', **_where(FAILED))

    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_undelivered', **_where(UNDELIVERED))
        batch_op.drop_index('ix_deliveries_binding_id')

    with op.batch_alter_table('verification_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_verification_attempts_pending', **_where(PENDING))

    with op.batch_alter_table('binding_transitions', schema=None) as batch_op:
        batch_op.drop_index('ix_binding_transitions_at')

    with op.batch_alter_table('bindings', schema=None) as batch_op:
        batch_op.drop_index('ix_bindings_region_state_updated')
        batch_op.drop_index('ix_bindings_state_updated')
