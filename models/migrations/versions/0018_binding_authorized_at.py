"""bindings.authorized_at: when the grantor's account was bound to the binding (its first authorization)

`latest_bound_first`, `single_grantor` and the unranked part of `user_order` pay from the binding bound
most recently. The guides bind the account at authorization ("绑定账户,授权金额", after the family member
joined by accepting), so the binding's age from its invitation was the wrong clock: one invited first but
authorized last paid last. Re-authorizing (a new amount) keeps the time. Backfilled from the history: the
first transition into `authorized`; NULL for a binding never authorized.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('bindings') as batch:
        batch.add_column(sa.Column('authorized_at', sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE bindings SET authorized_at = (SELECT min(t.at) FROM binding_transitions t "
               "WHERE t.binding_id = bindings.id AND t.to_state = 'authorized') "
               "WHERE EXISTS (SELECT 1 FROM binding_transitions t "
               "WHERE t.binding_id = bindings.id AND t.to_state = 'authorized')")


def downgrade() -> None:
    # a plain DROP COLUMN on both (SQLite has it since 3.35): a batch would copy `bindings` into a new
    # table, which SQLite refuses while other tables' foreign keys point at it
    op.execute("ALTER TABLE bindings DROP COLUMN authorized_at")
