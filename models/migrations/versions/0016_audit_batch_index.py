"""audit_log (batch_id, id): a batch's own audit rows, its refusals among them

A batch job's page counts what it refused and sends the operator to the audit log for the reasons; the log
is then filtered by that batch (`/dashboard/audit?batch=…`). Without this index the filter reads the whole
log. Partial: most audit rows belong to no batch.

Built without blocking writes (PostgreSQL: CONCURRENTLY).

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

INDEX, TABLE = 'ix_audit_log_batch', 'audit_log'
WHERE = sa.text('batch_id IS NOT NULL')


def upgrade() -> None:
    with op.get_context().autocommit_block():  # built without blocking writes (models/migrate.py)
        op.create_index(INDEX, TABLE, ['batch_id', 'id'], unique=False, postgresql_concurrently=True,
                        postgresql_where=WHERE, sqlite_where=WHERE)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(INDEX, table_name=TABLE, postgresql_concurrently=True)
