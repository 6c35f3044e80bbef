"""binding_transitions.request_id: the request that made a transition (workflows/correlation.py)

Its `X-Request-Id` (given by the caller or made by Gongji), or `webhook:<webhook-id>` for a transition a
stored webhook made; null for a timer's, a command at the bureau's console, and every row before this
revision. The API's history, the dashboard's binding page and the transition's event carry it. Added on
its own (nullable, no default: PostgreSQL changes only the catalog), waiting at most 10 s for the table's
lock; not indexed (looked up from the log line or the event, never searched for).

Revision ID: 0023
Revises: 0022
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op


revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SET LOCAL lock_timeout = '10s'")
    op.add_column('binding_transitions', sa.Column('request_id', sa.String(length=80), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE binding_transitions DROP COLUMN request_id")
