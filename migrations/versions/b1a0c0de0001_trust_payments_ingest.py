"""trust payments ingest

Revision ID: b1a0c0de0001
Revises: 7d1e2f3a4b5c
Create Date: 2026-12-06 04:40:00

Trust: recognise our own charges, vault changes, failures on known orders (issue 13, points 1, 5, 6).

- ``payments.gateway_transaction_id`` is indexed: ingest asks, for every chunk, which fetched or pushed
  transactions are Recoup's own charges (by order id, which is unique already, and by gateway transaction id).
- ``payments.card_masked``: the masked new card (or bank account) an attempt used, so the card on file changes
  to it only once a charge on it was approved, however that answer arrives (at once or looked up later).
- ``transactions.joined_case_id``: a later failure of an order that already has a case names that case.
"""
from alembic import op
import sqlalchemy as sa

revision = 'b1a0c0de0001'
down_revision = '7d1e2f3a4b5c'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('card_masked', sa.String(length=24), nullable=True))
        batch_op.create_index('ix_payments_gateway_transaction', ['gateway_transaction_id'], unique=False)
    with op.batch_alter_table('transactions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('joined_case_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                                      nullable=True))
        batch_op.create_index('ix_transactions_joined_case', ['joined_case_id'], unique=False)
        batch_op.create_foreign_key('fk_transactions_joined_case', 'recovery_cases', ['joined_case_id'], ['id'],
                                    ondelete='SET NULL')


def downgrade():
    with op.batch_alter_table('transactions', schema=None) as batch_op:
        batch_op.drop_constraint('fk_transactions_joined_case', type_='foreignkey')
        batch_op.drop_index('ix_transactions_joined_case')
        batch_op.drop_column('joined_case_id')
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_index('ix_payments_gateway_transaction')
        batch_op.drop_column('card_masked')
