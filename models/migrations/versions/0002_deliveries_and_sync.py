"""deliveries, sync, secret rotation, provider sessions, registry as-of

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('deliveries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('outbox_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('platform_id', sa.String(length=32), nullable=False),
    sa.Column('event_id', sa.String(length=40), nullable=False),
    sa.Column('topic', sa.String(length=48), nullable=False),
    sa.Column('binding_id', sa.String(length=32), nullable=True),
    sa.Column('binding_version', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_status_code', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('dead_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status in ('pending', 'failing', 'delivered', 'dead')", name=op.f('ck_deliveries_delivery_status')),
    sa.ForeignKeyConstraint(['outbox_id'], ['outbox.id'], name=op.f('fk_deliveries_outbox_id_outbox')),
    sa.ForeignKeyConstraint(['platform_id'], ['platforms.id'], name=op.f('fk_deliveries_platform_id_platforms')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deliveries')),
    sa.UniqueConstraint('outbox_id', 'platform_id', name='uq_deliveries_event_platform')
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_binding', ['platform_id', 'binding_id', 'binding_version'], unique=False)
        batch_op.create_index('ix_deliveries_due', ['next_attempt_at'], unique=False, sqlite_where=sa.text("status in ('pending', 'failing')"), postgresql_where=sa.text("status in ('pending', 'failing')"))
        batch_op.create_index('ix_deliveries_platform_status', ['platform_id', 'status'], unique=False)

    op.create_table('delivery_attempts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('delivery_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('attempt_no', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['delivery_id'], ['deliveries.id'], name=op.f('fk_delivery_attempts_delivery_id_deliveries')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery_attempts'))
    )
    with op.batch_alter_table('delivery_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_delivery_attempts_delivery_id'), ['delivery_id'], unique=False)

    op.create_table('platform_sync',
    sa.Column('platform_id', sa.String(length=32), nullable=False),
    sa.Column('binding_id', sa.String(length=32), nullable=False),
    sa.Column('acked_version', sa.Integer(), nullable=False),
    sa.Column('acked_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['binding_id'], ['bindings.id'], name=op.f('fk_platform_sync_binding_id_bindings')),
    sa.ForeignKeyConstraint(['platform_id'], ['platforms.id'], name=op.f('fk_platform_sync_platform_id_platforms')),
    sa.PrimaryKeyConstraint('platform_id', 'binding_id', name=op.f('pk_platform_sync'))
    )
    with op.batch_alter_table('bindings', schema=None) as batch_op:
        batch_op.create_index('ix_bindings_updated', ['updated_at', 'id'], unique=False)

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fanned_out_at', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('persons', schema=None) as batch_op:
        batch_op.add_column(sa.Column('registry_as_of', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('platforms', schema=None) as batch_op:
        batch_op.add_column(sa.Column('previous_webhook_secret', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('previous_secret_expires_at', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('verification_attempts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('provider_status', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('provider_session_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('provider_requests', sa.Integer(), server_default=sa.text('0'), nullable=False))
        batch_op.add_column(sa.Column('provider_error', sa.Text(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('verification_attempts', schema=None) as batch_op:
        batch_op.drop_column('provider_error')
        batch_op.drop_column('provider_requests')
        batch_op.drop_column('provider_session_id')
        batch_op.drop_column('provider_status')

    with op.batch_alter_table('platforms', schema=None) as batch_op:
        batch_op.drop_column('previous_secret_expires_at')
        batch_op.drop_column('previous_webhook_secret')

    with op.batch_alter_table('persons', schema=None) as batch_op:
        batch_op.drop_column('registry_as_of')

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('fanned_out_at')

    with op.batch_alter_table('bindings', schema=None) as batch_op:
        batch_op.drop_index('ix_bindings_updated')

    op.drop_table('platform_sync')
    with op.batch_alter_table('delivery_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_delivery_attempts_delivery_id'))

    op.drop_table('delivery_attempts')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_platform_status')
        batch_op.drop_index('ix_deliveries_due', sqlite_where=sa.text("status in ('pending', 'failing')"), postgresql_where=sa.text("status in ('pending', 'failing')"))
        batch_op.drop_index('ix_deliveries_binding')

    op.drop_table('deliveries')
