"""ledger_entries.outbox_id: the settlement event that tells the platforms of a posting

A registry balance is a snapshot of the account the province keeps; the province applies Gongji's
postings when it receives their `settlement.completed` / `settlement.reversed`. To know which postings a
snapshot already holds, a posting names its event, and the event's delivery to the platform that sent the
snapshot says when that platform acknowledged it (`workflows/balances.py`). Not a foreign key: the
outbox is purged after its retention, the ledger never is. NULL on the lines written before this revision.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('ledger_entries') as batch:
        batch.add_column(sa.Column('outbox_id', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('ledger_entries') as batch:
        batch.drop_column('outbox_id')
