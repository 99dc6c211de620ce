"""trust contact rules case actions

Revision ID: b3a0c0de0003
Revises: b2a0c0de0002
Create Date: 2026-12-06 04:40:00

Trust: one source of contact rules, case actions (issue 13, point 3 and operator tools).
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

import app.models.types

revision = 'b3a0c0de0003'
down_revision = 'b2a0c0de0002'
branch_labels = None
depends_on = None


def upgrade():
    # the override a message's contact rules keep (the dispatcher reproduces the planner's decision with it)
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('contact_override', sa.JSON().with_variant(mysql.JSON(), 'mysql'),
                                      nullable=True))
    # operator tools: pause / resume, and "paid elsewhere" attribution
    with op.batch_alter_table('recovery_cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recovered_via', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('paused_at', app.models.types.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('paused_by', sa.String(length=254), nullable=True))


def downgrade():
    with op.batch_alter_table('recovery_cases', schema=None) as batch_op:
        batch_op.drop_column('paused_by')
        batch_op.drop_column('paused_at')
        batch_op.drop_column('recovered_via')
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.drop_column('contact_override')
