"""received_webhooks.binding_id and the dashboard's problem index

Inbound webhooks were invisible on the dashboard: a webhook refused by a rule, or one that keeps failing in
the worker, was seen only by its sender (`GET /api/v1/webhooks/{id}`). The dashboard now lists them
(`workflows/inbound.py`), and a binding's page the webhooks that named it:
- `binding_id`: the binding a webhook's data names (`data.binding_id`), written by the worker with the
  outcome when that binding exists. Rows stored before this revision keep NULL (their bodies are
  encrypted; the binding's page lists what arrives from now on).
- `ix_received_webhooks_binding` (binding_id, received_at), partial on `binding_id is not null`: a binding's
  webhooks, newest first; a stored row has none, so ingest writes no entry into it.
- `ix_received_webhooks_problems` (received_at, id), partial on the processed rows whose outcome is not one
  of the ordinary ones, i.e. a refusal or a failure (`models/messaging.py` PROBLEM_SQL): the problem list
  and its counts read only those. A freshly stored row is unprocessed, so ingest writes no entry into it
  either, and a webhook applied as usual never enters it.

On a large table: the column is added on its own (nullable, no default: PostgreSQL changes only the
catalog), waiting at most 10 s for the table's lock; the indexes are built without blocking writes.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

TABLE = 'received_webhooks'
NAMED = "binding_id is not null"
# the predicate as models/messaging.py has it at this revision (a migration never imports a later model)
_SETTLED = ("applied", "stale", "passed", "failed", "no_binding", "unsupported_type", "ignored_pending",
            "ignored_passed", "ignored_failed", "ignored_timed_out", "ignored_abandoned", "invited", "face_verified",
            "accepted", "authorized", "unbound", "declined", "cancelled", "expired", "verification_failed",
            "rejected")
PROBLEM = "processed_at is not null and outcome not in (" + ", ".join(f"'{o}'" for o in _SETTLED) + ")"
INDEXES = (('ix_received_webhooks_binding', ['binding_id', 'received_at'], NAMED),
           ('ix_received_webhooks_problems', ['received_at', 'id'], PROBLEM))


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SET LOCAL lock_timeout = '10s'")
    op.add_column(TABLE, sa.Column('binding_id', sa.String(length=32), nullable=True))
    with op.get_context().autocommit_block():  # built without blocking writes (models/migrate.py)
        for name, columns, where in INDEXES:
            op.create_index(name, TABLE, columns, unique=False, postgresql_concurrently=True,
                            sqlite_where=sa.text(where), postgresql_where=sa.text(where))


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, _columns, _where in INDEXES:
            op.drop_index(name, table_name=TABLE, postgresql_concurrently=True)
    with op.batch_alter_table(TABLE) as batch_op:
        batch_op.drop_column('binding_id')
