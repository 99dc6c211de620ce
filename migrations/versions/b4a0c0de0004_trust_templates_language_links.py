"""trust templates language links

Revision ID: b4a0c0de0004
Revises: b3a0c0de0003
Create Date: 2026-12-06 04:40:00

Trust: localised defaults, short links, customer locale (issue 13, points 4 and 7).
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401

revision = 'b4a0c0de0004'
down_revision = 'b3a0c0de0003'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('locale_source', sa.String(length=16), nullable=True))
    with op.batch_alter_table('payment_links', schema=None) as batch_op:
        batch_op.add_column(sa.Column('short_code_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                                      nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_payment_links_short_code_hash'), ['short_code_hash'])
        batch_op.create_foreign_key(batch_op.f('fk_payment_links_message_id_outbox_messages'), 'outbox_messages',
                                    ['message_id'], ['id'], ondelete='SET NULL')


def downgrade():
    with op.batch_alter_table('payment_links', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_payment_links_message_id_outbox_messages'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_payment_links_short_code_hash'), type_='unique')
        batch_op.drop_column('message_id')
        batch_op.drop_column('short_code_hash')
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_column('locale_source')
