"""settlements (created_at, id): the dashboard's settlement list and today's count

The dashboard lists settlements newest first in keyset pages of (created_at, id), filters them by the day
they were settled, and the overview counts today's. Without this index each of those reads the whole
table (a sort, or a scan for the count on every overview load); with it they read the page or the day.

Built without blocking writes (PostgreSQL: CONCURRENTLY).

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-25
"""
from alembic import op


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

INDEX, TABLE = 'ix_settlements_created', 'settlements'


def upgrade() -> None:
    with op.get_context().autocommit_block():  # built without blocking writes (models/migrate.py)
        op.create_index(INDEX, TABLE, ['created_at', 'id'], unique=False, postgresql_concurrently=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(INDEX, table_name=TABLE, postgresql_concurrently=True)
