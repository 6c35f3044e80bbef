"""settlements.reversal_reason: why a settlement was reversed, as its platform or the operator gave it

A platform may now send `{"reason": …}` with `POST /settlements/{id}/reversal`; an operator's reversal
keeps its reason here too (the audit log keeps its own copy). The API answer, the `settlement.reversed`
event and the dashboard's settlement page carry it. Added on its own (nullable, no default: PostgreSQL
changes only the catalog), waiting at most 10 s for the table's lock.

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op


revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SET LOCAL lock_timeout = '10s'")
    op.add_column('settlements', sa.Column('reversal_reason', sa.Text(), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE settlements DROP COLUMN reversal_reason")
