"""outbox claim index; transactions by order

Revision ID: 7d1e2f3a4b5c
Revises: 3c6565a8c7d5
Create Date: 2026-11-30 03:40:00

The dispatcher claims due rows most urgent first. Ordered by a priority expression, every claim sorted all due
rows (a backlog of 10,000 made each claim scan 10,000); with this index it reads each priority's oldest due rows
as an index range.

Ingest asks, for every chunk, whether each failed order already has an open case: without an index on the order
id each chunk scanned every stored transaction, so ingest slowed as the table grew.
"""
from alembic import op

revision = '7d1e2f3a4b5c'
down_revision = '3c6565a8c7d5'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_claim', ['state', 'priority', 'scheduled_for', 'id'], unique=False)
    with op.batch_alter_table('transactions', schema=None) as batch_op:
        batch_op.create_index('ix_transactions_order', ['order_id', 'gateway_account_id'], unique=False)


def downgrade():
    with op.batch_alter_table('transactions', schema=None) as batch_op:
        batch_op.drop_index('ix_transactions_order')
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_claim')
