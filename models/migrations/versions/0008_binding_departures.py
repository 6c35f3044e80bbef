"""binding_departures: the provinces a binding left through `relocate`, and at which version

A platform serving a province the binding left is owed its `binding.relocated` event (where it went) and
nothing after it; its current regions no longer name that province, so reconciliation and an operator's
resend find what such a platform lacks here.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'binding_departures',
        sa.Column('binding_id', sa.String(length=32), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('province_code', sa.String(length=2), nullable=False),
        sa.Column('left_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['binding_id'], ['bindings.id'],
                                name=op.f('fk_binding_departures_binding_id_bindings')),
        sa.PrimaryKeyConstraint('binding_id', 'version', 'province_code', name=op.f('pk_binding_departures')),
    )
    op.create_index('ix_binding_departures_province_left', 'binding_departures', ['province_code', 'left_at'])


def downgrade() -> None:
    op.drop_index('ix_binding_departures_province_left', table_name='binding_departures')
    op.drop_table('binding_departures')
