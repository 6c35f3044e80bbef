"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-22
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('idempotency_records',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('platform_id', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('response_body', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_idempotency_records')),
    sa.UniqueConstraint('platform_id', 'key', name='uq_idempotency_records_key')
    )
    op.create_table('outbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('topic', sa.String(length=48), nullable=False),
    sa.Column('binding_id', sa.String(length=32), nullable=True),
    sa.Column('binding_version', sa.Integer(), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('relayed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox'))
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbox_binding_id'), ['binding_id'], unique=False)
        batch_op.create_index('ix_outbox_pending', ['id'], unique=False, sqlite_where=sa.text('processed_at is null'), postgresql_where=sa.text('processed_at is null'))

    op.create_table('persons',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('id_number', sa.Text(), nullable=False),
    sa.Column('id_number_hash', sa.String(length=64), nullable=False),
    sa.Column('id_number_masked', sa.String(length=18), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('name_masked', sa.String(length=64), nullable=False),
    sa.Column('insurance_type', sa.String(length=16), nullable=False),
    sa.Column('insurance_status', sa.String(length=16), nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('real_name_verified', sa.Boolean(), nullable=False),
    sa.Column('balance_fen', sa.BigInteger(), nullable=False),
    sa.Column('commitment_version', sa.String(length=32), nullable=True),
    sa.Column('deceased', sa.Boolean(), nullable=False),
    sa.Column('source_platform', sa.String(length=32), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("insurance_status in ('active', 'suspended', 'ended')", name=op.f('ck_persons_insurance_status')),
    sa.CheckConstraint("insurance_type in ('employee', 'resident', 'none')", name=op.f('ck_persons_insurance_type')),
    sa.CheckConstraint('balance_fen >= 0', name=op.f('ck_persons_balance_not_negative')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_persons')),
    sa.UniqueConstraint('id_number_hash', name=op.f('uq_persons_id_number_hash'))
    )
    with op.batch_alter_table('persons', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_persons_region_code'), ['region_code'], unique=False)

    op.create_table('platforms',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('api_key_hash', sa.String(length=64), nullable=False),
    sa.Column('webhook_secret', sa.Text(), nullable=False),
    sa.Column('webhook_url', sa.Text(), nullable=True),
    sa.Column('provinces', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_platforms')),
    sa.UniqueConstraint('api_key_hash', name=op.f('uq_platforms_api_key_hash'))
    )
    op.create_table('received_webhooks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('platform_id', sa.String(length=32), nullable=False),
    sa.Column('webhook_id', sa.String(length=255), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('headers', sa.JSON(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.String(length=64), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_received_webhooks')),
    sa.UniqueConstraint('platform_id', 'webhook_id', name='uq_received_webhooks_id')
    )
    with op.batch_alter_table('received_webhooks', schema=None) as batch_op:
        batch_op.create_index('ix_received_webhooks_pending', ['received_at'], unique=False, sqlite_where=sa.text('processed_at is null'), postgresql_where=sa.text('processed_at is null'))

    op.create_table('regions',
    sa.Column('code', sa.String(length=6), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('province_code', sa.String(length=2), nullable=False),
    sa.Column('platform_id', sa.String(length=32), nullable=True),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_regions'))
    )
    with op.batch_alter_table('regions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_regions_province_code'), ['province_code'], unique=False)

    op.create_table('region_policies',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('effective_from', sa.DateTime(timezone=True), nullable=False),
    sa.Column('commitment_version', sa.String(length=32), nullable=False),
    sa.Column('allowed_relationships', sa.JSON(), nullable=False),
    sa.Column('intra_province', sa.Boolean(), nullable=False),
    sa.Column('cross_province', sa.Boolean(), nullable=False),
    sa.Column('invitation_ttl_s', sa.Integer(), nullable=False),
    sa.Column('verification_timeout_s', sa.Integer(), nullable=False),
    sa.Column('max_verification_attempts', sa.Integer(), nullable=False),
    sa.Column('max_beneficiaries_per_grantor', sa.Integer(), nullable=False),
    sa.Column('max_grantors_per_beneficiary', sa.Integer(), nullable=False),
    sa.Column('frequency_max_changes', sa.Integer(), nullable=False),
    sa.Column('frequency_window_s', sa.Integer(), nullable=False),
    sa.Column('deduction_order_policy', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['region_code'], ['regions.code'], name=op.f('fk_region_policies_region_code_regions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_region_policies')),
    sa.UniqueConstraint('region_code', 'version', name='uq_region_policies_version')
    )
    op.create_table('bindings',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('grantor_id', sa.String(length=32), nullable=False),
    sa.Column('beneficiary_id', sa.String(length=32), nullable=False),
    sa.Column('relationship', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=24), nullable=False),
    sa.Column('verification_method', sa.String(length=16), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('platform_id', sa.String(length=32), nullable=True),
    sa.Column('authorized_amount_fen', sa.BigInteger(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('province_code', sa.String(length=2), nullable=False),
    sa.Column('grantor_region', sa.String(length=6), nullable=False),
    sa.Column('beneficiary_region', sa.String(length=6), nullable=False),
    sa.Column('policy_id', sa.Integer(), nullable=False),
    sa.Column('deduction_rank', sa.Integer(), nullable=True),
    sa.Column('failed_verifications', sa.Integer(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deadline_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deadline_event', sa.String(length=32), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('end_event', sa.String(length=32), nullable=True),
    sa.CheckConstraint('authorized_amount_fen is null or authorized_amount_fen >= 0', name=op.f('ck_bindings_amount_not_negative')),
    sa.ForeignKeyConstraint(['beneficiary_id'], ['persons.id'], name=op.f('fk_bindings_beneficiary_id_persons')),
    sa.ForeignKeyConstraint(['grantor_id'], ['persons.id'], name=op.f('fk_bindings_grantor_id_persons')),
    sa.ForeignKeyConstraint(['policy_id'], ['region_policies.id'], name=op.f('fk_bindings_policy_id_region_policies')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bindings'))
    )
    with op.batch_alter_table('bindings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bindings_beneficiary_id'), ['beneficiary_id'], unique=False)
        batch_op.create_index('ix_bindings_deadline', ['deadline_at'], unique=False, sqlite_where=sa.text('deadline_at is not null'), postgresql_where=sa.text('deadline_at is not null'))
        batch_op.create_index(batch_op.f('ix_bindings_grantor_id'), ['grantor_id'], unique=False)
        batch_op.create_index('ix_bindings_province_state', ['province_code', 'state'], unique=False)
        batch_op.create_index('uq_bindings_active_pair', ['grantor_id', 'beneficiary_id'], unique=True, sqlite_where=sa.text("state in ('invited', 'face_verified', 'accepted', 'authorized')"), postgresql_where=sa.text("state in ('invited', 'face_verified', 'accepted', 'authorized')"))

    op.create_table('binding_transitions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('binding_id', sa.String(length=32), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('from_state', sa.String(length=24), nullable=True),
    sa.Column('to_state', sa.String(length=24), nullable=False),
    sa.Column('event', sa.String(length=32), nullable=False),
    sa.Column('actor_kind', sa.String(length=16), nullable=False),
    sa.Column('actor_id', sa.String(length=64), nullable=True),
    sa.Column('channel', sa.String(length=16), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['binding_id'], ['bindings.id'], name=op.f('fk_binding_transitions_binding_id_bindings')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_binding_transitions')),
    sa.UniqueConstraint('binding_id', 'seq', name='uq_binding_transitions_seq')
    )
    op.create_table('verification_attempts',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('binding_id', sa.String(length=32), nullable=False),
    sa.Column('attempt_no', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deadline_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('verifier_id', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['binding_id'], ['bindings.id'], name=op.f('fk_verification_attempts_binding_id_bindings')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_verification_attempts')),
    sa.UniqueConstraint('binding_id', 'attempt_no', name='uq_verification_attempts_no')
    )
    with op.batch_alter_table('verification_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_verification_attempts_binding_id'), ['binding_id'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('verification_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_verification_attempts_binding_id'))

    op.drop_table('verification_attempts')
    op.drop_table('binding_transitions')
    with op.batch_alter_table('bindings', schema=None) as batch_op:
        batch_op.drop_index('uq_bindings_active_pair', sqlite_where=sa.text("state in ('invited', 'face_verified', 'accepted', 'authorized')"), postgresql_where=sa.text("state in ('invited', 'face_verified', 'accepted', 'authorized')"))
        batch_op.drop_index('ix_bindings_province_state')
        batch_op.drop_index(batch_op.f('ix_bindings_grantor_id'))
        batch_op.drop_index('ix_bindings_deadline', sqlite_where=sa.text('deadline_at is not null'), postgresql_where=sa.text('deadline_at is not null'))
        batch_op.drop_index(batch_op.f('ix_bindings_beneficiary_id'))

    op.drop_table('bindings')
    op.drop_table('region_policies')
    with op.batch_alter_table('regions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_regions_province_code'))

    op.drop_table('regions')
    with op.batch_alter_table('received_webhooks', schema=None) as batch_op:
        batch_op.drop_index('ix_received_webhooks_pending', sqlite_where=sa.text('processed_at is null'), postgresql_where=sa.text('processed_at is null'))

    op.drop_table('received_webhooks')
    op.drop_table('platforms')
    with op.batch_alter_table('persons', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_persons_region_code'))

    op.drop_table('persons')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_pending', sqlite_where=sa.text('processed_at is null'), postgresql_where=sa.text('processed_at is null'))
        batch_op.drop_index(batch_op.f('ix_outbox_binding_id'))

    op.drop_table('outbox')
    op.drop_table('idempotency_records')

