"""idempotency_records.created_at index: keys are forgotten after their retention

`Idempotency-Key` records were kept for ever, each with a digest of its request. Now a key is remembered
for `GONGJI_IDEMPOTENCY_RETENTION_H` hours (24 by default) and the scheduler deletes older records, the
oldest first in batches (`workflows/idempotency.py` `purge`): this index is what it reads. The digest is
now keyed; the records claimed before it was keyed (with an unkeyed digest of a body that may carry an ID
number) are the first the purge takes once they are a day old, 100,000 a minute (a table of every key since
launch drains over hours, not at once); a retry that takes one over writes the keyed digest into it. Nothing
here rewrites them: their bodies are not kept, so their digests cannot be recomputed, and they still answer
a retry until then.

The index is built without blocking writes (PostgreSQL: CONCURRENTLY).

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-25
"""
from alembic import op


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

INDEX, TABLE = 'ix_idempotency_records_created_at', 'idempotency_records'


def upgrade() -> None:
    with op.get_context().autocommit_block():  # built without blocking writes (models/migrate.py)
        op.create_index(INDEX, TABLE, ['created_at'], unique=False, postgresql_concurrently=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(INDEX, table_name=TABLE, postgresql_concurrently=True)
