"""region_policies.in_person_verification: may the region's service hall check identity in person

The Xinjiang guide's 线下绑定流程: the family brings both ID cards to the service hall (医保服务大厅), fills in
the application form, and the bureau checks and approves it, with no face check in an app. A region policy
now says whether its staff may do that (`workflows/in_person.py`). Every existing version says no
(a version is never edited: a bureau that offers it publishes a new one with `gongji policy publish --set
in_person_verification=true`); a fresh database takes the seed's values. NOT NULL with a constant default:
PostgreSQL 11+ changes only the catalog; waiting at most 10 s for the table's lock.

Revision ID: 0024
Revises: 0023
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op


revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SET LOCAL lock_timeout = '10s'")
    op.add_column('region_policies', sa.Column('in_person_verification', sa.Boolean(), nullable=False,
                                               server_default=sa.false()))


def downgrade() -> None:
    # a plain DROP COLUMN (SQLite 3.35+ has it): a batch copy would drop the table bindings refer to
    op.execute("ALTER TABLE region_policies DROP COLUMN in_person_verification")
