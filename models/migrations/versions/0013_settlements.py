"""settlements, settlement_splits, ledger_entries: paying a beneficiary's medical costs (DESIGN §4)

New tables only: nothing existing is locked or rewritten.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
At = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'settlements',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('platform_id', sa.String(length=32), nullable=False),
        sa.Column('reference', sa.String(length=64), nullable=False),
        sa.Column('request_hash', sa.String(length=64), nullable=False),
        sa.Column('beneficiary_id', sa.String(length=32), nullable=False),
        sa.Column('category', sa.String(length=16), nullable=False),
        sa.Column('institution_code', sa.String(length=32), nullable=False),
        sa.Column('amount_fen', sa.BigInteger(), nullable=False),
        sa.Column('acct_pay', sa.BigInteger(), nullable=False),
        sa.Column('acct_mulaid_pay', sa.BigInteger(), nullable=False),
        sa.Column('psn_cash_pay', sa.BigInteger(), nullable=False),
        sa.Column('balc', sa.BigInteger(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('created_at', At, nullable=False),
        sa.Column('reversed_at', At, nullable=True),
        sa.CheckConstraint("amount_fen > 0 AND acct_pay >= 0 AND acct_mulaid_pay >= 0 AND psn_cash_pay >= 0"
                           " AND acct_pay + acct_mulaid_pay + psn_cash_pay = amount_fen",
                           name=op.f('ck_settlements_parts_add_up')),
        sa.CheckConstraint("status in ('completed', 'reversed')", name=op.f('ck_settlements_settlement_status')),
        sa.CheckConstraint("category in ('outpatient', 'inpatient', 'pharmacy')",
                           name=op.f('ck_settlements_settlement_category')),
        sa.ForeignKeyConstraint(['platform_id'], ['platforms.id'], name=op.f('fk_settlements_platform_id_platforms')),
        sa.ForeignKeyConstraint(['beneficiary_id'], ['persons.id'],
                                name=op.f('fk_settlements_beneficiary_id_persons')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_settlements')),
        sa.UniqueConstraint('platform_id', 'reference', name='uq_settlements_reference'),
    )
    op.create_index(op.f('ix_settlements_beneficiary_id'), 'settlements', ['beneficiary_id'])
    op.create_table(
        'settlement_splits',
        sa.Column('settlement_id', sa.String(length=32), nullable=False),
        sa.Column('binding_id', sa.String(length=32), nullable=False),
        sa.Column('binding_version', sa.Integer(), nullable=False),
        sa.Column('position', sa.SmallInteger(), nullable=False),
        sa.Column('grantor_id', sa.String(length=32), nullable=False),
        sa.Column('amount_fen', sa.BigInteger(), nullable=False),
        sa.CheckConstraint('amount_fen > 0', name=op.f('ck_settlement_splits_split_positive')),
        sa.ForeignKeyConstraint(['settlement_id'], ['settlements.id'],
                                name=op.f('fk_settlement_splits_settlement_id_settlements')),
        sa.ForeignKeyConstraint(['binding_id'], ['bindings.id'], name=op.f('fk_settlement_splits_binding_id_bindings')),
        sa.ForeignKeyConstraint(['grantor_id'], ['persons.id'], name=op.f('fk_settlement_splits_grantor_id_persons')),
        sa.PrimaryKeyConstraint('settlement_id', 'binding_id', name=op.f('pk_settlement_splits')),
    )
    op.create_index('ix_settlement_splits_binding', 'settlement_splits', ['binding_id', 'binding_version'])
    op.create_table(
        'ledger_entries',
        sa.Column('id', BigId, autoincrement=True, nullable=False),
        sa.Column('settlement_id', sa.String(length=32), nullable=False),
        sa.Column('posting', sa.String(length=16), nullable=False),
        sa.Column('account', sa.String(length=48), nullable=False),
        sa.Column('amount_fen', sa.BigInteger(), nullable=False),
        sa.Column('at', At, nullable=False),
        sa.CheckConstraint("posting in ('settle', 'reverse')", name=op.f('ck_ledger_entries_ledger_posting')),
        sa.ForeignKeyConstraint(['settlement_id'], ['settlements.id'],
                                name=op.f('fk_ledger_entries_settlement_id_settlements')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_entries')),
    )
    op.create_index(op.f('ix_ledger_entries_settlement_id'), 'ledger_entries', ['settlement_id'])
    op.create_index(op.f('ix_ledger_entries_account'), 'ledger_entries', ['account'])


def downgrade() -> None:
    op.drop_table('ledger_entries')
    op.drop_table('settlement_splits')
    op.drop_table('settlements')
