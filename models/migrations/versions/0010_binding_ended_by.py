"""bindings.ended_by: the kind of actor that ended a binding (person, operator, system)

Only a person's own unbind or cancel counts against the region's frequency limit: an ending by the system
(death, insurance ended, a move the policy does not allow) or by an operator is not the person's change, and
used to take one of the few changes the window allows. Bindings ended before this revision take the actor of
their last history row (the transition that ended them).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('bindings', sa.Column('ended_by', sa.String(length=16), nullable=True))
    # a correlated subquery: the same statement on PostgreSQL and SQLite
    op.execute("UPDATE bindings SET ended_by = (SELECT t.actor_kind FROM binding_transitions t"
               " WHERE t.binding_id = bindings.id AND t.seq = bindings.version)"
               " WHERE ended_at IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table('bindings') as batch_op:
        batch_op.drop_column('ended_by')
