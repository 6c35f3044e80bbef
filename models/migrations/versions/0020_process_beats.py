"""process_beats: a row per worker or scheduler process, refreshed while it runs

The dashboard's overview and `/metrics` count the processes seen in the last minute
(`workflows/processes.py`). A new, small table: nothing else is touched.

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op


revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'process_beats',
        sa.Column('id', sa.String(length=200), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('host', sa.String(length=128), nullable=False),
        sa.Column('pid', sa.Integer(), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_process_beats')),
    )


def downgrade() -> None:
    op.drop_table('process_beats')
