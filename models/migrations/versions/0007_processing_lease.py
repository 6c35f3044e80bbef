"""outbox.lease_until: the lease of the worker processing the row

`workflows.once.run_once` takes an outbox row with a lease (`LEASE_S`), so a second copy of its message
(the relay's re-send of a row still unprocessed after 10 s, a broker redelivery) does not run the same
work at the same time (for a stored webhook: apply it twice and overwrite the first run's outcome and
attempt count). NULL: nobody holds it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('lease_until')
