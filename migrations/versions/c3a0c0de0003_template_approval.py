"""template approval

Revision ID: c3a0c0de0003
Revises: c2a0c0de0002
Create Date: 2026-12-06 20:30:00

Message template versions go through the same four-eyes approval as policies (issue 15, finding 5).
"""
import sqlalchemy as sa
from alembic import op

import app.models.types

revision = 'c3a0c0de0003'
down_revision = 'c2a0c0de0002'
branch_labels = None
depends_on = None


TABLE = 'message_template_versions'
USERS = (('approved_by_id', 'fk_message_template_versions_approved_by_id_users'),
         ('rejected_by_id', 'fk_message_template_versions_rejected_by_id_users'))


def upgrade():
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.add_column(sa.Column('status', sa.String(length=20), server_default='draft', nullable=False))
        batch_op.add_column(sa.Column('submitted_at', app.models.types.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('approved_by_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('approved_at', app.models.types.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('rejected_by_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('rejected_at', app.models.types.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('rejection_reason', sa.String(length=500), nullable=True))
        for column, name in USERS:
            batch_op.create_foreign_key(name, 'users', [column], ['id'])
    # every version saved before approval existed was sent as it was saved: it stays what it was, approved
    op.execute(sa.text(f"UPDATE {TABLE} SET status = 'approved', submitted_at = created_at, "
                       "approved_at = created_at"))


def downgrade():
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        for _, name in USERS:
            batch_op.drop_constraint(name, type_='foreignkey')
        for column in ('rejection_reason', 'rejected_at', 'rejected_by_id', 'approved_at', 'approved_by_id',
                       'submitted_at', 'status'):
            batch_op.drop_column(column)
