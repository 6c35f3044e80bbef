"""persons.registry_sent_at: a registry fact's time as its source platform stated it

`registry_as_of` holds the time of the newest fact applied, never later than when it was applied: a
platform whose clock runs fast must not make another platform's later fact `stale`. Its own next fact is
compared with the time it stated itself (`workflows/person_events._check_fresh`), so its facts keep their
order when they arrive out of it. NULL on the persons of before this revision: their next fact is compared
with `registry_as_of`, as before. Added on its own (nullable, no default: PostgreSQL changes only the
catalog), waiting at most 10 s for the table's lock.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op


revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SET LOCAL lock_timeout = '10s'")
    op.add_column('persons', sa.Column('registry_sent_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # a plain DROP COLUMN on both (SQLite has it since 3.35): a batch would copy `persons` into a new table,
    # which SQLite refuses while other tables' foreign keys point at it
    op.execute("ALTER TABLE persons DROP COLUMN registry_sent_at")
