"""bindings.change_seq: a commit-ordered stamp of each binding's last write, the pull feed's cursor

The feed (`GET /api/v1/sync/bindings`) paged by (updated_at, id) and showed a change only a minute after
it was made, so that a command stamped early but committed late (after a lock wait) was not passed over
by a cursor; the minute made that unlikely, not impossible. `change_seq` is stamped by the database in
commit order (models/changes.py), and the feed pages by (change_seq, id) at once.

On a large table: the column is added on its own (nullable, no default: PostgreSQL changes only the
catalog), waiting at most 10 s for the table's lock; the existing rows are stamped in batches of 5,000 in
id order, each committed by itself (each batch's own transaction id on PostgreSQL, below every later
write's); then the index is built without blocking writes. Processes still on the previous code do not
stamp their writes during a rolling deploy: a binding they change keeps its older stamp, and one they
invite has none, so the feed serves it from its next change; a platform learns of both from the pushed
events (or the reconciliation) meanwhile.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

from models.migrate import fill_in_batches


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

BATCH = 5000
NAME = 'ix_bindings_change'
_NEXT = sa.text("SELECT max(id) FROM (SELECT id FROM bindings WHERE id > :after AND change_seq IS NULL"
                " ORDER BY id LIMIT :n) AS batch")
_STAMP = {"postgresql": "pg_current_xact_id()::text::bigint",
          "sqlite": "(SELECT coalesce(max(change_seq), 0) + 1 FROM bindings)"}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("SET LOCAL lock_timeout = '10s'")
    op.add_column('bindings', sa.Column('change_seq', sa.BigInteger(), nullable=True))
    fill = sa.text(f"UPDATE bindings SET change_seq = {_STAMP[dialect]}"
                   " WHERE id > :after AND id <= :upto AND change_seq IS NULL")
    with op.get_context().autocommit_block():  # one statement a batch: SQLite reads max under its lock
        fill_in_batches(op.get_bind(), _NEXT, fill, batch=BATCH)
        op.create_index(NAME, 'bindings', ['change_seq', 'id'], unique=False, postgresql_concurrently=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(NAME, table_name='bindings', postgresql_concurrently=True)
    with op.batch_alter_table('bindings') as batch_op:
        batch_op.drop_column('change_seq')
