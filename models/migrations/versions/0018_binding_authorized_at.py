"""bindings.authorized_at: when the grantor's account was bound to the binding (its first authorization)

`latest_bound_first`, `single_grantor` and the unranked part of `user_order` pay from the binding bound
most recently. The guides bind the account at authorization ("绑定账户,授权金额", after the family member
joined by accepting), so the binding's age from its invitation was the wrong clock: one invited first but
authorized last paid last. Re-authorizing (a new amount) keeps the time. Backfilled from the history: the
first transition into `authorized`; NULL for a binding never authorized (and, during a rolling deploy, for
one a process of the older code authorizes: `settlements.bound_at` takes its last change then).

On a large table, as 0010: the column is added on its own (nullable, no default: PostgreSQL changes only
the catalog), waiting at most 10 s for the table's lock; then the bindings are filled in batches of 5,000
in id order, each committed by itself, so no lock is held on the whole table.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

from models.migrate import fill_in_batches


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None

BATCH = 5000
_NEXT = sa.text("SELECT max(id) FROM (SELECT id FROM bindings WHERE id > :after ORDER BY id LIMIT :n) AS batch")
# a correlated subquery: the same statement on PostgreSQL and SQLite
_FILL = sa.text("UPDATE bindings SET authorized_at = (SELECT min(t.at) FROM binding_transitions t"
                " WHERE t.binding_id = bindings.id AND t.to_state = 'authorized')"
                " WHERE id > :after AND id <= :upto AND EXISTS (SELECT 1 FROM binding_transitions t"
                " WHERE t.binding_id = bindings.id AND t.to_state = 'authorized')")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SET LOCAL lock_timeout = '10s'")
    op.add_column('bindings', sa.Column('authorized_at', sa.DateTime(timezone=True), nullable=True))
    with op.get_context().autocommit_block():
        fill_in_batches(op.get_bind(), _NEXT, _FILL, batch=BATCH)


def downgrade() -> None:
    # a plain DROP COLUMN on both (SQLite has it since 3.35): a batch would copy `bindings` into a new
    # table, which SQLite refuses while other tables' foreign keys point at it
    op.execute("ALTER TABLE bindings DROP COLUMN authorized_at")
