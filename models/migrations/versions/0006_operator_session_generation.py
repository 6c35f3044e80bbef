"""operators.session_generation: part of every dashboard session cookie, so that signing out ends them all

A NULL generation (accounts from before this revision) is given one at the next sign-in; until then no
session cookie names it, so sessions issued before the upgrade end with it (operators sign in again once).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('operators', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_generation', sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('operators', schema=None) as batch_op:
        batch_op.drop_column('session_generation')
