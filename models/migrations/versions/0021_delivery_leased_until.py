"""deliveries.leased_until: a worker's try in flight until then (NULL otherwise)

A claim sets it to its lease (as it sets `next_attempt_at`), the try's record clears it. An operator's
retry makes a failing delivery due now only when no worker is trying it (`workflows/repair.py`): a failing
delivery waiting for its next try and one a worker is trying again both have a future `next_attempt_at`.
Added on its own (nullable, no default: PostgreSQL changes only the catalog), waiting at most 10 s for the
table's lock. Deliveries claimed before this revision have none: their record clears nothing.

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op


revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SET LOCAL lock_timeout = '10s'")
    op.add_column('deliveries', sa.Column('leased_until', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE deliveries DROP COLUMN leased_until")
