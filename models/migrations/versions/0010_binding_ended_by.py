"""bindings.ended_by: the kind of actor that ended a binding (person, operator, system, verifier)

Only a person's own unbind or cancel counts against the region's frequency limit: an ending by the system
(death, insurance ended, a move the policy does not allow) or by an operator is not the person's change, and
used to take one of the few changes the window allows. Bindings ended before this revision take the actor of
their last history row (the transition that ended them).

On a large table: the column is added on its own (nullable, no default: PostgreSQL changes only the
catalog), waiting at most 10 s for the table's lock so that the application's queries never queue behind it
for longer (a busy moment fails the upgrade; run it again); then the ended bindings are filled in batches of
5,000 in id order, each committed by itself, so no lock is held for the whole table.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

from models.migrate import fill_in_batches


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

BATCH = 5000
_NEXT = sa.text("SELECT max(id) FROM (SELECT id FROM bindings WHERE id > :after AND ended_at IS NOT NULL"
                " ORDER BY id LIMIT :n) AS batch")
# a correlated subquery: the same statement on PostgreSQL and SQLite
_FILL = sa.text("UPDATE bindings SET ended_by = (SELECT t.actor_kind FROM binding_transitions t"
                " WHERE t.binding_id = bindings.id AND t.seq = bindings.version)"
                " WHERE id > :after AND id <= :upto AND ended_at IS NOT NULL")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SET LOCAL lock_timeout = '10s'")
    op.add_column('bindings', sa.Column('ended_by', sa.String(length=16), nullable=True))
    with op.get_context().autocommit_block():
        fill_in_batches(op.get_bind(), _NEXT, _FILL, batch=BATCH)


def downgrade() -> None:
    with op.batch_alter_table('bindings') as batch_op:
        batch_op.drop_column('ended_by')
