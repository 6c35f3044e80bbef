"""ix_bindings_beneficiary_region_state_updated: a region's bindings whose beneficiary alone is insured there

The dashboard's region filter and its counts per region take a binding under both its persons' regions
(a 苏州 bureau finds the bindings of its insured beneficiaries whose grantor is in 南京). The grantor's side
walks ix_bindings_region_state_updated; this partial index holds only the bindings across two regions.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

OTHER_REGION = "beneficiary_region <> grantor_region"


NAME, COLUMNS = 'ix_bindings_beneficiary_region_state_updated', ['beneficiary_region', 'state', 'updated_at', 'id']


def upgrade() -> None:
    # built without blocking writes to a large bindings table (models/migrate.py)
    with op.get_context().autocommit_block():
        op.create_index(NAME, 'bindings', COLUMNS, unique=False, postgresql_concurrently=True,
                        sqlite_where=sa.text(OTHER_REGION), postgresql_where=sa.text(OTHER_REGION))


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(NAME, table_name='bindings', postgresql_concurrently=True)
