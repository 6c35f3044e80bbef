"""drop two indexes no query needs (every binding UPDATE and attempt INSERT paid for them)

ix_bindings_province_state (province_code, state): no query filters on it (the sync feed walks
ix_bindings_updated, the dashboard ix_bindings_region_state_updated); a binding UPDATE is never HOT
(state and updated_at are indexed), so each index costs an entry per transition.
ix_verification_attempts_binding_id (binding_id): a prefix of uq_verification_attempts_no
(binding_id, attempt_no), which serves the same look-ups.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('bindings', schema=None) as batch_op:
        batch_op.drop_index('ix_bindings_province_state')
    with op.batch_alter_table('verification_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_verification_attempts_binding_id')


def downgrade() -> None:
    with op.batch_alter_table('verification_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_verification_attempts_binding_id', ['binding_id'], unique=False)
    with op.batch_alter_table('bindings', schema=None) as batch_op:
        batch_op.create_index('ix_bindings_province_state', ['province_code', 'state'], unique=False)
