"""webhook inbox

Revision ID: c5a0c0de0005
Revises: c4a0c0de0004
Create Date: 2026-12-07 03:00:00

Provider webhooks are stored verified and answered at once, then applied by a worker (issue 16, point 7): the
gateway account that verified one, the failed tries to apply it, and an index to find those still waiting.
"""
import sqlalchemy as sa
from alembic import op

revision = 'c5a0c0de0005'
down_revision = 'c4a0c0de0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('inbound_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('account_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('attempts', sa.Integer(), server_default='0', nullable=False))
        batch_op.create_foreign_key(batch_op.f('fk_inbound_events_account_id_gateway_accounts'), 'gateway_accounts',
                                    ['account_id'], ['id'], ondelete='SET NULL')
        batch_op.create_index('ix_inbound_events_pending', ['processed_at', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('inbound_events', schema=None) as batch_op:
        batch_op.drop_index('ix_inbound_events_pending')
        batch_op.drop_constraint(batch_op.f('fk_inbound_events_account_id_gateway_accounts'), type_='foreignkey')
        batch_op.drop_column('attempts')
        batch_op.drop_column('account_id')
